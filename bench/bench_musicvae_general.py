"""MusicVAE beyond the flat 2-bar models: our NumPy family vs Magenta 2.1.4's TrainedModel on the same TF
checkpoint, in one run: hierdec-trio_16bar and groovae_2bar_humanize shapes (random weights at the real
dims, saved by magenta's own graph). Times sample n=1 and n=8, encode (one input) and interpolate (2
inputs, 3 outputs) at the API level, NoteSequences in and out on both sides, and prints the ratios and
the n=1 weight-product floor (also as the median ratio of back-to-back pairs of one n=1 sample and one
floor run). Magenta runs in a subprocess in .venv-ref with the same thread budget.

    PYTHONPATH=core:plugins .venv/bin/python bench/bench_musicvae_general.py [--threads 1] [--reps 3]

The checkpoints go to bench/out/<config>/ (made in .venv-ref on first use, ~0.8 GB for the trio). Results
are also written to bench/out/musicvae_general_bench.json.
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
CONFIGS = {"trio": "hierdec-trio_16bar", "groove": "groovae_2bar_humanize"}
FAMILY = {"trio": "musicvae", "groove": "groovae"}
STEPS = {"trio": 256, "groove": 32}
OPS = ("sample n=1", "sample n=8", "encode", "interpolate")
N_INTERP = 3


def trio_json(offset):
    """16 bars of melody (program 0), bass (program 33) and drums, as NoteSequence JSON."""
    step = 0.125
    notes = []
    for t in range(0, 256, 2):
        notes.append(
            {
                "pitch": 60 + offset + (t * 5) % 12,
                "velocity": 90,
                "startTime": t * step,
                "endTime": (t + 2) * step,
                "instrument": 0,
                "program": 0,
            }
        )
    for t in range(0, 256, 4):
        notes.append(
            {
                "pitch": 36 + (t // 4) % 12,
                "velocity": 90,
                "startTime": t * step,
                "endTime": (t + 3) * step,
                "instrument": 1,
                "program": 33,
            }
        )
    for t in range(0, 256, 2):
        notes.append(
            {
                "pitch": 36 if t % 8 == 0 else 42,
                "velocity": 90,
                "startTime": t * step,
                "endTime": (t + 1) * step,
                "instrument": 9,
                "isDrum": True,
            }
        )
    return _seq(notes, 32.0)


def groove_json(offset):
    """2 bars of quantized drums, as NoteSequence JSON."""
    step = 0.125
    notes = [
        {
            "pitch": [36, 42, 38, 42][(t + offset) % 4],
            "velocity": 80,
            "startTime": t * step,
            "endTime": (t + 1) * step,
            "instrument": 9,
            "isDrum": True,
        }
        for t in range(0, 32, 2)
    ]
    return _seq(notes, 4.0)


def _seq(notes, total):
    return {
        "ticksPerQuarter": 220,
        "tempos": [{"qpm": 120}],
        "timeSignatures": [{"numerator": 4, "denominator": 4}],
        "notes": notes,
        "totalTime": total,
    }


INPUTS = {"trio": trio_json, "groove": groove_json}


# --- our side ----------------------------------------------------------------------------------


def ours(kind, ckpt, reps):
    import numpy as np

    sys.path[:0] = [os.path.join(ROOT, "core"), os.path.join(ROOT, "plugins")]
    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import GenerateRequest, ModelSpec
    from magenta_api.store.readers.tf import read_tf
    from magenta_api_musicvae.family import MusicVAEFamily
    from magenta_api_musicvae.groove_family import GrooVAEFamily

    t0 = time.perf_counter()
    variables, meta = read_tf(ckpt)
    cls = MusicVAEFamily if kind == "trio" else GrooVAEFamily
    fam = cls(
        ModelSpec(id=CONFIGS[kind], family=FAMILY[kind], hparams={"config": CONFIGS[kind]}),
        Checkpoint(variables, "tf", meta, ""),
    )
    load_s = time.perf_counter() - t0

    def req(mode, n, inputs=()):
        return GenerateRequest(
            mode=mode,
            num_outputs=n,
            temperature=0.5,
            length=STEPS[kind],
            qpm=120.0,
            seed=0,
            rng=np.random.default_rng(0),
            inputs=list(inputs),
            params={},
        )

    a, b = INPUTS[kind](0), INPUTS[kind](1)
    results = {
        "sample n=1": timed(lambda: fam.generate(req("sample", 1)), reps),
        "sample n=8": timed(lambda: fam.generate(req("sample", 8)), reps),
        "encode": timed(lambda: fam.generate(req("encode", 1, [a])), reps),
        "interpolate": timed(lambda: fam.generate(req("interpolate", N_INTERP, [a, b])), reps),
    }
    return {
        "ms": results,
        "load_s": load_s,
        "n1_floor_ms": 1000.0 * floor(kind, fam, reps),
        "n1_over_floor": paired_floor_ratio(kind, fam, lambda: fam.generate(req("sample", 1)), reps),
    }


def paired_floor_ratio(kind, fam, sample_one, reps):
    """The median over ``reps`` pairs of (one n=1 sample) / (the floor timed right after it): on a shared
    machine each pair sees about the same load, so the ratio moves much less than the two medians."""
    import statistics

    sample_one()
    ratios = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sample_one()
        one = time.perf_counter() - t0
        ratios.append(one / floor(kind, fam, 1))
    return statistics.median(ratios)


def floor(kind, fam, reps):
    """The n=1 decode's weight products alone: per step, each core decoder's layer kernels and output
    projection (and the conductor's per segment, the same count of products spread over the steps)."""
    import numpy as np

    if kind == "trio":
        mats = []
        for core in fam.engine.cores:
            mats += [core.layers[0].w_h] + [lay.kernel for lay in core.layers[1:]] + [core.out_k]
        per_step = product_floor(mats, STEPS[kind], reps)
        conductor = [np.concatenate([c.w_x, c.w_h]) for c in fam.engine.conductor[0].lstm.cells]
        return per_step + product_floor(conductor, fam.engine.level_lengths[0], reps)
    core = fam.engine.core
    mats = [core.layers[0].w_h] + [lay.kernel for lay in core.layers[1:]] + [core.out_k]
    return product_floor(mats, STEPS[kind], reps)


# --- Magenta's side (runs in .venv-ref) ----------------------------------------------------------


def make_checkpoint(kind, out_dir, seed=7):
    """Random weights in the exact shapes of the config, saved as a TF checkpoint by magenta's graph."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import copy

    import numpy as np
    import tensorflow.compat.v1 as tf
    from magenta.models.music_vae import configs

    config = copy.deepcopy(configs.CONFIG_MAP[CONFIGS[kind]])
    config.hparams.batch_size = 1
    conv = config.data_converter
    os.makedirs(out_dir, exist_ok=True)
    with tf.Graph().as_default():
        model = config.model
        model.build(config.hparams, conv.output_depth, is_training=False)
        model.sample(
            1, max_length=STEPS[kind], z=tf.placeholder(tf.float32, [1, config.hparams.z_size]), temperature=1.0
        )
        model.encode(tf.placeholder(tf.float32, [1, STEPS[kind], conv.input_depth]), tf.placeholder(tf.int32, [1]))
        rng = np.random.default_rng(seed)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for v in tf.global_variables():
                shape = v.shape.as_list()
                if shape:
                    scale = 0.3 if len(shape) == 1 else 1.5 / np.sqrt(shape[0])
                    v.load(rng.normal(0, scale, shape).astype(np.float32), sess)
            tf.train.Saver().save(sess, os.path.join(out_dir, "model.ckpt"), write_meta_graph=False)


def magenta_worker(kind, ckpt, reps):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import note_seq
    import tensorflow.compat.v1 as tf
    from google.protobuf import json_format
    from magenta.models.music_vae import TrainedModel, configs

    tf.logging.set_verbosity(tf.logging.ERROR)
    config = configs.CONFIG_MAP[CONFIGS[kind]]
    t0 = time.perf_counter()
    models = {bs: TrainedModel(config, batch_size=bs, checkpoint_dir_or_path=ckpt) for bs in (1, 8, N_INTERP)}
    load_s = time.perf_counter() - t0
    a, b = (json_format.ParseDict(INPUTS[kind](k), note_seq.NoteSequence()) for k in (0, 1))
    L = STEPS[kind]
    results = {
        "sample n=1": timed(lambda: models[1].sample(n=1, length=L, temperature=0.5), reps),
        "sample n=8": timed(lambda: models[8].sample(n=8, length=L, temperature=0.5), reps),
        "encode": timed(lambda: models[1].encode([a]), reps),
        "interpolate": timed(
            lambda: models[N_INTERP].interpolate(a, b, num_steps=N_INTERP, length=L, temperature=0.5), reps
        ),
    }
    return {"ms": results, "load_s": load_s}


def run_ref(args, threads):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", **thread_env(threads))
    proc = subprocess.run(
        [os.path.join(ROOT, ".venv-ref", "bin", "python"), os.path.abspath(__file__), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"magenta worker failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3 trio, 10 groove)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS / TF intra-op threads for both sides; 0 = defaults")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds per side; the best round counts")
    ap.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    ap.add_argument("--make", choices=list(CONFIGS), help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_checkpoint(args.make, os.path.dirname(args.ckpt))
        return
    if args.worker:
        print(json.dumps(magenta_worker(args.worker, args.ckpt, args.reps)))
        return
    os.environ.update(thread_env(args.threads))
    rows, report = [], {"threads": args.threads, "kinds": {}}
    for kind in args.kinds:
        ckpt = os.path.join(OUT, CONFIGS[kind], "model.ckpt")
        if not os.path.exists(ckpt + ".index"):
            print(f"[{kind}] making the checkpoint with magenta ...", file=sys.stderr, flush=True)
            run_ref(["--make", kind, "--ckpt", ckpt], 0)
        reps = args.reps or (3 if kind == "trio" else 10)
        rounds = {"ours": [], "magenta": []}
        for r in range(args.rounds):
            print(f"[{kind}] round {r + 1}: ours ...", file=sys.stderr, flush=True)
            rounds["ours"].append(ours(kind, ckpt, reps))
            print(f"[{kind}] round {r + 1}: magenta ...", file=sys.stderr, flush=True)
            out = run_ref(["--worker", kind, "--ckpt", ckpt, "--reps", str(reps)], args.threads)
            rounds["magenta"].append(json.loads(out.strip().splitlines()[-1]))
        us = {op: min(x["ms"][op] for x in rounds["ours"]) for op in OPS}
        them = {op: min(x["ms"][op] for x in rounds["magenta"]) for op in OPS}
        fl = min(x["n1_floor_ms"] for x in rounds["ours"])
        paired = min(x["n1_over_floor"] for x in rounds["ours"])
        report["kinds"][kind] = {
            "ours": us,
            "magenta": them,
            "n1_floor_ms": fl,
            "n1_over_floor_paired": paired,
            "rounds": rounds,
            "reps": reps,
        }
        for op in OPS:
            rows.append((kind, op, us[op], them[op], them[op] / us[op]))
        rows.append((kind, "n=1 weight-product floor", fl, us["sample n=1"], us["sample n=1"] / fl))
        rows.append((kind, "n=1 / floor, paired", paired, 0.0, paired))
    print(
        f"\nMusicVAE (general) vs Magenta 2.1.4 TrainedModel ({args.threads} thread(s); ms, median; "
        "speed-up = magenta / ours; for the floor row: ours n=1 / floor)"
    )
    print("| shape | op | ours | magenta | ratio |\n|---|---|---:|---:|---:|")
    for kind, op, a, b, r in rows:
        if op.endswith("floor"):
            print(f"| {CONFIGS[kind]} | {op} | {a:.1f} | (ours n=1: {b:.1f}) | {r:.2f}x of floor |")
        elif op.endswith("paired"):
            pairs = report["kinds"][kind]["reps"]
            print(f"| {CONFIGS[kind]} | {op} (median of {pairs} back-to-back pairs) | | | {r:.2f}x of floor |")
        else:
            print(f"| {CONFIGS[kind]} | {op} | {a:.1f} | {b:.1f} | {r:.2f}x |")
    for kind, r in report["kinds"].items():
        slowest = min(OPS, key=lambda op: r["magenta"][op] / r["ours"][op])
        ratio = r["magenta"][slowest] / r["ours"][slowest]
        print(
            f"{CONFIGS[kind]}: slowest against Magenta {slowest} {ratio:.2f}x (goal >= 1), "
            f"n=1 {r['n1_over_floor_paired']:.2f}x its floor, paired (goal <= 1.3): "
            f"{'met' if ratio >= 1.0 and r['n1_over_floor_paired'] <= 1.3 else 'not met'}"
        )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "musicvae_general_bench.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
