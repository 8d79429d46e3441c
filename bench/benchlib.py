"""What the side-by-side benches share: thread settings for both sides and the weight-product floor.

NumPy is imported only inside the functions, so a bench can set the thread variables first.
"""

import statistics
import time


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
