"""stdlib logging with the request id on every line (``LOG_LEVEL`` sets the level)."""

import contextvars
import logging
import time
from contextlib import contextmanager

request_id_var = contextvars.ContextVar("request_id", default="-")

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served (or '-')."""

    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once per process; the entry points call it (CLI, ``magenta_api.wsgi``),
    never the app factory, so that embedding code and tests keep their own logging."""
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


# Called as ``observe(name, fields, seconds)`` after every stage: how the metrics see the stages
# (magenta_api.metrics adds its histogram here), without each stage naming them.
stage_observers: list = []


@contextmanager
def stage(logger: logging.Logger, name: str, **fields):
    """Logs one line per processing stage with its duration: ``stage=load model=x ms=12.3``."""
    start = time.perf_counter()
    extra: dict = {}
    try:
        yield extra
    finally:
        seconds = time.perf_counter() - start
        parts = " ".join(f"{k}={v}" for k, v in {**fields, **extra}.items())
        logger.info("stage=%s %s ms=%.1f", name, parts, seconds * 1000)
        for observe in stage_observers:
            observe(name, {**fields, **extra}, seconds)
