"""MusicVAE: our NumPy engine vs Magenta 2.1.4's TrainedModel on the same TF checkpoint, in one run.

Times sample (n=1, n=32), encode (1 sequence) and interpolate (2 inputs, 5 outputs) at the API level
(our ``MusicVAEFamily.generate`` vs ``TrainedModel.sample/encode/interpolate``, NoteSequences in and
out on both sides) for cat-mel_2bar_small and cat-mel_2bar_big shapes, and prints the ratios.
Magenta runs in a subprocess in .venv-ref. Both sides get the same thread budget (``--threads``).

    PYTHONPATH=core:plugins .venv/bin/python bench/bench_musicvae.py [--threads 1] [--reps 20]

The random-weight checkpoints come from ``reference/musicvae_reference.py --big`` (run in .venv-ref
automatically when bench/out/ lacks them).

Our side reads the checkpoint with the store's TF reader (magenta_api.store), exactly as the
service does. Results are also written to bench/out/musicvae_bench.json.

The header names the OpenBLAS kernels our side ran (Magenta's TensorFlow brings its own, oneDNN's).
An environment that sets ``OPENBLAS_CORETYPE`` (e.g. Haswell, the AVX2 kernels) holds NumPy to those on
any CPU; ``--blas-core SkylakeX`` runs our side on OpenBLAS's AVX-512 kernels, what it picks by itself on
an AVX-512 CPU, where small batches take the engine's feature-major path (``nn.small_gemm``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchlib import product_floor, thread_env, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
SIZES = {"small": "cat-mel_2bar_small", "big": "cat-mel_2bar_big"}
OPS = ("sample n=1", "sample n=32", "encode", "interpolate")
N_INTERP = 5


def melody_json(offset):
    """A 2-bar monophonic melody as NoteSequence JSON (a note every two 16ths)."""
    step = 0.125
    notes = [
        {"pitch": 60 + offset + (t * 7) % 12, "velocity": 90, "startTime": t * step, "endTime": (t + 2) * step}
        for t in range(0, 32, 2)
    ]
    return {
        "ticksPerQuarter": 220,
        "tempos": [{"qpm": 120}],
        "timeSignatures": [{"numerator": 4, "denominator": 4}],
        "notes": notes,
        "totalTime": 4.0,
    }


# --- our side ----------------------------------------------------------------------------------


def ours(size, ckpt, reps):
    import numpy as np

    sys.path[:0] = [os.path.join(ROOT, "core"), os.path.join(ROOT, "plugins")]
    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import GenerateRequest, ModelSpec
    from magenta_api_musicvae.family import MusicVAEFamily

    t0 = time.perf_counter()
    try:
        from magenta_api.store.readers.tf import read_tf

        variables, meta = read_tf(ckpt)
        reader = "magenta_api.store"
    except ImportError:  # store not there: a dump made beside the checkpoint
        d = np.load(ckpt + ".npz")
        variables, meta, reader = {k: d[k] for k in d.files}, {}, "npz"
    fam = MusicVAEFamily(
        ModelSpec(id=SIZES[size], family="musicvae", hparams={"converter": "melody"}),
        Checkpoint(variables, "tf", meta, ""),
    )
    load_s = time.perf_counter() - t0

    def req(mode, n, inputs=()):
        return GenerateRequest(
            mode=mode,
            num_outputs=n,
            temperature=0.5,
            length=32,
            qpm=120.0,
            seed=0,
            rng=np.random.default_rng(0),
            inputs=list(inputs),
            params={},
        )

    a, b = melody_json(0), melody_json(5)
    out = fam.generate(req("sample", 32)).sequences
    assert len(out) == 32 and all(s.total_time == 4.0 for s in out), "big/small model must sample 2 bars"
    results = {
        "sample n=1": timed(lambda: fam.generate(req("sample", 1)), reps),
        "sample n=32": timed(lambda: fam.generate(req("sample", 32)), reps),
        "encode": timed(lambda: fam.generate(req("encode", 1, [a])), reps),
        "interpolate": timed(lambda: fam.generate(req("interpolate", N_INTERP, [a, b])), reps),
    }
    return {
        "ms": results,
        "load_s": load_s,
        "reader": reader,
        "blas": blas_core(),
        "z_size": fam.engine.z_size,
        "n1_floor_ms": 1000.0 * product_floor(decoder_products(fam.engine), 32, reps),
    }


def blas_core():
    """NumPy's BLAS and the kernels it runs (OpenBLAS: its core type, e.g. Haswell or SkylakeX)."""
    from threadpoolctl import threadpool_info

    info = next((i for i in threadpool_info() if i.get("user_api") == "blas"), {})
    return f"{info.get('internal_api', '?')} {info.get('architecture', '')}".strip()


def decoder_products(engine):
    """The matrices one one-z decoder step multiplies a vector with: layer 0's recurrent rows, the other
    layers' [x; h; bias] kernels and the output projection (with its bias row)."""
    import numpy as np

    mats = [lay.w_h if k == 0 else lay.kernel for k, lay in enumerate(engine.layers)]
    return mats + [np.concatenate([engine.out_k, engine.out_b[None]])]


# --- Magenta's side (runs in .venv-ref) ----------------------------------------------------------


