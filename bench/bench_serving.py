"""Serving under load: the real server (``magenta-api serve``, gunicorn) over HTTP, in one run.

* **Throughput, batching on vs off.** A cat-mel_2bar_big-shaped MusicVAE (random weights, made by
  ``reference/musicvae_reference.py --big``) behind gunicorn; 32 concurrent HTTP clients ask for one
  sample each, again and again. The same server settings with ``BATCHING=on`` and ``BATCHING=off``,
  alternated in rounds; requests per second, p50 and p99 latency, and the ratio.
* **Latency of the embedded model** (``embedded-mel_2bar``), one client on one keep-alive connection
  (stdlib ``http.client``): the p50 of one sample, of a cache hit (the same seeded request again), and
  of ``GET /healthz`` between the hits: the HTTP round trip (gunicorn, Flask) that every request pays.
* **Memory of 1 vs 4 workers**: total PSS (``/proc/<pid>/smaps_rollup``) of the master and its workers
  with the big model preloaded, after every worker has served requests, and the ratio.

    PYTHONPATH=core .venv/bin/python bench/bench_serving.py [--clients 32] [--requests 96] [--rounds 1]

Results go to bench/out/serving_bench.json; docs/performance.md shows the latest table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from benchlib import process_tree, tree_pss_kib

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BIG = "bench-mel_2bar_big"
EMBEDDED = "embedded-mel_2bar"
BIG_HPARAMS = {
    "converter": "melody",
    "steps": 32,
    "min_pitch": 21,
    "max_pitch": 108,
    "z_size": 512,
    "enc_rnn_size": [2048],
    "dec_rnn_size": [2048, 2048, 2048],
}


def big_checkpoint() -> Path:
    """The big model's weights as a native safetensors file (read in place and memory-mapped, as the
    store serves a converted checkpoint), made once from the TF checkpoint magenta wrote."""
    native = OUT / "cat-mel_2bar_big" / "native.safetensors"
    if native.exists():
        return native
    ckpt = OUT / "cat-mel_2bar_big" / "model.ckpt"
    if not Path(str(ckpt) + ".index").exists():
        print("making the bench checkpoints with magenta (reference/musicvae_reference.py --big) ...", file=sys.stderr)
        subprocess.run(
            [str(ROOT / ".venv-ref" / "bin" / "python"), str(ROOT / "reference" / "musicvae_reference.py"), "--big"],
            env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"),
            check=True,
            capture_output=True,
        )
    from magenta_api.store import save_native
    from magenta_api.store.readers.tf import read_tf

    variables, meta = read_tf(str(ckpt))
    save_native(native, variables, meta, fmt="tf")
    return native


def models_file(folder: Path, serving: dict) -> Path:
    import yaml

    path = folder / "bench-models.yaml"
    model = {
        "family": "musicvae",
        "description": "cat-mel_2bar_big dims, random weights (bench)",
        "hparams": BIG_HPARAMS,
        "defaults": {"temperature": 0.5},
        "limits": {"num_outputs": 32},
        "serving": serving,
        "checkpoint": {"url": str(big_checkpoint()), "format": "native"},
    }
    path.write_text(yaml.safe_dump({"models": {BIG: model}}))
    return path


class Server:
    """``magenta-api serve`` in a subprocess, with the bench's models file and settings."""

    def __init__(self, folder: Path, workers: int, threads: int, env: dict):
        from socket import socket

        with socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / f"server-{self.port}.log", "wb")  # noqa: SIM115  (closed in stop)
        full_env = {
            **os.environ,
            "MODEL_DIR": str(folder / "models"),
            "CACHE_DIR": str(folder / "cache"),
            "MAGENTA_API_OFFLINE": "1",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "magenta-api"), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            + ["--workers", str(workers), "--threads", str(threads), "--timeout", "600"],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        end = time.time() + 300
        while True:
            try:
                if requests.get(f"{self.base}/healthz", timeout=5).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            if self.proc.poll() is not None or time.time() > end:
                raise SystemExit(f"the server did not start; see {self.log.name}")
            time.sleep(0.5)

    def post(self, body: dict, session=None):
        t0 = time.perf_counter()
        r = (session or requests).post(f"{self.base}/v1/generate", json=body, timeout=600)
        return r, time.perf_counter() - t0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def load_test(server: Server, clients: int, total: int) -> dict:
    """``clients`` threads, each with its own connection, posting unseeded one-sample requests until
    ``total`` have been answered: requests per second, p50 and p99 latency in seconds, errors."""
    latencies: list = []
    statuses: list = []
    left = [total]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client():
        with requests.Session() as session:
            start.wait()
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                r, seconds = server.post({"model": BIG, "num_outputs": 1}, session)
                with lock:
                    latencies.append(seconds)
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "errors": sum(s != 200 for s in statuses),
        "rps": len(latencies) / wall,
        "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 99),
        "wall_s": wall,
    }


