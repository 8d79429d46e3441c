"""Bad downloads and their recovery, through the real app and a real HTTP server on 127.0.0.1.

A checkpoint is pinned only once it has been read and verified; a corrupt download leaves nothing behind;
a failed fetch is remembered and retried with backoff, not per request; a request for a checkpoint that
must be downloaded starts one background download and answers 503 ``downloading`` at once; the fix each
503 names really fixes that state.
"""

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time

import pytest
import store_helpers
import yaml
from store_helpers import http_server, run_cli, v2_tar  # noqa: F401  (fixture)

from magenta_api.store import CheckpointInvalid, CheckpointStore
from magenta_api.testing import make_app

MODEL = "tiny"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def declare(url, family="tensors", **checkpoint):
    return {MODEL: {"family": family, "checkpoint": {"url": url, "format": "tf-tar", **checkpoint}}}


def app_with(tmp_path, url, store=None, **store_args):
    store = store or CheckpointStore(tmp_path / "models", backoff=0.01, **store_args)
    return make_app(tmp_path, plugins=[store_helpers], models=declare(url), store=store), store


def pins(tmp_path):
    path = tmp_path / "models" / "checkpoints.lock"
    return json.loads(path.read_text())["models"] if path.exists() else {}


def files_of(tmp_path):
    root = tmp_path / "models" / MODEL
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def wait_until(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_corrupt_checkpoint_is_never_pinned_and_the_right_one_then_loads(tmp_path, http_server):
    """The acceptance scenario: corrupt tensors (crc32c), then the right file, with no manual step."""
    corrupt, right = v2_tar(corrupt=True), v2_tar()
    url = http_server.add("/tiny.tar", corrupt)
    app, _ = app_with(tmp_path, url, fetch_wait_s=20, retry_failed_s=1.0)
    client = app.test_client()

    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert err["code"] == "checkpoint_invalid" and "crc32c" in err["message"]
    assert err["details"]["fix"] == f"magenta-api fetch {MODEL}"
    assert MODEL not in pins(tmp_path)  # never pinned
    assert files_of(tmp_path) == [".lock", "failed.json"]  # the download and its extraction are gone
    info = client.get(f"/v1/models/{MODEL}").get_json()
    assert info["state"] == "failed"

    # the next request does not download again: the failure is remembered, with when to retry
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 503 and http_server.count("/tiny.tar") == 1
    details = resp.get_json()["error"]["details"]
    assert details["state"] == "failed" and 1 <= details["retry_after"] <= 1
    assert resp.headers["Retry-After"] == str(details["retry_after"])

    # the publisher fixes the file; once the backoff is over, a request fetches it and it loads
    http_server.add("/tiny.tar", right)
    time.sleep(1.1)
    resp = client.post("/v1/generate", json={"model": MODEL, "seed": 1})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["variables"] == 9
    assert pins(tmp_path)[MODEL]["sha256"] == sha(right)
    assert client.get(f"/v1/models/{MODEL}").get_json()["state"] == "ready"
    assert http_server.count("/tiny.tar") == 2
    assert files_of(tmp_path) == [".lock", "fetched.json", "native.safetensors"]  # source deleted


def test_downloading_in_the_request_a_failed_fetch_is_not_repeated_by_the_next_request(tmp_path, http_server):
    url = http_server.add("/tiny.tar", v2_tar(corrupt=True))
    store = CheckpointStore(tmp_path / "models")  # fetch_wait_s=None: the download runs inside the request
    client = make_app(tmp_path, plugins=[store_helpers], models=declare(url), store=store).test_client()
    first = client.post("/v1/generate", json={"model": MODEL})
    second = client.post("/v1/generate", json={"model": MODEL})
    assert first.status_code == second.status_code == 503
    assert http_server.count("/tiny.tar") == 1
    assert second.get_json()["error"]["details"]["state"] == "failed"
    assert client.get(f"/v1/models/{MODEL}").get_json()["state"] == "failed"
    assert MODEL not in pins(tmp_path)


def test_magenta_api_fetch_after_a_corrupt_download_gets_the_right_file(tmp_path, http_server):
    url = http_server.add("/tiny.tar", v2_tar(corrupt=True))
    ckpt = declare(url)[MODEL]["checkpoint"]
    store = CheckpointStore(tmp_path / "models", backoff=0.01)
    with pytest.raises(CheckpointInvalid, match="crc32c"):
        store.prepare(MODEL, ckpt)
    assert MODEL not in pins(tmp_path) and files_of(tmp_path) == [".lock", "failed.json"]
    right = v2_tar()
    http_server.add("/tiny.tar", right)
    assert store.prepare(MODEL, ckpt)["state"] == "ready"
    assert pins(tmp_path)[MODEL]["sha256"] == sha(right)


def test_a_failed_fetch_is_retried_with_backoff_not_per_request(tmp_path, http_server):
    url = http_server.url("/gone.tar")
    http_server.status["/gone.tar"] = 500
    app, _ = app_with(tmp_path, url, retries=1, fetch_wait_s=20, retry_failed_s=0.5)
    client = app.test_client()
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "checkpoint_unavailable"
    assert http_server.count("/gone.tar") == 2  # one try and one retry inside the fetch
    started = time.monotonic()
    for _ in range(5):
        resp = client.post("/v1/generate", json={"model": MODEL})
        assert resp.status_code == 503
    assert time.monotonic() - started < 2 and http_server.count("/gone.tar") == 2
    details = resp.get_json()["error"]["details"]
    assert details["state"] == "failed" and "HTTP 500" in details["reason"] and details["attempts"] == 1
    record = json.loads((tmp_path / "models" / MODEL / "failed.json").read_text())
    assert record["attempts"] == 1 and record["failed_at"] == details["failed_at"]
    # after the backoff: attempt 2, and the next backoff doubles
    time.sleep(0.6)
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 503 and http_server.count("/gone.tar") == 4
    record = json.loads((tmp_path / "models" / MODEL / "failed.json").read_text())
    assert record["attempts"] == 2 and 0.9 <= record["retry_at"] - record["time"] <= 1.1
    # `magenta-api fetch` (the store's prepare) does not wait for the backoff
    del http_server.status["/gone.tar"]
    http_server.add("/gone.tar", v2_tar())
    store = CheckpointStore(tmp_path / "models", backoff=0.01)
    assert store.prepare(MODEL, declare(url)[MODEL]["checkpoint"])["state"] == "ready"
    assert client.post("/v1/generate", json={"model": MODEL}).status_code == 200
    assert not (tmp_path / "models" / MODEL / "failed.json").exists()


def test_a_request_starts_one_background_download_and_answers_downloading_at_once(tmp_path, http_server):
    data = v2_tar(padding=400_000)
    url = http_server.add("/tiny.tar", data)
    http_server.chunk, http_server.delay = 8192, 0.04  # about 2 s
    app, _ = app_with(tmp_path, url, fetch_wait_s=0)
    client = app.test_client()
    answers = []
    started = time.monotonic()
    for _ in range(4):
        answers.append(client.post("/v1/generate", json={"model": MODEL}))
    assert time.monotonic() - started < 1.5  # no request holds a worker for the download
    for resp in answers:
        assert resp.status_code == 503
        err = resp.get_json()["error"]
        assert err["code"] == "downloading"
        assert {"bytes_done", "size", "retry_after", "phase"} <= set(err["details"])
        assert int(resp.headers["Retry-After"]) == err["details"]["retry_after"] >= 1
    assert wait_until(lambda: (client.get(f"/v1/models/{MODEL}").get_json()["checkpoint"]["bytes_done"] or 0) > 0)
    info = client.get(f"/v1/models/{MODEL}").get_json()
    assert info["state"] in ("downloading", "ready")
    assert wait_until(lambda: client.get(f"/v1/models/{MODEL}").get_json()["state"] == "ready")
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 200 and resp.get_json()["variables"] == 9
    assert http_server.count("/tiny.tar") == 1


def test_fetch_wait_lets_a_request_wait_for_a_short_download(tmp_path, http_server):
    url = http_server.add("/tiny.tar", v2_tar())
    app, _ = app_with(tmp_path, url, fetch_wait_s=30)
    resp = app.test_client().post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 200 and resp.get_json()["variables"] == 9


def test_the_loader_passes_its_own_wait(tmp_path, http_server):
    from magenta_api.family import ModelSpec
    from magenta_api.loader import ModelLoader
    from magenta_api.store.errors import CheckpointDownloading

    data = v2_tar(padding=300_000)
    url = http_server.add("/tiny.tar", data)
    http_server.chunk, http_server.delay = 8192, 0.01
    store = CheckpointStore(tmp_path / "models")  # fetch_wait_s=None: the store alone would block
    loader = ModelLoader(store, fetch_wait_s=0)
    spec = ModelSpec(MODEL, "tensors", checkpoint=declare(url)[MODEL]["checkpoint"])
    with pytest.raises(CheckpointDownloading):
        loader.load(spec, store_helpers.Tensors)
    assert wait_until(lambda: store.status(MODEL, spec.checkpoint)["state"] == "ready")
    assert loader.load(spec, store_helpers.Tensors).checkpoint.sha256 == sha(data)


def test_a_corrupt_checkpoint_fetched_by_an_older_store_heals_itself(tmp_path, http_server):
    """An older store pinned and marked ready a download whose tensors fail their crc32c: the first load
    finds it, deletes it with its pin, and the next request fetches the right file."""
    corrupt, right = v2_tar(corrupt=True), v2_tar()
    url = http_server.add("/tiny.tar", right)
    root = tmp_path / "models" / MODEL
    (root / "src").mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(corrupt)) as tar:
        tar.extractall(root / "src", filter="data")
    marker = {"url": url, "format": "tf-tar", "sha256": sha(corrupt), "size": len(corrupt), "path": "."}
    (root / "fetched.json").write_text(json.dumps(marker))
    lock = {"models": {MODEL: {"url": url, "sha256": sha(corrupt), "size": len(corrupt), "format": "tf-tar"}}}
    (tmp_path / "models" / "checkpoints.lock").write_text(json.dumps(lock))
    app, _ = app_with(tmp_path, url, fetch_wait_s=20)
    client = app.test_client()
    assert client.get(f"/v1/models/{MODEL}").get_json()["state"] == "ready"  # as the old store left it
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert "crc32c" in err["message"] and err["details"]["fix"] == f"magenta-api fetch {MODEL}"
    assert MODEL not in pins(tmp_path) and files_of(tmp_path) == [".lock"]
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 200, resp.get_json()
    assert pins(tmp_path)[MODEL]["sha256"] == sha(right)


