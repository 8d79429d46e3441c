"""Prometheus metrics: /metrics parses with prometheus_client's own parser and counts what happened, in
one process and summed over two real gunicorn workers (multiprocess mode), or on METRICS_PORT."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from server_support import running_service

from magenta_api import metrics
from magenta_api.store.download import download
from magenta_api.store.errors import SourceMissing

MODEL = "embedded-mel_2bar"


def samples(text: str) -> dict:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict, name: str, **labels) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_route_counts_requests_stages_cache_and_loads(tmp_path):
    from magenta_api.testing import make_app

    client = make_app(tmp_path, entry_points=["embedded", "musicvae"]).test_client()
    before = samples(client.get("/metrics").get_data(as_text=True))
    for seed in (1, 2, 1):  # the second seed 1 is a cache hit
        assert client.post("/v1/generate", json={"model": MODEL, "seed": seed}).status_code == 200
    assert client.post("/v1/generate", json={"model": MODEL, "temperature": -1}).status_code == 400
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    after = samples(resp.get_data(as_text=True))

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("magenta_api_requests_total", model=MODEL, mode="sample", status="200") == 3
    assert grew("magenta_api_requests_total", model="-", mode="-", status="400") == 1
    assert grew("magenta_api_request_seconds_count", model=MODEL, mode="sample") == 3
    assert grew("magenta_api_cache_hits_total") == 1 and grew("magenta_api_cache_misses_total") == 2
    for stage in ("validate", "cache", "queue", "load", "generate", "render"):
        assert grew("magenta_api_stage_seconds_count", stage=stage, model=MODEL) >= 1, stage
    assert grew("magenta_api_stage_seconds_bucket", stage="queue", model=MODEL, le="+Inf") == 2
    assert grew("magenta_api_batch_size_count", model=MODEL) == 2
    assert value(after, "magenta_api_models_loaded", model=MODEL) == 1
    assert value(after, "magenta_api_model_load_seconds_count", model=MODEL) >= 1
    assert value(after, "magenta_api_queue_depth", model=MODEL) == 0


def test_downloads_and_cache_errors_are_counted(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"x" * 1000)

    def counted():
        get = metrics.REGISTRY.get_sample_value
        return (
            get("magenta_api_downloads_total", {"result": "ok"}) or 0,
            get("magenta_api_downloads_total", {"result": "failed"}) or 0,
            get("magenta_api_download_bytes_total") or 0,
        )

    before = counted()
    download(source.as_uri(), tmp_path / "copy.bin")
    with pytest.raises(SourceMissing):
        download((tmp_path / "missing.bin").as_uri(), tmp_path / "copy2.bin")
    assert [a - b for a, b in zip(counted(), before)] == [1, 1, 1000]

    from magenta_api.cache import DiskCache

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")

    def errors():
        return metrics.REGISTRY.get_sample_value("magenta_api_cache_errors_total", {"op": "open"}) or 0

    start = errors()
    assert DiskCache(blocked, 1 << 20).get("key") is None
    assert errors() - start == 1


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """``magenta-api serve`` with two workers, metrics on their own port."""
    tmp = tmp_path_factory.mktemp("metrics-server")
    metrics_port = free_port()
    env = {
        "MODEL_DIR": str(tmp / "models"),
        "CACHE": "off",
        "METRICS_PORT": str(metrics_port),
        "METRICS_HOST": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
        "PRELOAD_MODELS": MODEL,
    }
    with running_service(tmp, env, workers=2) as service:
        yield service.base, f"http://127.0.0.1:{metrics_port}/metrics", service.proc, tmp / "prom"


def worker_pids(master: int) -> set:
    pids = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def test_metrics_sum_the_requests_of_two_gunicorn_workers(gunicorn):
    base, metrics_url, proc, folder = gunicorn
    sent = 24

    def post(seed):  # a connection each, so that both workers take some
        with requests.Session() as s:
            return s.post(f"{base}/v1/generate", json={"model": MODEL, "seed": seed}, timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(post, range(sent))) == [200] * sent
    assert requests.post(f"{base}/v1/generate", json={"model": "nope"}, timeout=30).status_code == 404

    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    wrote = {int(f.stem.rsplit("_", 1)[1]) for f in folder.glob("counter_*.db")}
    assert workers <= wrote, "each worker keeps its own counter file"

    parsed = samples(requests.get(metrics_url, timeout=30).text)
    assert value(parsed, "magenta_api_requests_total", model=MODEL, mode="sample", status="200") == sent
    assert value(parsed, "magenta_api_requests_total", model="-", mode="-", status="404") == 1
    assert value(parsed, "magenta_api_request_seconds_count", model=MODEL, mode="sample") == sent
    assert value(parsed, "magenta_api_batch_rows_sum", model=MODEL) == sent
    assert value(parsed, "magenta_api_models_loaded", model=MODEL) == 1  # preloaded before the fork
    # the API's own port does not expose them when METRICS_PORT is set
    assert requests.get(f"{base}/metrics", timeout=30).status_code == 404
