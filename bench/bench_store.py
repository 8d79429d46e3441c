"""Benchmark the checkpoint store's NumPy reader against TensorFlow on a 538 MB V2 checkpoint.

    PYTHONPATH=core .venv/bin/python bench/bench_store.py            # makes the checkpoint if needed, then times
    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python bench/bench_store.py make      # (called for you) write it with TF
    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python bench/bench_store.py tf-read   # (called for you) TF's timing

The checkpoint has MusicVAE cat-mel_2bar_big's variables (names and shapes magenta 2.1.4 creates, 134.6 M
float32 = 538 MB) with random weights, written by TensorFlow's SaveV2 under bench/out/ (gitignored).
Timings are with a warm page cache (the data file is read once before timing) so both sides read RAM.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
PREFIX = OUT / "cat-mel_2bar_big_random" / "model.ckpt"
VARS = [
    REPO / "tests/fixtures/checkpoints/compat/vars_cat-mel_2bar_big.txt",
    pathlib.Path("/work/shared/compat/magenta-variables/vars_cat-mel_2bar_big.txt"),
]
REPEAT = 3  # best of
REF_PY = REPO / ".venv-ref" / "bin" / "python"


def variables():
    path = next(p for p in VARS if p.exists())
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and not parts[0].startswith("TOTAL"):
            out[parts[0]] = json.loads(parts[1])
    return out


def make():
    """(reference env) Write the random-weight checkpoint with TensorFlow's own SaveV2."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    names, tensors = [], []
    for name, shape in variables().items():
        if name == "global_step":
            tensors.append(tf.constant(1234, tf.int64))
        else:
            tensors.append(tf.constant(rng.standard_normal(shape, dtype=np.float32) * 0.05))
        names.append(name)
    PREFIX.parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=str(PREFIX), tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    size = sum(p.stat().st_size for p in PREFIX.parent.iterdir())
    print(f"wrote {PREFIX} ({size / 1e6:.1f} MB)")


def tf_read():
    """(reference env) Time tf.train.load_checkpoint + reading every tensor; print JSON."""
    t0 = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    t1 = time.perf_counter()
    best = float("inf")
    for _ in range(REPEAT):
        arrays = None
        t = time.perf_counter()
        reader = tf.train.load_checkpoint(str(PREFIX))
        arrays = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
        best = min(best, time.perf_counter() - t)
    checksum = float(sum(float(a.astype("float64").sum()) for a in arrays.values() if a.dtype.kind == "f"))
    print(json.dumps({"import_s": t1 - t0, "read_s": best, "n": len(arrays), "checksum": checksum}))


def warm(path_dir):
    for p in path_dir.iterdir():
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def run():
    sys.path.insert(0, str(REPO / "core"))

    from magenta_api.store import CheckpointStore
    from magenta_api.store.readers.native import read_native, write_native
    from magenta_api.store.readers.tf_bundle import TFBundleReader

    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    if not pathlib.Path(str(PREFIX) + ".index").exists():
        subprocess.run([str(REF_PY), __file__, "make"], check=True, env=env)
    data_bytes = sum(p.stat().st_size for p in PREFIX.parent.iterdir())
    warm(PREFIX.parent)

    def best_of(fn):
        best, result = float("inf"), None
        for _ in range(REPEAT):
            result = None
            t = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t)
        return best, result

    ours_nocrc_s, _ = best_of(lambda: TFBundleReader(PREFIX).read_all(verify=False))
    ours_s, ours = best_of(lambda: TFBundleReader(PREFIX).read_all())  # crc32c of every tensor verified
    checksum = float(sum(float(a.astype("float64").sum()) for a in ours.values() if a.dtype.kind == "f"))

    native = OUT / "bench.safetensors"
    t = time.perf_counter()
    write_native(native, ours, {"bench": "1"})
    write_s = time.perf_counter() - t
    del ours
    t = time.perf_counter()
    loaded, _ = read_native(native)
    mmap_s = time.perf_counter() - t
    t = time.perf_counter()
    touched = float(sum(float(a.astype("float64").sum()) for a in loaded.values() if a.dtype.kind == "f"))
    touch_s = time.perf_counter() - t
    assert abs(touched - checksum) < 1e-6 * max(1.0, abs(checksum)), (touched, checksum)

    # the whole store path: first open (fetch = local copy + sha256, read, write native), then reload
    store_dir = OUT / "store"
    import shutil

    shutil.rmtree(store_dir, ignore_errors=True)
    ckpt = {"url": PREFIX.as_uri(), "sha256": "", "size": None, "format": "tf"}
    t = time.perf_counter()
    CheckpointStore(store_dir).open("big", ckpt)
    first_open_s = time.perf_counter() - t
    t = time.perf_counter()
    ck = CheckpointStore(store_dir).open("big", ckpt)
    reopen_s = time.perf_counter() - t
    assert len(ck.variables) == 18
    shutil.rmtree(store_dir, ignore_errors=True)

    proc = subprocess.run([str(REF_PY), __file__, "tf-read"], check=True, env=env, capture_output=True, text=True)
    tf_res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(tf_res["checksum"] - checksum) < 1e-6 * max(1.0, abs(checksum)), (tf_res["checksum"], checksum)

    rows = [
        ("TF: tf.train.load_checkpoint + get_tensor (all)", tf_res["read_s"]),
        ("ours: TFBundleReader.read_all, crc32c verified", ours_s),
        ("ours: TFBundleReader.read_all, no crc", ours_nocrc_s),
        ("ours: write native safetensors copy", write_s),
        ("ours: native reload (memory map, no bytes read)", mmap_s),
        ("ours: native reload + touch every value", mmap_s + touch_s),
        ("store.open first time (copy+sha256+read+native)", first_open_s),
        ("store.open when ready (memory map)", reopen_s),
    ]
    print(
        f"\ncheckpoint: {data_bytes / 1e6:.1f} MB, {tf_res['n']} tensors (warm page cache, reads best of "
        f"{REPEAT}); "
        f"TF import alone: {tf_res['import_s']:.2f} s\n"
    )
    print(f"{'what':52s} {'seconds':>10s} {'TF / this':>10s}")
    for what, secs in rows:
        print(f"{what:52s} {secs:10.4f} {tf_res['read_s'] / secs:10.1f}x")
    print("\nvalues identical to TensorFlow's read-back (float64 checksum): yes")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "run"
    {"make": make, "tf-read": tf_read, "run": run}[cmd]()