def test_keep_source_keeps_the_extracted_checkpoint(tmp_path, http_server):
    url = http_server.add("/tiny.tar", v2_tar())
    ckpt = declare(url)[MODEL]["checkpoint"]
    store = CheckpointStore(tmp_path / "models", keep_source=True)
    assert store.prepare(MODEL, ckpt)["state"] == "ready"
    assert (tmp_path / "models" / MODEL / "src" / "cat-mel_2bar_tiny" / "model.ckpt.index").exists()
    # without it, the same store folder serves from the marker and the native copy alone
    other = tmp_path / "other"
    store = CheckpointStore(other / "models")
    st = store.prepare(MODEL, ckpt)
    assert st["state"] == "ready" and st["path"] == str(other / "models" / MODEL / "native.safetensors")
    assert not (other / "models" / MODEL / "src").exists()
    assert len(CheckpointStore(other / "models", offline=True).open(MODEL, ckpt).variables) == 9


def test_a_native_copy_that_no_longer_reads_is_fetched_again(tmp_path, http_server):
    url = http_server.add("/tiny.tar", v2_tar())
    ckpt = declare(url)[MODEL]["checkpoint"]
    store = CheckpointStore(tmp_path / "models")
    store.prepare(MODEL, ckpt)
    (tmp_path / "models" / MODEL / "native.safetensors").write_bytes(b"\0" * 16)  # a damaged copy
    assert len(store.open(MODEL, ckpt).variables) == 9
    assert http_server.count("/tiny.tar") == 2


