"""MelodyRNN / DrumsRNN: our NumPy family vs Magenta 2.1.4's sequence generator on the same .mag bundle.

For each config (random weights at the published layer sizes: basic_rnn 2x128, attention_rnn 2x128 with
attention 40, drum_kit_rnn 3x256 with attention 32), magenta's own code writes the bundle and times its
sequence generator loaded from it (subprocess in .venv-ref, bench/melody_rnn_magenta.py); this process
reads the same bundle with the store's .mag reader and times ``MelodyRnnFamily.generate``; the two sides' runs are
interleaved one by one, so machine load hits both alike. Cases: a
4-bar (64-step) continuation of a 1-bar NoteSequence primer, n=1 and n=8 (magenta: 8 generate calls,
as melody_rnn_generate does for num_outputs; ours: one batch), and beam search (beam 4, branch 2;
magenta on a batch-8 bundle of the same weights); also n=1 against a batch-128 bundle, the batch size the
configs' default hparams give a bundle saved without overriding it. Both sides get the same thread budget.

    PYTHONPATH=core:plugins .venv/bin/python bench/bench_melody_rnn.py [--threads 1] [--reps 20]
        [--configs basic_rnn,attention_rnn,drum_kit_rnn]

``--threads 0`` leaves both sides at their libraries' defaults (every core), as the service and
magenta run out of the box.

Results are printed as a table and written to bench/out/melody_rnn_bench.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import product_floor, thread_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
CASES = (
    ("n1", "continue 4 bars, n=1"),
    ("n8", "continue 4 bars, n=8"),
    ("beam_4x2", "beam 4 x branch 2, n=1"),
    ("n1_b128", "n=1, magenta on a batch-128 bundle"),
)


def magenta_server(config, threads):
    """Magenta's generator in a .venv-ref subprocess that times one run per request."""
    env = {**os.environ, **thread_env(threads), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    py = os.path.join(ROOT, ".venv-ref", "bin", "python")
    proc = subprocess.Popen(
        [py, os.path.join(ROOT, "bench", "melody_rnn_magenta.py"), os.path.join(OUT, "melody_rnn"), config, "--serve"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    info = json.loads(proc.stdout.readline())

    def run(case):
        proc.stdin.write(case + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())[case]

    return proc, info, run


def our_family(mag, primer, length):
    import numpy as np

    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import GenerateRequest, ModelSpec
    from magenta_api.store.readers.mag import read_mag
    from magenta_api_melody_rnn import MelodyRnnFamily

    variables, meta = read_mag(mag)
    fam = MelodyRnnFamily(ModelSpec(id="bench", family="melody_rnn"), Checkpoint(variables, "mag", meta))
    params = {"n1": (1, {}), "n8": (8, {}), "beam_4x2": (1, {"beam_size": 4, "branch_factor": 2}), "n1_b128": (1, {})}

    def run(case):
        n, extra = params[case]
        req = GenerateRequest(
            mode="continue",
            num_outputs=n,
            temperature=1.0,
            length=length,
            qpm=120.0,
            seed=0,
            rng=np.random.default_rng(0),
            primer=primer,
            params=extra,
        )
        t = time.perf_counter()
        out = fam.generate(req)
        elapsed = time.perf_counter() - t
        assert len(out.sequences) == n and len(out.extra["events"][0]) == length
        return elapsed

    for case in params:
        run(case)  # warm-up
    return run, fam


def step_products(model):
    """The weight matrices one n=1 step (``SingleRow``) multiplies a vector with, from the model's public
    attributes; the one-hot / lookback input part is row lookups and left out."""
    import numpy as np

    wrapper = model.input_map()[0] == "wrapper"  # layer 0 reads the wrapper's output with its own rows
    mats = [lay.kernel if k > 0 or wrapper else lay.w_h for k, lay in enumerate(model.layers)]
    att = model.attention
    if att is not None:
        mats.append(att.in_a if model.composed is None else model.composed.attn_rows)
        # one wrapped input-less layer: the query [c | h | 1] reads the bias as a row; else a separate add
        one = model.wrapped == 1 and not wrapper
        mats.append(np.vstack([att.query_kernel, att.query_bias]) if one else att.query_kernel)
        mats += [np.vstack([att.out_h, att.out_bias]), att.out_a, att.attn_w]
    return mats + [model.fc_wb]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="BLAS / TF threads on each side; 0 = library defaults")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--configs", default="basic_rnn,attention_rnn,drum_kit_rnn")
    args = ap.parse_args(argv)
    os.environ.update(thread_env(args.threads))
    sys.path[:0] = [os.path.join(ROOT, "core"), os.path.join(ROOT, "plugins")]
    os.makedirs(OUT, exist_ok=True)
    rows, results, floors = [], {}, []
    for config in args.configs.split(","):
        proc, info, magenta = magenta_server(config, args.threads)
        ours, fam = our_family(info["bundle"], info["primer_sequence"], info["length"])
        results[config] = {}
        for key, label in CASES:
            reps = args.reps if key in ("n1", "beam_4x2") else max(3, args.reps // 3)
            m_times, u_times = [], []
            for _ in range(reps):  # interleaved, so both sides see the same machine load
                m_times.append(magenta(key))
                u_times.append(ours(key))
            m_med, u_med = statistics.median(m_times), statistics.median(u_times)
            # each pair ran back to back, so its ratio is the least disturbed by the machine's slow spells
            paired = statistics.median(m / u for m, u in zip(m_times, u_times))
            results[config][key] = {
                "magenta": {"median": m_med, "min": min(m_times)},
                "ours": {"median": u_med, "min": min(u_times)},
                "paired_ratio": paired,
            }
            rows.append((config, label, m_med * 1e3, u_med * 1e3, m_med / u_med, min(m_times) / min(u_times), paired))
        proc.stdin.close()
        proc.wait()
        mats = step_products(fam.model)
        floor, nbytes = product_floor(mats, info["length"] - 1), sum(m.nbytes for m in mats)
        m_n1 = results[config]["n1"]["magenta"]["median"]
        results[config]["n1_floor"] = {"seconds": floor, "bytes_per_step": nbytes, "ceiling": m_n1 / floor}
        floors.append((config, nbytes / 1e6, floor * 1e3, m_n1 / floor))
    threads = args.threads or f"library defaults ({os.cpu_count()} cores)"
    print(
        f"threads={threads}; medians in ms; speed-up = magenta / ours (of medians, of minimums, and the median "
        "of the back-to-back pairs' ratios)"
    )
    print("| config | case | magenta ms | ours ms | speed-up (median) | speed-up (min) | speed-up (paired) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for config, label, m, u, r, rmin, paired in rows:
        print(f"| {config} | {label} | {m:.1f} | {u:.2f} | {r:.1f}x | {rmin:.1f}x | {paired:.1f}x |")
    print(
        "\nn=1 weight-product floor: the products of each step alone (no LSTM math, no sampling); "
        "ceiling = magenta's n=1 median / floor, the most any float32 engine reading each weight once per "
        "step could reach here"
    )
    print("| config | MB per step | floor ms | ceiling |\n|---|---:|---:|---:|")
    for config, mb, ms, ceiling in floors:
        print(f"| {config} | {mb:.2f} | {ms:.2f} | {ceiling:.1f}x |")
    with open(os.path.join(OUT, "melody_rnn_bench.json"), "w") as f:
        json.dump({"threads": args.threads, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
