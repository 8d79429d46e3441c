"""PerformanceRNN and PolyphonyRNN: our NumPy families vs Magenta 2.1.4's sequence generators on the same
.mag bundles (random weights at the published sizes, written by magenta's own code in
bench/events_rnn_magenta.py, which runs in .venv-ref and times magenta's side).

Cases, n=1, temperature 1, the same seed on both sides (so both produce the same events and run the same
RNN steps): ``performance_with_dynamics`` from silence to 3000 steps (30 s; 1800 RNN steps at the default
15 notes per second) and ``polyphony_rnn`` on a one-bar primer to 256 steps. Runs are interleaved one by
one; the speed-up is the median of the back-to-back pairs' ratios. The weight-product floor is the
products of one n=1 step (``bench_melody_rnn.step_products``) repeated for the sampled RNN steps of the
run, timed right after each pair; ours / floor and the ceiling (magenta / floor, the most any float32
engine reading each weight once per step could gain here) are the medians of each run's ratios.

    PYTHONPATH=core:plugins .venv/bin/python bench/bench_events_rnn.py [--threads 1] [--reps 3]

Results are printed as a table and written to bench/out/events_rnn_bench.json.
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


def magenta_server(threads):
    env = {**os.environ, **thread_env(threads), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    py = os.path.join(ROOT, ".venv-ref", "bin", "python")
    script = os.path.join(ROOT, "bench", "events_rnn_magenta.py")
    proc = subprocess.Popen(
        [py, script, os.path.join(OUT, "events_rnn")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    info = json.loads(proc.stdout.readline())

    def run(case, seed):
        proc.stdin.write(f"{case} {seed}\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    return proc, info, run


def our_families(info):
    import numpy as np

    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import GenerateRequest, ModelSpec
    from magenta_api.store.readers.mag import read_mag
    from magenta_api_performance_rnn import PerformanceRnnFamily
    from magenta_api_polyphony_rnn import PolyphonyRnnFamily

    fams = {}
    for case, cls, family in (
        ("performance", PerformanceRnnFamily, "performance_rnn"),
        ("polyphony", PolyphonyRnnFamily, "polyphony_rnn"),
    ):
        variables, meta = read_mag(info[case])
        fams[case] = cls(ModelSpec(id=case, family=family), Checkpoint(variables, "mag", meta))

    def run(case, seed):
        perf = case == "performance"
        req = GenerateRequest(
            mode="sample" if perf else "continue",
            num_outputs=1,
            temperature=1.0,
            length=info["performance_steps"] if perf else info["polyphony_steps"],
            qpm=120.0,
            seed=seed,
            rng=np.random.RandomState(seed),
            primer=None if perf else info["poly_primer"],
            params={},
        )
        t = time.perf_counter()
        out = fams[case].generate(req)
        elapsed = time.perf_counter() - t
        return {"seconds": elapsed, "notes": len(out.sequences[0].notes), "rnn_steps": out.extra["rnn_steps"]}

    return run, fams


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="BLAS / TF threads on each side; 0 = library defaults")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.update(thread_env(args.threads))
    sys.path[:0] = [os.path.join(ROOT, "core"), os.path.join(ROOT, "plugins"), os.path.join(ROOT, "bench")]
    from bench_melody_rnn import step_products

    os.makedirs(OUT, exist_ok=True)
    proc, info, magenta = magenta_server(args.threads)
    ours, fams = our_families(info)
    results, rows = {}, []
    for case in ("performance", "polyphony"):
        ours(case, 0)  # warm-up
        magenta(case, 0)
        mats = step_products(fams[case].model)
        m_times, u_times, f_times, run_steps = [], [], [], []
        for rep in range(args.reps):  # each run's floor is timed right after it, so the two see one machine
            m = magenta(case, rep + 1)
            u = ours(case, rep + 1)
            assert m["notes"] == u["notes"], (case, m, u)  # the same events: the same work
            m_times.append(m["seconds"])
            u_times.append(u["seconds"])
            # the run's sampled steps (primer passes left out: the floor errs low)
            run_steps.append(u["rnn_steps"])
            f_times.append(product_floor(mats, u["rnn_steps"], reps=1))
        steps = int(statistics.median(run_steps))
        paired = statistics.median(a / b for a, b in zip(m_times, u_times))
        of = statistics.median(a / b for a, b in zip(u_times, f_times))
        ceiling = statistics.median(a / b for a, b in zip(m_times, f_times))
        m_med, u_med, floor = statistics.median(m_times), statistics.median(u_times), statistics.median(f_times)
        results[case] = {
            "magenta": m_med,
            "ours": u_med,
            "paired_ratio": paired,
            "floor": floor,
            "ours_over_floor": of,
            "ceiling": ceiling,
            "mb_per_step": sum(x.nbytes for x in mats) / 1e6,
            "rnn_steps": steps,
        }
        rows.append((case, m_med, u_med, paired, floor, of, ceiling, sum(x.nbytes for x in mats) / 1e6, steps))
    proc.stdin.close()
    proc.wait()
    threads = args.threads or f"library defaults ({os.cpu_count()} cores)"
    print(f"threads={threads}; medians in s; speed-up, ours / floor and ceiling: medians of each run's own ratios")
    print("| model | magenta s | ours s | speed-up | floor s | ours / floor | ceiling | MB per step | RNN steps |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, m, u, r, f, of, ceiling, mb, steps in rows:
        print(f"| {case} | {m:.2f} | {u:.2f} | {r:.1f}x | {f:.2f} | {of:.2f}x | {ceiling:.1f}x | {mb:.1f} | {steps} |")
    print(
        "goal: speed-up >= 10x and ours / floor <= 1.3x; "
        + "; ".join(f"{case} {'met' if r >= 10 and of <= 1.3 else 'not met'}" for case, _, _, r, _, of, *_ in rows)
    )
    with open(os.path.join(OUT, "events_rnn_bench.json"), "w") as fh:
        json.dump({"threads": args.threads, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