BACKGROUND_SCRIPT = """
import json, pathlib, sys, time
from magenta_api.store import CheckpointStore, CheckpointError
store = CheckpointStore(pathlib.Path(sys.argv[1]), backoff=0.01, fetch_wait_s=0)
answers = []
while True:
    try:
        ck = store.open(sys.argv[2], json.loads(sys.argv[3]))
        break
    except CheckpointError as exc:
        answers.append(exc.code)
        time.sleep(0.05)
print(json.dumps({"sha": ck.sha256, "answers": sorted(set(answers))}))
"""


@pytest.mark.slow
def test_processes_share_one_background_download(tmp_path, http_server):
    data = v2_tar(padding=200_000)
    # About 2.5 s of download, so that the processes (started together) ask while it runs.
    http_server.chunk, http_server.delay = 4096, 0.05
    ckpt = {"url": http_server.add("/tiny.tar", data), "format": "tf-tar"}
    env = {**store_helpers.os.environ, "PYTHONPATH": str(store_helpers.TESTS.parent / "core")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BACKGROUND_SCRIPT, str(tmp_path / "models"), MODEL, json.dumps(ckpt)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outs]
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert {r["sha"] for r in results} == {sha(data)}
    # A process that started late on a loaded machine may find the copy ready; none saw another answer.
    assert all(set(r["answers"]) <= {"downloading"} for r in results)
    assert sum(r["answers"] == ["downloading"] for r in results) >= 2
    assert http_server.count("/tiny.tar") == 1


