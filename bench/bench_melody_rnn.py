"""MelodyRNN / DrumsRNN: our NumPy family vs Magenta 2.1.4's sequence generator on the same .mag bundle.

For each config (random weights at the published layer sizes: basic_rnn 2x128, attention_rnn 2x128 with
attention 40, drum_kit_rnn 3x256 with attention 32), magenta's own code writes the bundle and times its
sequence generator loaded from it (subprocess in .venv-ref, bench/melody_rnn_magenta.py); this process
reads the same bundle with the store's .mag reader and times ``MelodyRnnFamily.generate``. Cases: a
4-bar (64-step) continuation of a 1-bar NoteSequence primer, n=1 and n=8 (magenta: 8 generate calls,
as melody_rnn_generate does for num_outputs; ours: one batch), and beam search (beam 4, branch 2;
magenta on a batch-8 bundle of the same weights). Both sides get the same thread budget.

    PYTHONPATH=core:plugins .venv/bin/python bench/bench_melody_rnn.py [--threads 1] [--reps 20]
        [--configs basic_rnn,attention_rnn,drum_kit_rnn]

Results are printed as a table and written to bench/out/melody_rnn_bench.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
CASES = (("n1", "continue 4 bars, n=1"), ("n8", "continue 4 bars, n=8"), ("beam_4x2", "beam 4 x branch 2, n=1"))


def thread_env(threads):
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}


def magenta_side(config, threads, reps):
    env = {**os.environ, **thread_env(threads), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    py = os.path.join(ROOT, ".venv-ref", "bin", "python")
    out = subprocess.run([py, os.path.join(ROOT, "bench", "melody_rnn_magenta.py"), os.path.join(OUT, "melody_rnn"),
                          config, str(max(3, reps // 4))], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(mag, primer, length, reps):
    import numpy as np

    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import GenerateRequest, ModelSpec
    from magenta_api.store.readers.mag import read_bundle
    from magenta_api_melody_rnn import MelodyRnnFamily

    variables, meta = read_bundle(mag)
    fam = MelodyRnnFamily(ModelSpec(id="bench", family="melody_rnn"), Checkpoint(variables, "mag", meta))

    def request(n, **params):
        return GenerateRequest(mode="continue", num_outputs=n, temperature=1.0, length=length, qpm=120.0, seed=0,
                               rng=np.random.default_rng(0), primer=primer, params=params)

    def timed(n, **params):
        fam.generate(request(n, **params))  # warm-up
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            out = fam.generate(request(n, **params))
            times.append(time.perf_counter() - t)
        assert len(out.extra["events"][0]) == length
        return statistics.median(times)

    return {"n1": timed(1), "n8": timed(8), "beam_4x2": timed(1, beam_size=4, branch_factor=2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--configs", default="basic_rnn,attention_rnn,drum_kit_rnn")
    args = ap.parse_args(argv)
    os.environ.update(thread_env(args.threads))
    sys.path[:0] = [os.path.join(ROOT, "core"), os.path.join(ROOT, "plugins")]
    os.makedirs(OUT, exist_ok=True)
    rows, results = [], {}
    for config in args.configs.split(","):
        mag = magenta_side(config, args.threads, args.reps)
        us = ours(mag["bundle"], mag["primer_sequence"], mag["length"], args.reps)
        results[config] = {"magenta": {k: mag[k] for k, _ in CASES}, "ours": us}
        for key, label in CASES:
            rows.append((config, label, mag[key] * 1000, us[key] * 1000, mag[key] / us[key]))
    print(f"threads={args.threads}; medians in ms; ratio = magenta / ours")
    print(f"| config | case | magenta ms | ours ms | speed-up |\n|---|---|---:|---:|---:|")
    for config, label, m, u, r in rows:
        print(f"| {config} | {label} | {m:.1f} | {u:.2f} | {r:.1f}x |")
    with open(os.path.join(OUT, "melody_rnn_bench.json"), "w") as f:
        json.dump({"threads": args.threads, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
