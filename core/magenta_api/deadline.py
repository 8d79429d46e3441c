"""A time limit for one generation, which the engines' step loops check.

The service opens :func:`limit` around ``Family.generate``; an engine calls :func:`check` once per step.
The limit lives in a context variable, so engines and families need no extra argument, and a check
outside any limit costs one lookup. Exceeding it raises :class:`~magenta_api.errors.TimeLimitExceeded`,
which stops the work: the worker is free again instead of finishing a result nobody waits for.
"""

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from . import progress
from .errors import TimeLimitExceeded

_deadline: contextvars.ContextVar = contextvars.ContextVar("magenta_api_deadline", default=None)


@contextmanager
def limit(seconds: float | None, model_id: str = "") -> Iterator[None]:
    """Run the block under a limit of ``seconds`` (None: no limit)."""
    if seconds is None:
        yield
        return
    token = _deadline.set((time.monotonic() + seconds, seconds, model_id))
    try:
        yield
    finally:
        _deadline.reset(token)


def check() -> None:
    """Raise :class:`TimeLimitExceeded` if the current generation is past its limit (and
    :class:`~magenta_api.errors.GenerationCancelled` if its streaming client has gone)."""
    progress.check()
    current = _deadline.get()
    if current is not None and time.monotonic() > current[0]:
        _, seconds, model_id = current
        whose = f"{model_id}'s" if model_id else "the"
        raise TimeLimitExceeded(
            f"generation took longer than {whose} limit of {seconds:g} s; "
            "ask for fewer outputs, fewer steps or a smaller beam",
            {"limit_seconds": seconds, "model": model_id},
        )