def test_cli_models_shows_a_failed_fetch(tmp_path, http_server):
    http_server.status["/gone.tar"] = 404
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": declare(http_server.url("/gone.tar"))}))
    env = {"MODEL_DIR": str(tmp_path / "m"), "CACHE_DIR": str(tmp_path / "c"), "MAGENTA_API_MODELS": str(models)}
    out = run_cli(["fetch", MODEL, "--quiet"], env)
    assert out.returncode == 4 and "HTTP 404" in out.stderr and f"fix: magenta-api fetch {MODEL}" in out.stderr
    out = run_cli(["models", "--json"], env)
    info = next(m for m in json.loads(out.stdout) if m["id"] == MODEL)
    assert info["state"] == "failed"


DISK_SCRIPT = """
import json, pathlib, resource, signal, sys
from magenta_api.store import CheckpointError, CheckpointStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[4]), resource.RLIM_INFINITY))
try:
    CheckpointStore(pathlib.Path(sys.argv[1]), backoff=0.01).open(sys.argv[2], json.loads(sys.argv[3]))
    print(json.dumps({"code": None}))
except CheckpointError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message, "fix": exc.fix}))
"""


def tar_gz_with_zeros(nbytes):
    """The tiny V2 checkpoint and a README of ``nbytes`` zeros, gzipped: small to download, big to extract."""
    buf = io.BytesIO(v2_tar())
    out = io.BytesIO()
    with tarfile.open(fileobj=buf) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo("cat-mel_2bar_tiny/README.txt")
        info.size = nbytes
        dst.addfile(info, io.BytesIO(bytes(nbytes)))
    return gzip.compress(out.getvalue())


@pytest.mark.parametrize("what", ["download", "extraction"])
def test_a_disk_that_cannot_take_the_checkpoint_leaves_nothing_and_says_so(tmp_path, http_server, what):
    """A write limit on the process (RLIMIT_FSIZE) fails writes as a full disk does."""
    if what == "download":
        data, limit = v2_tar(padding=300_000), 100_000  # the download itself passes the limit
    else:
        data, limit = tar_gz_with_zeros(300_000), 100_000  # 30 KB to download, 300 KB to extract
    ckpt = {"url": http_server.add("/tiny.tar", data), "format": "tf-tar"}
    env = {**store_helpers.os.environ, "PYTHONPATH": str(store_helpers.TESTS.parent / "core")}
    out = subprocess.run(
        [sys.executable, "-c", DISK_SCRIPT, str(tmp_path / "models"), MODEL, json.dumps(ckpt), str(limit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == "checkpoint_unavailable", result
    assert "cannot write the checkpoint" in result["message"] and "File too large" in result["message"]
    assert "free space in MODEL_DIR" in result["fix"] and f"magenta-api fetch {MODEL}" in result["fix"]
    assert files_of(tmp_path) == [".lock", "failed.json"] and MODEL not in pins(tmp_path)
    assert not list((tmp_path / "models").glob(f"{MODEL}/.src.*"))
    # with room again, `magenta-api fetch` succeeds
    store = CheckpointStore(tmp_path / "models", backoff=0.01)
    assert store.prepare(MODEL, ckpt)["state"] == "ready"
