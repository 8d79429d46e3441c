"""A model's checkpoint through the whole service: served over HTTP on 127.0.0.1, state `missing`,
fetched on first use (or by `magenta-api fetch`), verified, then `ready`; offline gives 503 with the fix."""

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import store_helpers
import toy_plugin
from store_helpers import Strict, http_server  # noqa: F401  (fixture)

from magenta_api.errors import ModelBroken
from magenta_api.store import CheckpointStore, save_native
from magenta_api.testing import make_app, make_service


@pytest.fixture
def native_bytes(tmp_path):
    path = tmp_path / "w.safetensors"
    save_native(path, {"offset": np.array([7], np.float32)})
    return path.read_bytes()


def scaled_models(url, sha=""):
    return {"scaled-a": {"family": "scaled", "checkpoint": {"url": url, "format": "native", "sha256": sha}}}


def foreground(tmp_path):
    """A store that downloads inside the request (fetch_wait_s=None), whatever the Settings default."""
    return CheckpointStore(tmp_path / "models")


def test_fetch_on_first_use_then_ready(tmp_path, http_server, native_bytes, caplog):
    url = http_server.add("/w.safetensors", native_bytes)
    sha = hashlib.sha256(native_bytes).hexdigest()
    client = make_app(tmp_path, plugins=[toy_plugin], models=scaled_models(url, sha), store=foreground(tmp_path))
    client = client.test_client()
    caplog.set_level("INFO")
    info = client.get("/v1/models/scaled-a").get_json()
    assert info["state"] == "missing" and info["checkpoint"]["state"] == "missing"
    resp = client.post("/v1/generate", json={"model": "scaled-a", "seed": 1})
    assert resp.status_code == 200
    assert {n["pitch"] for n in resp.get_json()["notes"]} == {67}
    info = client.get("/v1/models/scaled-a").get_json()
    assert info["state"] == "ready" and info["loaded"] and info["checkpoint"]["sha256"] == sha
    assert http_server.count("/w.safetensors") == 1
    stages = [r.getMessage().split()[0] for r in caplog.records if r.getMessage().startswith("stage=")]
    assert stages[:5] == ["stage=validate", "stage=cache", "stage=fetch", "stage=load", "stage=generate"]


def test_wrong_hash_is_503_and_nothing_is_kept(tmp_path, http_server, native_bytes):
    url = http_server.add("/w.safetensors", native_bytes)
    models = scaled_models(url, "0" * 64)
    client = make_app(tmp_path, plugins=[toy_plugin], models=models, store=foreground(tmp_path)).test_client()
    resp = client.post("/v1/generate", json={"model": "scaled-a"})
    assert resp.status_code == 503
    error = resp.get_json()["error"]
    assert "sha256" in error["message"] and "models.yaml" in error["details"]["fix"]
    assert client.get("/v1/models/scaled-a").get_json()["state"] == "failed"
    leftovers = [p for p in (tmp_path / "models").rglob("*") if p.is_file() and p.suffix in (".safetensors", ".part")]
    assert leftovers == []


def test_offline_is_503_with_the_fetch_command(tmp_path, http_server, native_bytes):
    url = http_server.add("/w.safetensors", native_bytes)
    client = make_app(tmp_path, plugins=[toy_plugin], models=scaled_models(url), offline=True).test_client()
    resp = client.post("/v1/generate", json={"model": "scaled-a"})
    assert resp.status_code == 503
    details = resp.get_json()["error"]["details"]
    assert details["place"] == str(tmp_path / "models" / "scaled-a")
    assert "on a machine with network access" in details["fix"] and "magenta-api fetch scaled-a" in details["fix"]
    assert http_server.count("/w.safetensors") == 0


