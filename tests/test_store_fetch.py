"""Fetching checkpoints over real HTTP (127.0.0.1 server with Range), file:// and requests-mock errors."""

import hashlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import numpy as np
import pytest
import requests_mock
from store_helpers import http_server, v2_tar  # noqa: F401  (pytest fixture)

from magenta_api.checkpoint import Checkpoint
from magenta_api.store import CheckpointInvalid, CheckpointStore, CheckpointUnavailable, sources

FIX = pathlib.Path(__file__).parent / "fixtures" / "checkpoints"
REPO = pathlib.Path(__file__).resolve().parents[1]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def tf_expected():
    z = np.load(FIX / "v2.expected.npz")
    return {str(n): z[f"t{i}"] for i, n in enumerate(z["__names__"])}


def assert_weights(ck):
    want = tf_expected()
    assert isinstance(ck, Checkpoint)
    names = {n for n in want if not n.endswith(("/Adam", "/Adam_1")) and "beta" not in n and n != "global_step"}
    assert set(ck.variables) == names
    for n in names:
        np.testing.assert_array_equal(ck[n], want[n])
    assert ck.meta["global_step"] == int(want["global_step"])


def fast_store(tmp_path, **kw):
    return CheckpointStore(tmp_path / "models", backoff=0.01, **kw)