def batch_stats(server: Server) -> dict:
    """From the server's /metrics: forward passes, mean rows per pass, mean seconds per pass."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(requests.get(f"{server.base}/metrics", timeout=60).text):
        for s in family.samples:
            if s.labels.get("model") == BIG and s.labels.get("stage", "generate") == "generate":
                values[s.name] = s.value
    passes = values.get("magenta_api_batch_rows_count") or values.get("magenta_api_stage_seconds_count") or 0
    return {
        "passes": passes,
        "rows_per_pass": values.get("magenta_api_batch_rows_sum", 0) / passes if passes else None,
        "seconds_per_pass": values.get("magenta_api_stage_seconds_sum", 0) / passes if passes else None,
    }


def warm_up(server: Server, clients: int) -> None:
    """Every worker has run the model once (and the batcher's threads exist) before timing."""
    threads = [threading.Thread(target=server.post, args=({"model": BIG},)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def throughput(folder: Path, args) -> dict:
    rounds: dict = {"on": [], "off": []}
    # a queue deadline past any wait of this closed loop: the bench measures throughput, not shedding
    serving = {"max_batch_size": 32, "max_wait_ms": 20, "max_queue": 256, "max_queue_wait_s": 600}
    extra = models_file(folder, serving)
    for r in range(args.rounds):
        for mode in ("on", "off"):
            print(f"[throughput] round {r + 1}: batching {mode} ...", file=sys.stderr, flush=True)
            env = {"BATCHING": mode, "CACHE": "off", "MAGENTA_API_MODELS": str(extra), "PRELOAD_MODELS": BIG}
            server = Server(folder, args.workers, args.threads, env)
            try:
                warm_up(server, args.clients)
                warm = batch_stats(server)
                result = load_test(server, args.clients, args.requests)
                result["load_average"] = os.getloadavg()[0]  # other work on the machine during the round
                after = batch_stats(server)
                passes = after["passes"] - warm["passes"]
                result["passes"] = passes
                if mode == "on" and passes:
                    result["rows_per_pass"] = args.requests / passes
                rounds[mode].append(result)
            finally:
                server.stop()
    best = {mode: max(results, key=lambda x: x["rps"]) for mode, results in rounds.items()}
    return {"rounds": rounds, "best": best, "ratio": best["on"]["rps"] / best["off"]["rps"]}


class Connection:
    """One keep-alive HTTP/1.1 connection (stdlib ``http.client``) for the latency part: the ``requests``
    client costs about a millisecond of Python per call by itself on these machines, which the
    service's latency should not carry. Returns (status, headers, seconds)."""

    def __init__(self, port: int):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        t0 = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        response.read()
        seconds = time.perf_counter() - t0
        if response.status != 200:
            raise SystemExit(f"{method} {path}: HTTP {response.status}")
        return response.status, response.headers, seconds

    def close(self):
        self.conn.close()


def embedded_latency(folder: Path, args) -> dict:
    server = Server(folder, 2, 4, {"PRELOAD_MODELS": EMBEDDED})
    conn = Connection(server.port)
    try:
        for _ in range(10):
            conn.call("POST", "/v1/generate", {"model": EMBEDDED})
        sample = [conn.call("POST", "/v1/generate", {"model": EMBEDDED})[2] for _ in range(args.latency_requests)]
        body = {"model": EMBEDDED, "seed": 1234}
        _, headers, _ = conn.call("POST", "/v1/generate", body)
        assert headers.get("X-Cache") == "MISS", headers
        hits, health = [], []
        for _ in range(args.latency_requests):
            _, headers, seconds = conn.call("POST", "/v1/generate", body)
            assert headers.get("X-Cache") == "HIT"
            hits.append(seconds)
            health.append(conn.call("GET", "/healthz")[2])
    finally:
        conn.close()
        server.stop()
    return {
        "sample_p50_ms": 1000 * statistics.median(sample),
        "sample_p99_ms": 1000 * percentile(sample, 99),
        "cache_hit_p50_ms": 1000 * statistics.median(hits),
        "cache_hit_p99_ms": 1000 * percentile(hits, 99),
        "healthz_p50_ms": 1000 * statistics.median(health),
    }


def memory(folder: Path, args) -> dict:
    extra = models_file(folder, {"max_batch_size": 32, "max_wait_ms": 20})
    out = {}
    for workers in (1, 4):
        print(f"[memory] {workers} worker(s) ...", file=sys.stderr, flush=True)
        server = Server(folder, workers, 8, {"MAGENTA_API_MODELS": str(extra), "PRELOAD_MODELS": BIG, "CACHE": "off"})
        try:
            for _ in range(2):  # concurrent requests on new connections: every worker serves some
                warm_up(server, 4 * workers)
            time.sleep(1)
            pid = server.proc.pid
            out[workers] = {"pss_mib": tree_pss_kib(pid) / 1024, "processes": len(process_tree(pid))}
        finally:
            server.stop()
    out["ratio"] = out[4]["pss_mib"] / out[1]["pss_mib"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=96, help="answered requests per throughput measurement")
    ap.add_argument("--rounds", type=int, default=1, help="alternating on/off rounds; the best of each counts")
    ap.add_argument("--workers", type=int, default=1, help="gunicorn workers of the throughput servers")
    ap.add_argument("--threads", type=int, default=32, help="gthread threads per worker (clients in service at once)")
    ap.add_argument("--latency-requests", type=int, default=200)
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "latency", "memory"])
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict = {"clients": args.clients, "workers": args.workers, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench-serving-", dir=OUT) as tmp:
        folder = Path(tmp)
        if "throughput" not in args.skip:
            report["throughput"] = throughput(folder, args)
        if "latency" not in args.skip:
            report["embedded"] = embedded_latency(folder, args)
        if "memory" not in args.skip:
            report["memory"] = memory(folder, args)
    (OUT / "serving_bench.json").write_text(json.dumps(report, indent=1))
    print(f"\nServing ({args.workers} workers x {args.threads} threads, {args.clients} clients)")
    print("| measure | value |\n|---|---:|")
    if "throughput" in report:
        best = report["throughput"]["best"]
        for mode in ("off", "on"):
            b = best[mode]
            print(
                f"| {BIG}, batching {mode}: req/s; p50, p99 s; errors | {b['rps']:.2f}; "
                f"{b['p50_s']:.2f}, {b['p99_s']:.2f}; {b['errors']} |"
            )
        print(f"| throughput ratio, batching on / off | {report['throughput']['ratio']:.1f}x |")
    if "embedded" in report:
        e = report["embedded"]
        print(f"| {EMBEDDED}: one sample, HTTP p50 (p99) | {e['sample_p50_ms']:.2f} ms ({e['sample_p99_ms']:.2f}) |")
        hit, hit99 = e["cache_hit_p50_ms"], e["cache_hit_p99_ms"]
        print(f"| {EMBEDDED}: cache hit, HTTP p50 (p99) | {hit:.2f} ms ({hit99:.2f}) |")
        print(f"| GET /healthz on the same connection, HTTP p50 (the HTTP round trip) | {e['healthz_p50_ms']:.2f} ms |")
    if "memory" in report:
        m = report["memory"]
        print(f"| total PSS, 1 worker ({BIG} preloaded) | {m[1]['pss_mib']:.0f} MiB |")
        print(f"| total PSS, 4 workers | {m[4]['pss_mib']:.0f} MiB |")
        print(f"| PSS ratio, 4 workers / 1 | {m['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
