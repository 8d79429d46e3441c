"""Prometheus metrics of the service, with prometheus_client.

Under gunicorn every worker is its own process, so the counters live in prometheus_client's
multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` names a folder where each process writes its values
(:mod:`magenta_api.gunicorn_conf` sets it before anything imports prometheus_client, empties it when
the server starts, and marks each exited worker dead), and :func:`render` sums the files of every
process. Without that variable (the Flask dev server, tests, the CLI) the values are this process's own.

Names follow Prometheus' conventions: a ``magenta_api_`` prefix, ``_total`` on counters, base units
(``_seconds``, ``_bytes``). The service and the web layer record through the small functions below, so
no other module needs to know prometheus_client.
"""

import contextvars
import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from . import logs

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):  # prometheus_client writes there from the first metric on
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets from a cache hit (about a millisecond) to a big model's batch (seconds).
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128)

REQUESTS = Counter(
    "magenta_api_requests",  # exposed as magenta_api_requests_total
    "Generation requests answered, by model, mode and HTTP status",
    ["model", "mode", "status"],
)
REQUEST_SECONDS = Histogram(
    "magenta_api_request_seconds",
    "Time to answer a generation request, by model and mode",
    ["model", "mode"],
    buckets=SECONDS,
)
STAGE_SECONDS = Histogram(
    "magenta_api_stage_seconds",
    "Time spent in each stage of a generation request (validate, cache, queue, load, generate, render)",
    ["stage", "model"],
    buckets=SECONDS,
)
BATCH_SIZE = Histogram(
    "magenta_api_batch_size",
    "Requests that ran together in one forward pass, by model",
    ["model"],
    buckets=BATCH,
)
BATCH_ROWS = Histogram(
    "magenta_api_batch_rows",
    "Rows (outputs) of each forward pass, by model",
    ["model"],
    buckets=BATCH,
)
QUEUE_DEPTH = Gauge(
    "magenta_api_queue_depth",
    "Requests waiting in a model's queue (summed over the live workers)",
    ["model"],
    multiprocess_mode="livesum",
)
OVERLOADED = Counter(
    "magenta_api_overloaded",
    "Requests refused with 503 overloaded (queue full or queue wait past the deadline), by model and reason",
    ["model", "reason"],
)
CACHE_HITS = Counter("magenta_api_cache_hits", "Result cache lookups that found the response")
CACHE_MISSES = Counter("magenta_api_cache_misses", "Result cache lookups that found nothing")
CACHE_ERRORS = Counter("magenta_api_cache_errors", "Result cache operations that failed, by operation", ["op"])
DOWNLOADS = Counter("magenta_api_downloads", "Checkpoint file downloads, by result (ok, failed)", ["result"])
DOWNLOAD_BYTES = Counter("magenta_api_download_bytes", "Bytes of checkpoint files downloaded and verified")
MODEL_LOAD_SECONDS = Histogram(
    "magenta_api_model_load_seconds",
    "Time to make a model ready in a process (open its checkpoint, build the family)",
    ["model"],
    buckets=SECONDS,
)
MODELS_LOADED = Gauge(
    "magenta_api_models_loaded",
    "1 for each model loaded in at least one live process",
    ["model"],
    multiprocess_mode="livemax",
)

# The model and mode of the request being served, once the service knows them: the web layer's
# request counter reads them after the response is made (the service never sees HTTP statuses).
_labels: contextvars.ContextVar = contextvars.ContextVar("magenta_api_metric_labels", default=None)


def begin_request() -> contextvars.Token:
    """Open the label slot of one request (the web layer, before the route runs)."""
    return _labels.set({})


def end_request(token: contextvars.Token) -> None:
    _labels.reset(token)


def note_request(**labels) -> None:
    """The service says which model and mode the current request is for."""
    current = _labels.get()
    if current is not None:
        current.update(labels)


def request_labels() -> dict:
    return dict(_labels.get() or {})


def count_request(status: int, seconds: float) -> None:
    """One answered generation request (the web layer, with the HTTP status)."""
    labels = request_labels()
    model, mode = labels.get("model", "-"), labels.get("mode", "-")
    REQUESTS.labels(model, mode, str(status)).inc()
    REQUEST_SECONDS.labels(model, mode).observe(seconds)


def observe_stage(name: str, fields: dict, seconds: float) -> None:
    """A :func:`magenta_api.logs.stage` observer: every logged stage also lands in a histogram."""
    model = fields.get("model") or request_labels().get("model", "-")
    STAGE_SECONDS.labels(name, str(model)).observe(seconds)


def cache_lookup(hit: bool) -> None:
    (CACHE_HITS if hit else CACHE_MISSES).inc()


def cache_error(op: str) -> None:
    CACHE_ERRORS.labels(op).inc()


def model_loaded(model: str, seconds: float) -> None:
    MODEL_LOAD_SECONDS.labels(model).observe(seconds)
    MODELS_LOADED.labels(model).set(1)


def counts_download(fn):
    """Decorates the store's one-file download, ``(…) -> (sha256, size)``: downloads by result, bytes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            sha256, size = fn(*args, **kwargs)
        except Exception:
            DOWNLOADS.labels("failed").inc()
            raise
        DOWNLOADS.labels("ok").inc()
        DOWNLOAD_BYTES.inc(size or 0)
        return sha256, size

    return wrapper


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def registry():
    """What to expose: the sum over every process's files in multiprocess mode, else this process."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    collected = CollectorRegistry()
    _multiprocess.MultiProcessCollector(collected, path=path)
    return collected


def render() -> bytes:
    """The text exposition format of every metric."""
    return generate_latest(registry())


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's ``child_exit``); its counters keep counting."""
    if multiprocess_dir() is not None:
        _multiprocess.mark_process_dead(pid)


def serve_on_port(port: int, host: str = "0.0.0.0") -> None:
    """Expose the metrics on their own port (``METRICS_PORT``), from a thread of this process."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=registry())


logs.stage_observers.append(observe_stage)