def test_cli_fetch_prefetches(tmp_path, http_server, native_bytes):
    url = http_server.add("/w.safetensors", native_bytes)
    models = tmp_path / "extra.yaml"
    import yaml

    models.write_text(yaml.safe_dump({"models": scaled_models(url)}))
    tests_dir = str(Path(__file__).parent)
    # toy_plugin is registered through MAGENTA_API_LOAD_PLUGINS-independent code: run a tiny launcher
    code = (
        f"import sys; sys.path.insert(0, {tests_dir!r})\n"
        "import toy_plugin\n"
        "from magenta_api import cli, plugins\n"
        "orig = plugins.PluginHost.load_entry_points\n"
        "def load(self, only=None):\n"
        "    orig(self, only); self.register(toy_plugin)\n"
        "plugins.PluginHost.load_entry_points = load\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {
        **os.environ,
        "MODEL_DIR": str(tmp_path / "m"),
        "MAGENTA_API_MODELS": str(models),
        "CACHE_DIR": str(tmp_path / "c"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code, "fetch", "scaled-a", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "scaled-a: ready" in out.stdout
    assert http_server.count("/w.safetensors") == 1
    out = subprocess.run(
        [sys.executable, "-c", code, "models"],
        env={**env, "MAGENTA_API_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("scaled-a"))
    assert "ready" in line


def test_models_show_downloading_with_bytes_done_while_the_server_fetches(tmp_path, http_server):
    import threading
    import time

    path = tmp_path / "big.safetensors"
    save_native(path, {"offset": np.zeros(400_000, np.float32)})  # ~1.6 MB, sent slowly
    url = http_server.add("/big.safetensors", path.read_bytes())
    http_server.chunk, http_server.delay = 65536, 0.05
    store = foreground(tmp_path / "app")
    app = make_app(tmp_path / "app", plugins=[toy_plugin], models=scaled_models(url), store=store)
    client = app.test_client()
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(r=app.test_client().post("/v1/generate", json={"model": "scaled-a", "seed": 2}))
    )
    worker.start()
    seen = []
    deadline = time.time() + 30
    while worker.is_alive() and time.time() < deadline:
        info = client.get("/v1/models/scaled-a").get_json()["checkpoint"]
        seen.append((info["state"], info["bytes_done"]))
        time.sleep(0.05)
    worker.join(30)
    downloading = [b for s, b in seen if s == "downloading"]
    assert downloading and max(downloading) > 0
    assert result["r"].status_code == 200
    assert client.get("/v1/models/scaled-a").get_json()["state"] == "ready"


class CountingStore:
    """A real CheckpointStore with a counter in front: which store calls each request makes."""

    def __init__(self, store):
        self.store, self.calls = store, []

    def __getattr__(self, name):
        method = getattr(self.store, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


@pytest.mark.parametrize("declared", [True, False])
def test_a_request_calls_the_store_at_most_once(tmp_path, http_server, native_bytes, declared):
    url = http_server.add("/w.safetensors", native_bytes)
    sha = hashlib.sha256(native_bytes).hexdigest() if declared else ""
    store = CountingStore(CheckpointStore(tmp_path / "models"))
    client = make_app(tmp_path, plugins=[toy_plugin], models=scaled_models(url, sha), store=store).test_client()
    for seed in (1, 2, 2, None):  # first use (fetch), loaded, a cache hit, unseeded
        store.calls.clear()
        payload = {"model": "scaled-a", **({"seed": seed} if seed is not None else {})}
        assert client.post("/v1/generate", json=payload).status_code == 200
        assert len(store.calls) <= 1, (seed, store.calls)
        assert store.calls == ([] if seed != 1 else ["open"])
    assert http_server.count("/w.safetensors") == 1


def test_a_checkpoint_the_family_cannot_run_fails_fast_until_it_changes(tmp_path, http_server):
    def weights(n):
        path = tmp_path / f"w{n}.safetensors"
        save_native(path, {f"w{i}": np.full(2, i, np.float32) for i in range(n)})
        return path.read_bytes()

    url = http_server.add("/w.safetensors", weights(9))
    models = {
        "strict-a": {"family": "strict", "hparams": {"tensors": 3}, "checkpoint": {"url": url, "format": "native"}}
    }
    store = CountingStore(CheckpointStore(tmp_path / "models", fetch_wait_s=30))
    app = make_app(tmp_path, plugins=[store_helpers], models=models, store=store)
    client = app.test_client()
    attempts = Strict.attempts
    resp = client.post("/v1/generate", json={"model": "strict-a"})
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert err["code"] == "checkpoint_incompatible"
    assert "cannot run this checkpoint" in err["message"] and "has 9 weights, a 3-weight model" in err["message"]
    assert err["details"]["reason"] == "this checkpoint has 9 weights, a 3-weight model was declared"
    assert "models.yaml" in err["details"]["fix"] and resp.headers["Retry-After"]
    assert Strict.attempts == attempts + 1
    info = client.get("/v1/models/strict-a").get_json()
    assert info["state"] == "error" and not info["loaded"]
    # later requests fail at once: no open, no new build, the same answer
    store.calls.clear()
    again = client.post("/v1/generate", json={"model": "strict-a"})
    assert again.status_code == 503 and again.get_json()["error"]["message"] == err["message"]
    assert store.calls == ["status"] and Strict.attempts == attempts + 1
    # the checkpoint changes (the operator re-pins a corrected file): the model is tried again and loads
    http_server.add("/w.safetensors", weights(3))
    CheckpointStore(tmp_path / "models").prepare("strict-a", models["strict-a"]["checkpoint"], repin=True)
    assert client.post("/v1/generate", json={"model": "strict-a"}).status_code == 200
    assert client.get("/v1/models/strict-a").get_json()["state"] == "ready"


def test_a_broken_model_is_remembered_until_its_declaration_changes(tmp_path, http_server):
    path = tmp_path / "w.safetensors"
    save_native(path, {"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)})
    url = http_server.add("/w.safetensors", path.read_bytes())
    models = {
        "strict-b": {"family": "strict", "hparams": {"tensors": 5}, "checkpoint": {"url": url, "format": "native"}}
    }
    service = make_service(tmp_path, plugins=[store_helpers], models=models, store=CheckpointStore(tmp_path / "models"))
    spec = service.registry.spec("strict-b")
    with pytest.raises(ModelBroken) as err:
        service.loader.load(spec, store_helpers.Strict)
    status = service.loader.status(spec, store_helpers.Strict)
    assert status["state"] == "error" and status["error"] == err.value.message
    assert status["error_code"] == "checkpoint_incompatible"
    fixed = dataclasses.replace(spec, hparams={"tensors": 2})
    assert service.loader.status(fixed, store_helpers.Strict)["state"] == "ready"
    assert service.loader.load(fixed, store_helpers.Strict).spec.hparams == {"tensors": 2}
