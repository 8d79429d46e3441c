"""gunicorn's settings for ``magenta-api serve`` (``gunicorn -c python:magenta_api.gunicorn_conf``).

* **One copy of the models per machine.** ``preload_app``: the master imports the app, loads every model
  whose checkpoint is on disk (``PRELOAD_MODELS``: ``ready``, the default; ``none``; or a comma list of
  ids), lets each family build what it would otherwise build on its first request (``Family.warm``) and
  freezes the garbage collector's objects; then it forks. The workers share those pages copy-on-write, so
  4 workers cost far less than 4 times one (bench/bench_serving.py measures the PSS).
* **Threads × BLAS threads fit the cores.** Workers run gthread (``THREADS`` per worker). With batching
  on, each model runs one batch at a time per worker, so the BLAS libraries get ``cores // workers``
  threads; with ``BATCHING=off`` every request thread computes, so they get ``cores // (workers ×
  threads)``, at least 1. A variable already set (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``...) wins.
* **Metrics of every worker.** ``PROMETHEUS_MULTIPROC_DIR`` is set (a fresh folder unless given) before
  anything imports prometheus_client and emptied when this module is read; an exited worker's live gauges are dropped.
  ``METRICS_PORT`` serves them from the master on their own port.

This module is read before the app is imported: it must not import prometheus_client at the top (the
package's ``__init__`` imports NumPy, so the BLAS pools are sized with threadpoolctl in each process).
"""

import gc
import logging
import os
import shutil
import tempfile

from .config import blas_threads

logger = logging.getLogger("magenta_api.gunicorn")

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _off(name: str) -> bool:
    return os.environ.get(name, "on").strip().lower() in {"off", "0", "false", "no"}


workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("THREADS", "16"))
worker_class = "magenta_api.gunicorn_worker.JsonErrorsWorker"  # gthread; its own 400/414/431 answers in JSON
preload_app = not _off("PRELOAD")
wsgi_app = "magenta_api.wsgi:app"

BLAS_THREADS = blas_threads(_cores(), workers, threads, not _off("BATCHING"))
_blas_given = any(os.environ.get(name) for name in BLAS_VARIABLES)  # the operator's setting wins
for _name in BLAS_VARIABLES:
    os.environ.setdefault(_name, str(BLAS_THREADS))


def limit_blas() -> None:
    """Set this process's BLAS thread pools (threadpoolctl works after NumPy has loaded its BLAS, which the
    environment variables above do not)."""
    if not _blas_given:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=BLAS_THREADS)


_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="magenta-api-metrics-")


def clear_metrics(folder: str) -> None:
    """Values left in a given folder by an earlier run would be counted again: start from none (here, before
    the app's import creates this run's files)."""
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))


clear_metrics(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def when_ready(server):
    """In the master, after the app is imported and before the workers are forked."""
    limit_blas()
    if server.cfg.preload_app:
        app = server.app.wsgi()
        preload(app.extensions["magenta_api"], os.environ.get("PRELOAD_MODELS", "ready"))
        gc.freeze()  # the objects made so far stay out of the collector's passes, which would dirty their pages
    port = os.environ.get("METRICS_PORT")
    if port:
        from . import metrics

        metrics.serve_on_port(int(port), os.environ.get("METRICS_HOST", "0.0.0.0"))
        logger.info("metrics on port %s", port)


def preload(service, which: str) -> list:
    """Load (and warm) the models ``which`` names in this process: ``ready`` (every model whose checkpoint
    is on disk), ``none``, or a comma list of ids. A model that fails is logged and left to load on use."""
    if which.strip().lower() == "none":
        return []
    if which.strip().lower() == "ready":
        ids = [m["id"] for m in service.models() if m["available"] and m["state"] == "ready"]
    else:
        ids = [i.strip() for i in which.split(",") if i.strip()]
    loaded = []
    for model_id in ids:
        try:
            spec = service.registry.spec(model_id)
            model = service.loader.load(spec, service.registry.family(spec).cls)
            model.warm()
        except Exception:
            logger.exception("preloading %s failed; it will load on its first request", model_id)
            continue
        loaded.append(model_id)
    logger.info("preloaded %d model(s) before forking: %s", len(loaded), ", ".join(loaded) or "-")
    return loaded


def post_fork(server, worker):
    limit_blas()


def child_exit(server, worker):
    from . import metrics

    metrics.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