def native_blob(nbytes, seed=0):
    """The bytes of a real native (safetensors) checkpoint of about ``nbytes``, random weights."""
    from magenta_api.store.readers.native import encode_meta, write_native

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "w.safetensors"
        write_native(path, {"w": rng.standard_normal(max(1, nbytes // 4)).astype(np.float32)}, encode_meta({}))
        return path.read_bytes()


def test_http_download_open_and_reload(tmp_path, http_server):
    data = v2_tar()
    ckpt = {
        "url": http_server.add("/ckpt/tiny.tar", data),
        "sha256": sha(data),
        "size": len(data),
        "format": "tf-tar",
        "mirrors": [],
    }
    store = fast_store(tmp_path)
    assert store.status("tiny", ckpt)["state"] == "missing"
    ck = store.open("tiny", ckpt)
    assert_weights(ck)
    assert ck.format == "tf-tar" and ck.sha256 == sha(data)
    st = store.status("tiny", ckpt)
    assert st["state"] == "ready" and st["bytes_done"] == st["size"] == len(data) and st["sha256"] == sha(data)
    assert not list((tmp_path / "models" / "tiny").rglob("*.part"))
    # the extracted source is deleted once the native copy is verified; later opens memory-map that copy
    root = tmp_path / "models" / "tiny"
    assert not (root / "src").exists() and (root / "native.safetensors").exists()
    assert st["path"] == str(root / "native.safetensors")
    again = fast_store(tmp_path).open("tiny", dict(ckpt))
    assert isinstance(next(iter(again.variables.values())), np.memmap)
    assert_weights(again)
    assert http_server.count("/ckpt/tiny.tar") == 1


def test_resume_after_connection_cut(tmp_path, http_server):
    data = native_blob(300_000)
    url = http_server.add("/big.safetensors", data)
    http_server.cut_after["/big.safetensors"] = 100_000
    path = fast_store(tmp_path).fetch("big", {"url": url, "sha256": sha(data), "size": len(data), "format": "native"})
    assert path.read_bytes() == data
    assert http_server.count("/big.safetensors") == 2
    # the second request resumed where the first one's received bytes ended (at most one 64 KiB read lost)
    resumed = int(http_server.ranges[1][1].removeprefix("bytes=").rstrip("-"))
    assert 100_000 - 65536 <= resumed <= 100_000


def test_sha256_mismatch_rejected_and_removed(tmp_path, http_server):
    data = v2_tar()
    url = http_server.add("/t.tar", data)
    store = fast_store(tmp_path)
    with pytest.raises(CheckpointInvalid, match="sha256") as err:
        store.fetch("m", {"url": url, "sha256": "0" * 64, "size": None, "format": "tf-tar"})
    assert "models.yaml" in err.value.fix  # a declared hash is fixed where it is declared
    root = tmp_path / "models" / "m"
    assert not (root / "fetched.json").exists() and not (root / "src").exists()
    assert not [p for p in root.rglob("*") if p.is_file() and p.name not in (".lock", "failed.json")]
    st = store.status("m", {"url": url, "sha256": "0" * 64, "format": "tf-tar"})
    assert st["state"] == "failed" and "does not match" in st["reason"] and st["fix"] == err.value.fix


def test_size_mismatch_rejected(tmp_path, http_server):
    data = v2_tar()
    url = http_server.add("/t.tar", data)
    with pytest.raises(CheckpointInvalid, match="size"):
        fast_store(tmp_path).fetch("m", {"url": url, "sha256": "", "size": len(data) + 1, "format": "tf-tar"})


def test_trust_on_first_use(tmp_path, http_server):
    data = v2_tar()
    url = http_server.add("/t.tar", data)
    ckpt = {"url": url, "sha256": "", "size": None, "format": "tf-tar"}
    store = fast_store(tmp_path)
    store.fetch("m", ckpt)
    pins = json.loads((tmp_path / "models" / "checkpoints.lock").read_text())["models"]
    assert pins["m"]["sha256"] == sha(data) and pins["m"]["size"] == len(data) and pins["m"]["url"] == url
    assert store.status("m", ckpt)["sha256"] == sha(data)
    # the published file changes under the same URL: a fresh download must be refused
    shutil.rmtree(tmp_path / "models" / "m")
    other = v2_tar("other_folder")
    http_server.add("/t.tar", other)
    with pytest.raises(CheckpointInvalid, match="sha256") as err:
        store.fetch("m", ckpt)
    assert err.value.fix == "magenta-api fetch --repin m" and "pinned" in err.value.message
    st = store.status("m", ckpt)
    assert st["state"] == "failed" and st["fix"] == "magenta-api fetch --repin m"
    assert not (tmp_path / "models" / "m" / "src").exists()
    # --repin on purpose: the new file is verified, then replaces the pin
    st = store.prepare("m", ckpt, repin=True)
    assert st["state"] == "ready" and st["sha256"] == sha(other)
    assert json.loads((tmp_path / "models" / "checkpoints.lock").read_text())["models"]["m"]["sha256"] == sha(other)
    assert_weights(store.open("m", ckpt))


def test_http_404_is_clear_unavailable(tmp_path, http_server):
    url = http_server.url("/nope.tar")
    with pytest.raises(CheckpointUnavailable) as err:
        fast_store(tmp_path).fetch("cat-mel_2bar_big", {"url": url, "format": "tf-tar"})
    assert "HTTP 404" in err.value.message and url in err.value.message
    assert err.value.fix == "magenta-api fetch cat-mel_2bar_big"
    assert err.value.details == {"model": "cat-mel_2bar_big", "fix": "magenta-api fetch cat-mel_2bar_big"}
    assert http_server.count("/nope.tar") == 1  # 4xx is not retried


def test_http_500_retried_then_unavailable(tmp_path):
    url = "https://example.invalid/m.tar"
    with requests_mock.Mocker() as m:
        m.get(url, status_code=500)
        with pytest.raises(CheckpointUnavailable, match="HTTP 500") as err:
            CheckpointStore(tmp_path, retries=3, backoff=0.001).fetch("m", {"url": url, "format": "tf-tar"})
        assert m.call_count == 4
    assert err.value.fix == "magenta-api fetch m"


def test_http_503_then_success(tmp_path):
    data = v2_tar()
    url = "https://example.invalid/m.tar"
    with requests_mock.Mocker() as m:
        m.get(url, [{"status_code": 503}, {"status_code": 502}, {"content": data, "status_code": 200}])
        ck = CheckpointStore(tmp_path, retries=3, backoff=0.001).open("m", {"url": url, "format": "tf-tar"})
        assert m.call_count == 3
    assert_weights(ck)


def test_connection_errors_retried(tmp_path):
    import requests

    data = (FIX / "basic_rnn_tiny.mag").read_bytes()
    url = "http://example.invalid/b.mag"
    with requests_mock.Mocker() as m:
        m.get(url, [{"exc": requests.ConnectionError("refused")}, {"exc": requests.Timeout("slow")}, {"content": data}])
        ck = CheckpointStore(tmp_path, backoff=0.001).open("b", {"url": url, "format": "mag"})
    assert ck.meta["generator_id"] == "basic_rnn"


def test_gs_urls_map_to_public_https(tmp_path):
    assert (
        sources.normalize("gs://magentadata/models/music_vae/checkpoints/x.tar")
        == "https://storage.googleapis.com/magentadata/models/music_vae/checkpoints/x.tar"
    )
    data = (FIX / "basic_rnn_tiny.mag").read_bytes()
    with requests_mock.Mocker() as m:
        m.get("https://storage.googleapis.com/bucket/dir/b.mag", content=data)
        path = CheckpointStore(tmp_path, keep_source=True).fetch("b", {"url": "gs://bucket/dir/b.mag", "format": "mag"})
    assert path.name == "native.safetensors" and (tmp_path / "b" / "src" / "b.mag").read_bytes() == data
    with pytest.raises(CheckpointInvalid, match="scheme") as err:
        CheckpointStore(tmp_path).fetch("b", {"url": "ftp://x/b.mag", "format": "mag"})
    assert err.value.details["fix"] == "correct the model's checkpoint entry (url, format) in its models.yaml"


def test_mirror_used_when_primary_fails(tmp_path, http_server):
    data = (FIX / "basic_rnn_tiny.mag").read_bytes()
    mirror = http_server.add("/mirror/b.mag", data)
    ckpt = {"url": http_server.url("/gone/b.mag"), "sha256": sha(data), "format": "mag", "mirrors": [mirror]}
    ck = fast_store(tmp_path).open("b", ckpt)
    assert ck.sha256 == sha(data) and http_server.count("/gone/b.mag") == 1


def test_offline_gives_503_with_fetch_hint(tmp_path, http_server):
    data = (FIX / "basic_rnn_tiny.mag").read_bytes()
    ckpt = {"url": http_server.add("/b.mag", data), "format": "mag"}
    offline = fast_store(tmp_path, offline=True)
    with pytest.raises(CheckpointUnavailable) as err:
        offline.open("basic_rnn", ckpt)
    place = tmp_path / "models" / "basic_rnn"
    assert "offline" in err.value.message and err.value.details["place"] == str(place)
    # the fix says how to place the files: `magenta-api fetch` on a connected machine, then copy the folder
    fix = err.value.fix
    assert "MAGENTA_API_OFFLINE" in fix and "magenta-api fetch basic_rnn" in fix and f"{place}/" in fix
    assert http_server.count("/b.mag") == 0
    assert offline.status("basic_rnn", ckpt)["state"] == "missing"
    connected = CheckpointStore(tmp_path / "elsewhere", backoff=0.01)
    connected.prepare("basic_rnn", ckpt)  # what `magenta-api fetch` does on the connected machine
    shutil.copytree(tmp_path / "elsewhere" / "basic_rnn", place)
    assert offline.status("basic_rnn", ckpt)["state"] == "ready"
    assert offline.open("basic_rnn", ckpt).meta["generator_id"] == "basic_rnn"


def test_local_native_opened_in_place(tmp_path):
    from magenta_api.store.readers.native import write_native

    path = tmp_path / "embedded.safetensors"
    write_native(path, {"w": np.arange(6, dtype=np.float32)}, {"config": json.dumps({"a": 1})})
    ckpt = {"url": path.as_uri(), "sha256": sha(path.read_bytes()), "format": "native"}
    store = CheckpointStore(tmp_path / "models", offline=True)
    ck = store.open("emb", ckpt)
    assert ck.meta == {"config": {"a": 1}} and ck.sha256 == ckpt["sha256"]
    np.testing.assert_array_equal(ck["w"], np.arange(6))
    assert not (tmp_path / "models").exists()  # nothing copied
    assert store.status("emb", ckpt)["state"] == "ready"
    with pytest.raises(CheckpointInvalid, match="sha256") as err:
        CheckpointStore(tmp_path / "models").open("emb", dict(ckpt, sha256="1" * 64))
    assert err.value.fix.startswith(f"{path} is not the file declared for emb") and "models.yaml" in err.value.fix
    with pytest.raises(CheckpointUnavailable, match="does not exist") as err:
        store.open("emb", dict(ckpt, url=(tmp_path / "gone.safetensors").as_uri()))
    assert err.value.fix.startswith(f"put the checkpoint file at {tmp_path / 'gone.safetensors'}")


def test_every_format_from_file_urls(tmp_path):
    store = CheckpointStore(tmp_path / "models", offline=True)  # file:// needs no network
    assert_weights(store.open("v2", {"url": (FIX / "v2/model.ckpt").as_uri(), "format": "tf"}))
    ck = store.open("v1", {"url": (FIX / "v1/model.ckpt").as_uri(), "format": "tf"})
    assert ck.meta["tf_format"] == "V1" and "encoder/mu/kernel" in ck
    ck = store.open("sh", {"url": (FIX / "v2sharded/ckpt-1").as_uri(), "format": "tf"})
    assert ck["layer3/.ATTRIBUTES/VARIABLE_VALUE"].shape == (32, 40)
    ck = store.open("mag", {"url": (FIX / "basic_rnn_tiny.mag").as_uri(), "format": "mag"})
    assert ck.meta["generator_id"] == "basic_rnn" and ck.format == "mag"
    for model in ("v2", "v1", "sh", "mag"):
        assert (tmp_path / "models" / model / "native.safetensors").exists()


def test_magentajs_over_http(tmp_path, http_server):
    rng = np.random.default_rng(0)
    weights = {
        "encoder/mu/bias": rng.standard_normal(7).astype("<f4"),
        "decoder/output_projection/kernel": rng.standard_normal((5, 9)).astype("<f4"),
    }
    manifest = [
        {
            "paths": ["group1-shard1of2", "group1-shard2of2"],
            "weights": [{"name": n, "shape": list(a.shape), "dtype": "float32"} for n, a in weights.items()],
        }
    ]
    stream = b"".join(a.tobytes() for a in weights.values())
    config = {"type": "MusicVAE", "dataConverter": {"type": "MelodyConverter", "args": {"numSteps": 32}}}
    http_server.add("/js/mel/weights_manifest.json", json.dumps(manifest).encode())
    http_server.add("/js/mel/group1-shard1of2", stream[:100])
    http_server.add("/js/mel/group1-shard2of2", stream[100:])
    http_server.add("/js/mel/config.json", json.dumps(config).encode())
    ckpt = {"url": http_server.url("/js/mel"), "sha256": "", "format": "magentajs"}
    ck = fast_store(tmp_path).open("mel", ckpt)
    assert ck.meta["config"] == config and ck.format == "magentajs"
    for n, a in weights.items():
        np.testing.assert_array_equal(ck[n], a)
    assert ck.sha256 == sha(json.dumps(manifest).encode() + stream)
    assert fast_store(tmp_path).status("mel", ckpt)["size"] == len(json.dumps(manifest)) + len(stream)


# ---- archives ---------------------------------------------------------------------------------------


def _tar_with(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _member(name, payload=b"x", **kw):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    for k, v in kw.items():
        setattr(info, k, v)
    return info, payload


@pytest.mark.parametrize(
    "members",
    [
        [_member("ok/model.ckpt.index"), _member("../evil.txt")],
        [_member("ok/../../evil.txt")],
        [_member("/tmp/evil_abs.txt")],
        [_member("ok/link", b"", type=tarfile.SYMTYPE, linkname="../../evil.txt")],
    ],
)
def test_malicious_tar_refused(tmp_path, members):
    data = _tar_with(members)
    url = tmp_path / "evil.tar"
    url.write_bytes(data)
    store = CheckpointStore(tmp_path / "models")
    with pytest.raises(CheckpointInvalid, match="unsafe") as err:
        store.fetch("evil", {"url": url.as_uri(), "format": "tf-tar"})
    assert "point checkpoint.url in its models.yaml at a safe one" in err.value.fix
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "models" / "evil.txt").exists()
    assert not pathlib.Path("/tmp/evil_abs.txt").exists()
    assert not (tmp_path / "models" / "evil" / "fetched.json").exists()
    assert store.status("evil", {"url": url.as_uri(), "format": "tf-tar"})["state"] == "failed"
    assert not (tmp_path / "models" / "checkpoints.lock").exists()  # never pinned
    assert sorted(p.name for p in (tmp_path / "models" / "evil").iterdir()) == [".lock", "failed.json"]


# ---- processes --------------------------------------------------------------------------------------


def _env():
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "core"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )


FETCH_SCRIPT = """
import json, pathlib, sys
from magenta_api.store import CheckpointStore
store = CheckpointStore(pathlib.Path(sys.argv[1]), backoff=0.01)
ck = store.open(sys.argv[2], json.loads(sys.argv[3]))
print(json.dumps({"sha": ck.sha256, "n": len(ck.variables)}))
"""


@pytest.mark.slow
def test_eight_processes_one_download(tmp_path, http_server):
    data = v2_tar(padding=60_000)
    http_server.delay = 0.02  # ~2 s transfer so the processes overlap
    http_server.chunk = 1024
    ckpt = {"url": http_server.add("/t.tar", data), "sha256": "", "size": len(data), "format": "tf-tar"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH_SCRIPT, str(tmp_path / "models"), "tiny", json.dumps(ckpt)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for _, e in outs]
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert {r["sha"] for r in results} == {sha(data)} and {r["n"] for r in results} == {9}
    assert http_server.count("/t.tar") == 1


def _wait_for(predicate, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_sigkill_mid_download_never_loaded(tmp_path, http_server):
    data = v2_tar(padding=600_000)
    http_server.delay = 0.05
    http_server.chunk = 8192
    ckpt = {"url": http_server.add("/t.tar", data), "sha256": sha(data), "size": len(data), "format": "tf-tar"}
    proc = subprocess.Popen(
        [sys.executable, "-c", FETCH_SCRIPT, str(tmp_path / "models"), "tiny", json.dumps(ckpt)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    part = tmp_path / "models" / "tiny" / ".staging" / "t.tar.part"
    store = fast_store(tmp_path)
    assert _wait_for(lambda: part.exists() and part.stat().st_size > 65536)
    st = store.status("tiny", ckpt)
    assert st["state"] == "downloading" and st["size"] == len(data)
    assert _wait_for(lambda: (store.status("tiny", ckpt)["bytes_done"] or 0) > 0, 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    got = part.stat().st_size
    assert 0 < got < len(data)
    # nothing half-there is ready or loadable
    st = store.status("tiny", ckpt)
    assert st["state"] == "missing" and st["bytes_done"] == got
    assert not (tmp_path / "models" / "tiny" / "fetched.json").exists()
    assert not (tmp_path / "models" / "tiny" / "native.safetensors").exists()
    with pytest.raises(CheckpointUnavailable):
        fast_store(tmp_path, offline=True).open("tiny", ckpt)
    # a later open resumes from the partial file and verifies the whole
    http_server.delay = 0
    assert_weights(store.open("tiny", ckpt))
    assert http_server.ranges[-1] == ("/t.tar", f"bytes={got}-")


def test_sigkill_with_corrupt_partial_refetches(tmp_path, http_server):
    """A partial file that went bad fails the hash, is deleted, and the next fetch starts over."""
    data = v2_tar()
    ckpt = {"url": http_server.add("/t.tar", data), "sha256": sha(data), "size": len(data), "format": "tf-tar"}
    staging = tmp_path / "models" / "tiny" / ".staging"
    staging.mkdir(parents=True)
    (staging / "t.tar.part").write_bytes(b"garbage" * 100)
    store = fast_store(tmp_path)
    with pytest.raises(CheckpointInvalid, match="sha256"):
        store.fetch("tiny", ckpt)
    assert not (staging / "t.tar.part").exists()
    with pytest.raises(CheckpointInvalid, match="next one is due"):  # a request waits for the backoff
        store.open("tiny", ckpt)
    assert store.prepare("tiny", ckpt)["state"] == "ready"  # `magenta-api fetch` tries again at once
    assert_weights(store.open("tiny", ckpt))


def test_status_reports_progress_while_downloading(tmp_path, http_server):
    data = native_blob(200_000)
    http_server.delay = 0.01
    http_server.chunk = 2048
    ckpt = {"url": http_server.add("/p.safetensors", data), "sha256": "", "size": None, "format": "native"}
    store = fast_store(tmp_path)
    thread = threading.Thread(target=lambda: store.fetch("p", ckpt))
    thread.start()
    seen = []
    assert _wait_for(
        lambda: (
            seen.append(store.status("p", ckpt))
            or (seen[-1]["state"] == "downloading" and (seen[-1]["bytes_done"] or 0) > 0)
        )
    )
    assert seen[-1]["size"] in (None, len(data))
    thread.join(timeout=60)
    st = store.status("p", ckpt)
    assert st["state"] == "ready" and st["bytes_done"] == len(data)


def test_tf_prefix_over_http_v2_and_v1(tmp_path, http_server):
    for f in (FIX / "v2").iterdir():
        http_server.add(f"/v2/{f.name}", f.read_bytes())
    http_server.add("/v1/model.ckpt", (FIX / "v1/model.ckpt").read_bytes())
    store = fast_store(tmp_path)
    assert_weights(store.open("v2", {"url": http_server.url("/v2/model.ckpt"), "format": "tf"}))
    ck = store.open("v1", {"url": http_server.url("/v1/model.ckpt"), "format": "tf"})
    assert ck.meta["tf_format"] == "V1"
    z = np.load(FIX / "v1.expected.npz")
    want = z[f"t{list(z['__names__']).index('encoder/mu/kernel')}"]
    np.testing.assert_array_equal(ck["encoder/mu/kernel"], want)
    assert http_server.count("/v1/model.ckpt.index") == 1  # tried V2 first, fell back to V1


def test_save_native_meta_roundtrip(tmp_path):
    from magenta_api.store import save_native

    path = tmp_path / "emb.safetensors"
    save_native(path, {"w": np.ones((2, 3), np.float32)}, {"config": {"type": "MusicRNN"}, "generator_id": "x"})
    ck = CheckpointStore(tmp_path / "m").open("emb", {"url": path.as_uri(), "format": "native"})
    assert ck.meta == {"config": {"type": "MusicRNN"}, "generator_id": "x"}


def test_prepare_then_read_only_model_dir(tmp_path, http_server):
    data = (FIX / "basic_rnn_tiny.mag").read_bytes()
    ckpt = {"url": http_server.add("/b.mag", data), "format": "mag"}
    store = fast_store(tmp_path)
    st = store.prepare("b", ckpt, progress=True)
    assert st["state"] == "ready" and (tmp_path / "models" / "b" / "native.safetensors").exists()
    models = tmp_path / "models"
    modes = {p: p.stat().st_mode for p in [models, *models.rglob("*")]}
    try:
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        ck = CheckpointStore(models, offline=True).open("b", ckpt)
        assert ck.meta["generator_id"] == "basic_rnn" and http_server.count("/b.mag") == 1
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_progress_bar_on_stderr(tmp_path, http_server, capsys):
    data = native_blob(100_000)
    ckpt = {"url": http_server.add("/x.safetensors", data), "format": "native"}
    fast_store(tmp_path).fetch("x", ckpt, progress=True)
    err = capsys.readouterr().err
    assert "x:" in err and "100%" in err


def test_complete_part_file_is_not_downloaded_again(tmp_path, http_server):
    """Killed after the last byte but before the rename: the 416 answer says the .part is whole."""
    data = native_blob(50_000)
    ckpt = {"url": http_server.add("/w.safetensors", data), "sha256": sha(data), "format": "native"}
    staging = tmp_path / "models" / "w" / ".staging"
    staging.mkdir(parents=True)
    (staging / "w.safetensors.part").write_bytes(data)
    path = fast_store(tmp_path).fetch("w", ckpt)
    assert path.read_bytes() == data
    assert http_server.ranges == [("/w.safetensors", f"bytes={len(data)}-")]


def test_threads_share_one_download(tmp_path, http_server):
    data = v2_tar(padding=40_000)
    http_server.delay = 0.01
    http_server.chunk = 2048
    ckpt = {"url": http_server.add("/t.tar", data), "sha256": "", "format": "tf-tar"}
    store = fast_store(tmp_path)
    results, errors = [], []

    def worker():
        try:
            results.append(store.open("tiny", ckpt).sha256)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and results == [sha(data)] * 4
    assert http_server.count("/t.tar") == 1


def test_progress_logs_lines(tmp_path, caplog):
    from magenta_api.store.progress import Progress

    prog = Progress("cat-mel_2bar_big", tmp_path / "p.json", total=2_000_000, log_every=0, write_every=0)
    with caplog.at_level("INFO", logger="magenta_api.store.progress"):
        prog(1_000_000, 2_000_000)
    assert "cat-mel_2bar_big: downloaded 1.0 of 2.0 MB (50%)" in caplog.text
    assert json.loads((tmp_path / "p.json").read_text())["bytes_done"] == 1_000_000
    prog.close()
    assert not (tmp_path / "p.json").exists()


def test_unresolvable_host_fails_at_once_without_retries(tmp_path, requests_mock):
    """A machine without DNS answers 503 straight away instead of after the whole backoff."""
    import requests
    import urllib3

    from magenta_api.store.download import download

    url = "https://checkpoints.invalid/model.tar"
    cause = urllib3.exceptions.NameResolutionError("checkpoints.invalid", None, OSError("Name or service not known"))
    requests_mock.get(url, exc=requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, url, cause)))
    with pytest.raises(CheckpointUnavailable, match="cannot resolve the host"):
        download(url, tmp_path / "m.tar", retries=5, backoff=10.0)
    assert requests_mock.call_count == 1
    assert not list(tmp_path.iterdir())


def test_refused_connection_is_still_retried(tmp_path, requests_mock):
    import requests

    from magenta_api.store.download import download

    url = "https://checkpoints.example/model.tar"
    requests_mock.get(url, exc=requests.ConnectionError("connection refused"))
    with pytest.raises(CheckpointUnavailable, match="after 2 retries"):
        download(url, tmp_path / "m.tar", retries=2, backoff=0.01)
    assert requests_mock.call_count == 3