def magenta_worker(size, ckpt, reps):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import note_seq
    import tensorflow.compat.v1 as tf
    from google.protobuf import json_format
    from magenta.models.music_vae import TrainedModel, configs

    tf.logging.set_verbosity(tf.logging.ERROR)
    config = configs.CONFIG_MAP[SIZES[size]]
    t0 = time.perf_counter()
    models = {bs: TrainedModel(config, batch_size=bs, checkpoint_dir_or_path=ckpt) for bs in (1, 32, N_INTERP)}
    load_s = time.perf_counter() - t0
    a = json_format.ParseDict(melody_json(0), note_seq.NoteSequence())
    b = json_format.ParseDict(melody_json(5), note_seq.NoteSequence())
    results = {
        "sample n=1": timed(lambda: models[1].sample(n=1, length=32, temperature=0.5), reps),
        "sample n=32": timed(lambda: models[32].sample(n=32, length=32, temperature=0.5), reps),
        "encode": timed(lambda: models[1].encode([a]), reps),
        "interpolate": timed(
            lambda: models[N_INTERP].interpolate(a, b, num_steps=N_INTERP, length=32, temperature=0.5), reps
        ),
    }
    return {"ms": results, "load_s": load_s}


def best_of(results):
    """Per op, the best round's median (rounds alternate between the two sides)."""
    best = dict(results[0])
    best["ms"] = {op: min(r["ms"][op] for r in results) for op in OPS}
    best["load_s"] = min(r["load_s"] for r in results)
    if "n1_floor_ms" in results[0]:
        best["n1_floor_ms"] = min(r["n1_floor_ms"] for r in results)
    return best


def run_magenta(size, ckpt, reps, threads):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", **thread_env(threads))
    cmd = [
        os.path.join(ROOT, ".venv-ref", "bin", "python"),
        os.path.abspath(__file__),
        "--worker",
        size,
        "--ckpt",
        ckpt,
        "--reps",
        str(reps),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"magenta worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 20 small, 3 big)")
    ap.add_argument(
        "--threads", type=int, default=1, help="BLAS / TF intra-op threads for both sides; 0 = library defaults"
    )
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per side; the best round counts")
    ap.add_argument(
        "--blas-core",
        help="OPENBLAS_CORETYPE for our side (e.g. SkylakeX: the AVX-512 kernels; the environment's value otherwise)",
    )
    ap.add_argument("--worker", choices=list(SIZES), help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(magenta_worker(args.worker, args.ckpt, args.reps)))
        return
    os.environ.update(thread_env(args.threads))  # before NumPy is imported
    if args.blas_core:
        os.environ["OPENBLAS_CORETYPE"] = args.blas_core
    rows, report = [], {"threads": args.threads, "blas": None, "sizes": {}}
    for size in args.sizes:
        ckpt = os.path.join(OUT, SIZES[size], "model.ckpt")
        if not os.path.exists(ckpt + ".index"):
            print(
                "making the bench checkpoints with magenta (reference/musicvae_reference.py --big) ...",
                file=sys.stderr,
                flush=True,
            )
            subprocess.run(
                [
                    os.path.join(ROOT, ".venv-ref", "bin", "python"),
                    os.path.join(ROOT, "reference", "musicvae_reference.py"),
                    "--big",
                ],
                env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"),
                check=True,
                capture_output=True,
            )
        reps = args.reps or (20 if size == "small" else 3)
        rounds = {"ours": [], "magenta": []}
        for r in range(args.rounds):  # alternate sides so a busy spell on the machine hits both
            print(f"[{size}] round {r + 1}: ours ...", file=sys.stderr, flush=True)
            rounds["ours"].append(ours(size, ckpt, reps))
            print(f"[{size}] round {r + 1}: magenta ...", file=sys.stderr, flush=True)
            rounds["magenta"].append(run_magenta(size, ckpt, reps, args.threads))
        us, them = (best_of(rounds[k]) for k in ("ours", "magenta"))
        report["sizes"][size] = {"ours": us, "magenta": them, "reps": reps, "rounds": rounds}
        for op in OPS:
            rows.append((size, op, us["ms"][op], them["ms"][op], them["ms"][op] / us["ms"][op]))
        rows.append((size, "load (s)", us["load_s"], them["load_s"], them["load_s"] / us["load_s"]))
        rows.append(
            (
                size,
                "n=1 weight-product floor (ceiling)",
                us["n1_floor_ms"],
                them["ms"]["sample n=1"],
                them["ms"]["sample n=1"] / us["n1_floor_ms"],
            )
        )
    print(
        f"\nMusicVAE vs Magenta 2.1.4 TrainedModel ({args.threads} thread(s); ms = median of {args.reps or '20/3'} "
        f"runs, best of {args.rounds} alternating rounds; speed-up = magenta / ours; our BLAS: {blas_core()})"
    )
    print("| dims | op | ours | magenta | speed-up |\n|---|---|---:|---:|---:|")
    for size, op, a, b, r in rows:
        print(f"| {SIZES[size]} | {op} | {a:.2f} | {b:.2f} | {r:.1f}x |")
    print(
        "(floor: the n=1 decoder's weight products alone, 32 steps; its speed-up is the ceiling any float32 "
        "engine that reads each weight once per step could reach against Magenta's sample n=1)"
    )
    report["blas"] = blas_core()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "musicvae_bench.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
