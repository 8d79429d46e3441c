"""Partial results while a generation runs, for streaming clients (Server-Sent Events, the live socket).

A family reports music as soon as it is decided: :func:`notes` for notes an RNN has just committed,
:func:`bar` for a bar a MusicVAE decoder has finished. Both cost one context-variable lookup when no
client listens, so families call them unconditionally. The service opens :func:`listen` around a
streamed generation; the listener receives ``(kind, data)`` with every note as protobuf JSON.

A listener may stop the work by raising :class:`~magenta_api.errors.GenerationCancelled` (the client
has gone). :func:`cancel_when` does the same from another thread: the engines' step loops call
:func:`magenta_api.deadline.check`, which calls :func:`check`, so a generation stops at its next step
even in a family that reports nothing.
"""

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from google.protobuf import json_format

from .errors import GenerationCancelled

Listener = Callable[[str, dict], None]
_listener: contextvars.ContextVar = contextvars.ContextVar("magenta_api_progress", default=None)
_cancelled: contextvars.ContextVar = contextvars.ContextVar("magenta_api_cancelled", default=None)


def listening() -> bool:
    """Whether anyone receives progress (a family may skip building partial notes otherwise)."""
    return _listener.get() is not None


@contextmanager
def listen(listener: Listener) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextmanager
def cancel_when(event: threading.Event) -> Iterator[None]:
    """Stop the generation in this context at its next step once ``event`` is set."""
    token = _cancelled.set(event)
    try:
        yield
    finally:
        _cancelled.reset(token)


def check() -> None:
    event = _cancelled.get()
    if event is not None and event.is_set():
        raise GenerationCancelled("the client went away; the generation was stopped", {})


def _note_json(note) -> dict:
    if isinstance(note, dict):
        return note
    return json_format.MessageToDict(note, preserving_proto_field_name=False)


def emit(kind: str, **data) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(kind, data)


def notes(output: int, new_notes: Iterable, step: int | None = None) -> None:
    """Notes of output ``output`` that are now decided (``step``: the last step decided, if known)."""
    if _listener.get() is None:
        return
    emit("notes", output=output, step=step, notes=[_note_json(n) for n in new_notes])


def bar(output: int, index: int, bar_notes: Iterable) -> None:
    """Bar ``index`` of output ``output`` is finished, with its notes."""
    if _listener.get() is None:
        return
    emit("bar", output=output, bar=index, notes=[_note_json(n) for n in bar_notes])
