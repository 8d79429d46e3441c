"""The NumPy checkpoint readers read back exactly what TensorFlow reads from files TensorFlow/magenta wrote."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from magenta_api.store import CheckpointInvalid
from magenta_api.store.readers import magentajs, native, tfproto
from magenta_api.store.readers.mag import read_mag
from magenta_api.store.readers.tf_bundle import TFBundleReader
from magenta_api.store.readers.tf_v1 import TFV1Reader

FIX = pathlib.Path(__file__).parent / "fixtures" / "checkpoints"
COMPAT = FIX / "compat"
REPO = pathlib.Path(__file__).resolve().parents[1]
EXPECTED = json.loads((FIX / "expected.json").read_text())


def tf_readback(stem):
    z = np.load(FIX / f"{stem}.expected.npz")
    return {str(n): z[f"t{i}"] for i, n in enumerate(z["__names__"])}


def assert_same(ours, theirs):
    assert set(ours) == set(theirs)
    for name, want in theirs.items():
        got = ours[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("stem,prefix", [("v2", "v2/model.ckpt"), ("v2sharded", "v2sharded/ckpt-1")])
def test_v2_bundle_equals_tensorflow(stem, prefix):
    reader = TFBundleReader(FIX / prefix)
    ours = reader.read_all(include_slots=True)
    theirs = tf_readback(stem)
    theirs.pop("_CHECKPOINTABLE_OBJECT_GRAPH", None)  # a string tensor: not a weight, skipped
    assert_same(ours, theirs)


def test_v2_sharded_fixture_really_has_shards_and_slices():
    reader = TFBundleReader(FIX / "v2sharded/ckpt-1")
    assert reader.num_shards == 4
    assert any(e.slices for e in reader.entries.values())


def test_v1_checkpoint_equals_tensorflow():
    ours = TFV1Reader(FIX / "v1/model.ckpt").read_all(include_slots=True)
    theirs = tf_readback("v1")
    # TF itself cannot read float16 back from V1 ("Data type not supported"); ours can, compare with V2.
    assert EXPECTED["v1"]["extra/half"]["tf_cannot_read"]
    half = ours.pop("extra/half")
    assert half.dtype == np.float16 and half.shape == (2, 3) and np.isfinite(half).all()
    assert_same(ours, theirs)


def test_optimizer_slots_skipped():
    for ours in (TFBundleReader(FIX / "v2/model.ckpt").read_all(), TFV1Reader(FIX / "v1/model.ckpt").read_all()):
        assert not [n for n in ours if n.endswith(("/Adam", "/Adam_1")) or "beta" in n]
        assert "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel" in ours
        assert "global_step" in ours  # kept by the reader; the store moves it into meta


def test_v2_slots_are_never_read(tmp_path):
    """Slot bytes are not even read: corrupting them leaves a slot-free read intact."""
    shutil.copytree(FIX / "v2", tmp_path / "v2")
    reader = TFBundleReader(tmp_path / "v2/model.ckpt")
    slot = reader.entries["decoder/multi_rnn_cell/cell_0/lstm_cell/kernel/Adam"]
    data = tmp_path / "v2/model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[slot.offset : slot.offset + slot.size] = b"\xff" * slot.size
    data.write_bytes(bytes(raw))
    assert "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel" in TFBundleReader(tmp_path / "v2/model.ckpt").read_all()
    with pytest.raises(CheckpointInvalid, match="crc32c"):
        TFBundleReader(tmp_path / "v2/model.ckpt").read_all(include_slots=True)


def test_v2_crc_mismatch_detected(tmp_path):
    shutil.copytree(FIX / "v2", tmp_path / "v2")
    reader = TFBundleReader(tmp_path / "v2/model.ckpt")
    entry = reader.entries["extra/big"]
    data = tmp_path / "v2/model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 100] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointInvalid, match=r"extra/big.*crc32c"):
        TFBundleReader(tmp_path / "v2/model.ckpt").get("extra/big")
    # verification is optional (memory-mapped peeks)
    assert TFBundleReader(tmp_path / "v2/model.ckpt").get("extra/big", verify=False).shape == (64, 70)


def test_truncated_data_file_is_clear_error(tmp_path):
    shutil.copytree(FIX / "v2", tmp_path / "v2")
    data = tmp_path / "v2/model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(CheckpointInvalid, match="truncated"):
        TFBundleReader(tmp_path / "v2/model.ckpt").read_all()


def test_corrupt_index_is_clear_error(tmp_path):
    (tmp_path / "x.index").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointInvalid, match="magic"):
        TFBundleReader(tmp_path / "x")


def test_slice_keys_match_tensorflow_encoding():
    reader = TFBundleReader(FIX / "v2sharded/ckpt-1")
    for name, entry in reader.entries.items():
        for extents in entry.slices:
            assert tfproto.slice_key(name, extents) in reader._slice_entries
    # large / negative numbers follow OrderedCode's signed encoding
    assert tfproto._signed_num_increasing(-1) == b"\x7f"
    assert tfproto._signed_num_increasing(63) == b"\xbf"
    assert tfproto._signed_num_increasing(64) == b"\xc0\x40"
    assert tfproto._signed_num_increasing(8192) == b"\xe0\x20\x00"


def test_mag_bundle_written_by_magenta():
    variables, meta = read_mag(FIX / "basic_rnn_tiny.mag")
    info = EXPECTED["basic_rnn_tiny.mag"]
    assert meta["generator_id"] == info["generator_id"] == "basic_rnn"
    assert meta["description"] == info["generator_description"]
    assert meta["bundle_details"]["description"] == info["bundle_description"]
    assert_same(variables, tf_readback("basic_rnn_tiny"))


def test_mag_garbage_is_clear_error(tmp_path):
    bad = tmp_path / "bad.mag"
    bad.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(CheckpointInvalid):
        read_mag(bad)


def _listing(path):
    rows = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(\S+) (\w+) \[([\d, ]*)\] bytes=(\d+) shard=(\d+)$", line)
        if m:
            shape = tuple(int(x) for x in m.group(3).split(",") if x.strip())
            rows[m.group(1)] = (m.group(2), shape, int(m.group(4)))
    return rows


def test_real_cat_mel_2bar_big_index_with_sparse_data(tmp_path):
    """The official MusicVAE index, with a sparse data file of the published size, reads every tensor."""
    shutil.copy(COMPAT / "cat-mel_2bar_big.ckpt.index", tmp_path / "m.ckpt.index")
    with open(tmp_path / "m.ckpt.data-00000-of-00001", "wb") as f:
        f.truncate(1_614_853_192)
    listing = _listing(COMPAT / "cat-mel_2bar_big.ckpt.index.listing.txt")
    assert len(listing) == 57
    reader = TFBundleReader(tmp_path / "m.ckpt")
    assert reader.num_shards == 1
    for name, (dtype, shape, nbytes) in listing.items():
        entry = reader.entries[name]
        assert (tfproto.DTYPE_NAMES[entry.dtype], entry.shape, entry.size) == (dtype, shape, nbytes)
    # data is zeros (sparse), so crc checks are off; memory-mapped views read nothing up front
    tensors = reader.read_all(verify=False, mmap=True)
    weights = {n for n in listing if not n.endswith(("/Adam", "/Adam_1")) and "beta" not in n}
    assert set(tensors) == weights
    for name, array in tensors.items():
        assert array.shape == listing[name][1] and array.dtype.name == listing[name][0]
    assert float(tensors["decoder/output_projection/bias"].sum()) == 0.0
    # and the variables magenta 2.1.4 builds for this model are exactly these
    vars_txt = {
        line.split("\t")[0]: line.split("\t")[1]
        for line in (COMPAT / "vars_cat-mel_2bar_big.txt").read_text().splitlines()
        if "\t" in line and not line.startswith("TOTAL")
    }
    assert {n: str(list(a.shape)) for n, a in tensors.items()} == vars_txt


def _write_shards(folder, manifest, rng):
    """Synthetic shards for a real manifest: 4 MiB each but the last, like Magenta.js publishes."""
    streams = []
    for group in manifest:
        stream = rng.standard_normal(magentajs.group_nbytes(group) // 4).astype("<f4").tobytes()
        streams.append(stream)
        paths = group["paths"]
        for i, name in enumerate(paths):
            (folder / name).write_bytes(stream[i * 4194304 : (i + 1) * 4194304])
        assert len(stream) > 4194304 * (len(paths) - 1)
    return streams


def _vars(name):
    return {
        line.split("\t")[0]: json.loads(line.split("\t")[1])
        for line in (COMPAT / f"vars_{name}.txt").read_text().splitlines()
        if "\t" in line and not line.startswith("TOTAL")
    }


@pytest.mark.parametrize("model", ["mel_2bar_small", "basic_rnn", "chord_pitches_improv"])
def test_real_magentajs_manifests(tmp_path, model):
    src = COMPAT / "magentajs" / model
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    manifest = json.loads((src / "weights_manifest.json").read_text())
    streams = _write_shards(tmp_path, manifest, np.random.default_rng(1))
    variables, meta = magentajs.read_magentajs(tmp_path)
    assert meta["config"] == json.loads((src / "config.json").read_text())
    # manifest order: the i-th weight is the i-th slice of the group's byte stream
    offset = 0
    for entry in manifest[0]["weights"]:
        n = int(np.prod(entry["shape"])) * 4
        want = np.frombuffer(streams[0][offset : offset + n], "<f4").reshape(entry["shape"])
        np.testing.assert_array_equal(variables[entry["name"]], want)
        offset += n
    names = {n: list(a.shape) for n, a in variables.items()}
    if model == "mel_2bar_small":  # same names and shapes as magenta's own cat-mel_2bar_small
        want = _vars("cat-mel_2bar_small")
        want.pop("global_step")
        assert names == want
    else:  # MusicRNN checkpoints: magenta's melody_rnn variable names (sizes differ per config)
        assert set(_vars("basic_rnn")) <= set(names)
        assert all(
            re.match(
                r"^(fully_connected/(weights|biases)|rnn/multi_rnn_cell/cell_\d/basic_lstm_cell/"
                r"(kernel|bias))$",
                n,
            )
            for n in names
        )


def test_magentajs_wrong_shard_size(tmp_path):
    src = COMPAT / "magentajs" / "basic_rnn"
    shutil.copy(src / "weights_manifest.json", tmp_path)
    _write_shards(tmp_path, json.loads((src / "weights_manifest.json").read_text()), np.random.default_rng(0))
    last = tmp_path / "group1-shard4of4"
    last.write_bytes(last.read_bytes()[:-4])
    with pytest.raises(CheckpointInvalid, match="bytes"):
        magentajs.read_magentajs(tmp_path)


def test_magentajs_quantized(tmp_path):
    rng = np.random.default_rng(3)
    q8 = rng.integers(0, 256, (3, 4)).astype(np.uint8)
    q16 = rng.integers(0, 65536, (5,)).astype("<u2")
    f32 = rng.standard_normal((2, 2)).astype("<f4")
    manifest = [
        {
            "paths": ["group1-shard1of2", "group1-shard2of2"],
            "weights": [
                {
                    "name": "a/q8",
                    "shape": [3, 4],
                    "dtype": "float32",
                    "quantization": {"min": -1.5, "scale": 0.01, "dtype": "uint8"},
                },
                {"name": "b/f32", "shape": [2, 2], "dtype": "float32"},
                {
                    "name": "c/q16",
                    "shape": [5],
                    "dtype": "float32",
                    "quantization": {"scale": 0.001, "min": 2.0, "dtype": "uint16"},
                },
            ],
        }
    ]
    stream = q8.tobytes() + f32.tobytes() + q16.tobytes()
    (tmp_path / "weights_manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "group1-shard1of2").write_bytes(stream[:20])  # a weight spans the shard boundary
    (tmp_path / "group1-shard2of2").write_bytes(stream[20:])
    variables, meta = magentajs.read_magentajs(tmp_path)
    assert meta == {}
    np.testing.assert_allclose(variables["a/q8"], q8 * np.float32(0.01) + np.float32(-1.5), rtol=1e-6)
    np.testing.assert_allclose(variables["c/q16"], q16 * np.float32(0.001) + np.float32(2.0), rtol=1e-6)
    np.testing.assert_array_equal(variables["b/f32"], f32)
    assert all(v.dtype == np.float32 for v in variables.values())


def test_native_roundtrip_is_memory_mapped(tmp_path):
    rng = np.random.default_rng(5)
    variables = {
        "w": rng.standard_normal((300, 200)).astype(np.float32),
        "step": np.int64(7),
        "b": np.array([True, False]),
        "h": rng.standard_normal(3).astype(np.float16),
        "empty": np.zeros((0, 3), np.float32),
        "sliced": np.arange(12.0).reshape(3, 4)[:, ::2],
    }
    path = tmp_path / "x.safetensors"
    native.write_native(path, variables, {"k": "v"})
    loaded, meta = native.read_native(path)
    assert meta == {"k": "v"}
    for name, want in variables.items():
        got = loaded[name]
        assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)
        np.testing.assert_array_equal(got, want)
    assert isinstance(loaded["w"], np.memmap) and not loaded["w"].flags.writeable
    # the file is readable by the safetensors library itself
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(load_file(str(path))["w"], variables["w"])


def test_native_corrupt_header(tmp_path):
    path = tmp_path / "x.safetensors"
    native.write_native(path, {"w": np.ones(10, np.float32)}, {})
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointInvalid, match="offsets"):
        native.read_native(path)


def test_no_tensorflow_in_service_code():
    """Neither core/ nor plugins/ import TensorFlow: by source and by what importing them pulls in."""
    offenders = []
    for top in ("core", "plugins"):
        for path in (REPO / top).rglob("*.py"):
            text = path.read_text()
            if re.search(r"^\s*(import tensorflow|from tensorflow)|import_module\(['\"]tensorflow", text, re.M):
                offenders.append(str(path))
    assert offenders == []
    plugins = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").exists())
    code = (
        "import sys, importlib, pathlib\n"
        "import magenta_api.store as s\n"
        "from magenta_api.store.formats import FORMATS\n"
        f"fix = pathlib.Path({str(FIX)!r})\n"
        "FORMATS['mag'].read(fix / 'basic_rnn_tiny.mag'); FORMATS['tf'].read(fix / 'v2/model.ckpt')\n"
        "FORMATS['tf'].read(fix / 'v1/model.ckpt')\n"
        f"for name in {plugins!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'magenta'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "core"), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snappy_blocks():
    from magenta_api.store.readers.snappy import decompress

    # "abcabcabcabcXYZ": literal "abc", 1-byte-offset copy of 9 (overlapping), literal "XYZ"
    block = bytes([15, 2 << 2]) + b"abc" + bytes([((9 - 4) << 2) | 1, 3]) + bytes([2 << 2]) + b"XYZ"
    assert decompress(block) == b"abcabcabcabcXYZ"
    # 2-byte offset copy and a long literal (length in an extra byte)
    lit = bytes(range(70))
    block = bytes([70 + 5]) + bytes([60 << 2, 69]) + lit + bytes([(5 - 1) << 2 | 2, 70, 0])
    assert decompress(block) == lit + lit[:5]
    with pytest.raises(CheckpointInvalid):
        decompress(bytes([10, 0]) + b"a")
