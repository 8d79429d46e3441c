"""`magenta-api fetch`, `fetch --repin`, `forget` and `generate` on a checkpoint served over real HTTP,
each run as a real process: progress for every phase, a pin replaced only on purpose, and the fixes
the errors name."""

import hashlib
import json

import store_helpers
import yaml
from store_helpers import http_server, run_cli, v2_tar  # noqa: F401  (fixture)

from magenta_api.store import CheckpointStore
from magenta_api.testing import make_app

MODEL = "tiny"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def setup(tmp_path, url, family="tensors", **extra):
    models = tmp_path / "models.yaml"
    entry = {"family": family, "checkpoint": {"url": url, "format": "tf-tar"}, **extra}
    models.write_text(yaml.safe_dump({"models": {MODEL: entry}}))
    return {"MODEL_DIR": str(tmp_path / "m"), "CACHE_DIR": str(tmp_path / "c"), "MAGENTA_API_MODELS": str(models)}


def pins(tmp_path):
    path = tmp_path / "m" / "checkpoints.lock"
    return json.loads(path.read_text())["models"] if path.exists() else {}


def test_fetch_shows_progress_of_download_extraction_and_conversion(tmp_path, http_server):
    data = v2_tar(padding=100_000)
    env = setup(tmp_path, http_server.add("/tiny.tar", data))
    out = run_cli(["fetch", MODEL], env)
    assert out.returncode == 0, out.stderr
    bars = [line for line in out.stderr.replace("\r", "\n").splitlines() if "100%" in line]
    assert any(b.startswith(f"{MODEL}:") for b in bars), out.stderr  # the download
    assert any(b.startswith(f"{MODEL} extracting:") for b in bars), out.stderr
    assert any(b.startswith(f"{MODEL} converting:") for b in bars), out.stderr
    assert f"{MODEL}: ready at {tmp_path / 'm' / MODEL / 'native.safetensors'}" in out.stdout
    assert pins(tmp_path)[MODEL]["sha256"] == sha(data)
    out = run_cli(["fetch", MODEL, "--quiet"], env)  # ready: nothing downloaded again, no bars
    assert out.returncode == 0 and "100%" not in out.stderr and http_server.count("/tiny.tar") == 1


def test_repin_replaces_the_pin_only_with_a_file_that_verifies(tmp_path, http_server):
    first, changed = v2_tar(), v2_tar("renamed_folder")
    url = http_server.add("/tiny.tar", first)
    env = setup(tmp_path, url)
    assert run_cli(["fetch", MODEL, "--quiet"], env).returncode == 0
    # the publisher replaces the file with a corrupt one: --repin refuses it, keeps the old pin and files
    http_server.add("/tiny.tar", v2_tar(corrupt=True))
    out = run_cli(["fetch", "--repin", MODEL, "--quiet"], env)
    assert out.returncode == 4 and "crc32c" in out.stderr and f"fix: magenta-api fetch {MODEL}" in out.stderr
    assert pins(tmp_path)[MODEL]["sha256"] == sha(first)
    assert sorted(p.name for p in (tmp_path / "m" / MODEL).iterdir()) == [".lock", "fetched.json", "native.safetensors"]
    checkpoint = yaml.safe_load((tmp_path / "models.yaml").read_text())["models"][MODEL]["checkpoint"]
    assert CheckpointStore(tmp_path / "m", offline=True).open(MODEL, checkpoint).sha256 == sha(first)
    # then with a good new file
    http_server.add("/tiny.tar", changed)
    out = run_cli(["fetch", "--repin", MODEL, "--quiet"], env)
    assert out.returncode == 0, out.stderr
    assert f"{MODEL}: pinned sha256 {sha(changed)}" in out.stdout
    assert pins(tmp_path)[MODEL]["sha256"] == sha(changed)


def test_forget_deletes_the_files_and_the_pin(tmp_path, http_server):
    data = v2_tar()
    env = setup(tmp_path, http_server.add("/tiny.tar", data))
    assert run_cli(["fetch", MODEL, "--quiet"], env).returncode == 0
    out = run_cli(["forget", MODEL], env)
    assert out.returncode == 0, out.stderr
    assert f"forgot the pinned sha256 {sha(data)} and its files" in out.stdout
    assert MODEL not in pins(tmp_path)
    assert sorted(p.name for p in (tmp_path / "m" / MODEL).iterdir()) == [".lock"]
    checkpoint = yaml.safe_load((tmp_path / "models.yaml").read_text())["models"][MODEL]["checkpoint"]
    assert CheckpointStore(tmp_path / "m").status(MODEL, checkpoint)["state"] == "missing"
    out = run_cli(["forget", MODEL, "nope"], env)
    assert out.returncode == 2 and "forgot nothing" in out.stdout and "nope: unknown model" in out.stderr


def test_generate_fetches_a_missing_checkpoint_in_the_foreground(tmp_path, http_server):
    env = setup(tmp_path, http_server.add("/tiny.tar", v2_tar()))
    out = run_cli(["generate", MODEL, "--seed", "1"], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["variables"] == 9
    assert f"{MODEL} converting:" in out.stderr  # the fetch showed its progress
    assert http_server.count("/tiny.tar") == 1


def test_offline_fetch_says_how_to_place_the_files(tmp_path, http_server):
    env = setup(tmp_path, http_server.add("/tiny.tar", v2_tar()))
    out = run_cli(["fetch", MODEL, "--quiet"], {**env, "MAGENTA_API_OFFLINE": "1"})
    assert out.returncode == 4
    assert "on a machine with network access" in out.stderr and f"{tmp_path / 'm' / MODEL}/" in out.stderr
    assert http_server.count("/tiny.tar") == 0


def test_a_checkpoint_the_family_cannot_run_is_reported_with_the_familys_reason(tmp_path, http_server):
    env = setup(tmp_path, http_server.add("/tiny.tar", v2_tar()), family="strict", hparams={"tensors": 3})
    out = run_cli(["generate", MODEL], env)
    assert out.returncode == 4
    assert "[checkpoint_incompatible]" in out.stderr and "has 9 weights, a 3-weight model was declared" in out.stderr


def test_a_hash_pinned_before_verification_is_fixed_by_the_command_the_503_names(tmp_path, http_server):
    """The state older stores left: the corrupt file's sha256 in checkpoints.lock. The right file is
    refused as a mismatch; the 503 names `magenta-api fetch --repin`, and running it repairs the model."""
    corrupt, right = v2_tar(corrupt=True), v2_tar()
    url = http_server.add("/tiny.tar", right)
    env = setup(tmp_path, url)
    (tmp_path / "m").mkdir()
    lock = {"models": {MODEL: {"url": url, "sha256": sha(corrupt), "size": len(corrupt), "format": "tf-tar"}}}
    (tmp_path / "m" / "checkpoints.lock").write_text(json.dumps(lock))
    store = CheckpointStore(tmp_path / "m", backoff=0.01, fetch_wait_s=20)
    models = yaml.safe_load((tmp_path / "models.yaml").read_text())["models"]
    client = make_app(tmp_path / "app", plugins=[store_helpers], models=models, store=store).test_client()
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert "pinned" in err["message"] and err["details"]["fix"] == f"magenta-api fetch --repin {MODEL}"
    out = run_cli(err["details"]["fix"].split()[1:], env)
    assert out.returncode == 0, out.stderr
    assert f"{MODEL}: ready" in out.stdout
    assert pins(tmp_path)[MODEL]["sha256"] == sha(right)
    resp = client.post("/v1/generate", json={"model": MODEL})
    assert resp.status_code == 200, resp.get_json()
