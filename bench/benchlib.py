"""What the side-by-side benches share: thread settings for both sides and the weight-product floor.

NumPy is imported only inside the functions, so a bench can set the thread variables first.
"""

import statistics
import time


def timed(fn, reps):
    """Median milliseconds of ``reps`` calls of ``fn`` after one warm-up call (TF builds its kernels on
    the first run; NumPy touches its weights)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def thread_env(threads):
    """Thread settings for both sides; 0 leaves the libraries at their defaults (every core)."""
    if not threads:
        return {}
    n = str(threads)
    return {
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
    }


def product_floor(mats, steps, reps=20):
    """Median seconds that ``steps`` steps spend multiplying a vector by each matrix in ``mats`` and
    doing nothing else: a float32 engine that reads every weight once per step cannot beat this here."""
    import numpy as np

    vecs = [np.ones(m.shape[0], np.float32) for m in mats]
    times = []
    for _ in range(reps + 1):  # the first round warms the caches and is dropped
        t = time.perf_counter()
        for _ in range(steps):
            for v, m in zip(vecs, mats):
                np.dot(v, m)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def pss_kib(pid):
    """Proportional set size of one process in KiB (``/proc/<pid>/smaps_rollup``): its private pages plus
    its share of every page it shares, so that the PSS of a group of processes adds up to what they use."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss line for process {pid}")


def process_tree(pid):
    """``pid`` and its children (a gunicorn master and its workers)."""
    import pathlib

    kids = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        kids += [int(c) for c in children]
    return [pid, *kids]


def tree_pss_kib(pid):
    """Total PSS of a process and its children, in KiB."""
    return sum(pss_kib(p) for p in process_tree(pid))
