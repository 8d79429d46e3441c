"""Dynamic batching: concurrent requests to one model that can share a forward pass run as one batch.

Each model has a :class:`ModelQueue` per process: a bounded queue and one thread that runs the model.
A request waits in the queue; the thread takes the oldest one, and with it every waiting request that
the family says can share its pass (equal :meth:`~magenta_api.family.Family.batch_key`), up to
``serving.max_batch_size`` rows (outputs), waiting at most ``serving.max_wait_ms`` for more to arrive
(and, after a batch, up to 5% of that batch's time, so that the clients it answered can join the next).
It runs them with :meth:`~magenta_api.family.Family.generate_batch` and hands each request its own result.

Why a thread per model: a batch of 32 costs little more than one sample of a big model (reading the
weights dominates), and one compute stream per model and process keeps threads and BLAS threads from
fighting over the cores (the gunicorn config sizes the BLAS threads for it).

Limits, so that a burst degrades instead of piling up:

* past ``serving.max_queue`` waiting requests, a new one is refused at once with :class:`Overloaded`
  (503 ``overloaded`` with ``Retry-After``, the estimated time to drain the queue);
* each request has a deadline: one still queued ``serving.max_queue_wait_s`` after it arrived is refused
  as overloaded too; a batch, once it runs, has the model's time limit (``limits.seconds``, else
  ``GENERATE_SECONDS``; :mod:`magenta_api.deadline`: past it, 422 ``time_limit_exceeded``).

A seeded request gives the same bytes batched or not: families draw each request's random numbers
from that request's own generator (:class:`RowStreams` splits a batch's draws by request).
"""

import contextvars
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import deadline, metrics
from .errors import MagentaApiError, Overloaded
from .family import Family, GenerateRequest, GenerateResult, ModelSpec
from .logs import request_id_var, stage

logger = logging.getLogger(__name__)

REGROUP_FRACTION = 0.05  # after a batch, wait up to this share of its time for its clients' next requests


@dataclass(frozen=True)
class ServingConfig:
    """A model's ``serving:`` entry in models.yaml, with the defaults for what it leaves out."""

    max_batch_size: int = 32  # rows (outputs) of one forward pass
    max_wait_ms: float = 2.0  # how long the oldest waiting request waits for others to join it
    max_queue: int = 64  # waiting requests past which new ones are refused (503 overloaded)
    max_queue_wait_s: float = 30.0  # a request's deadline in the queue (then 503 overloaded)

    @classmethod
    def of(cls, spec: ModelSpec) -> "ServingConfig":
        serving = getattr(spec, "serving", None) or {}
        known = {
            k: serving[k] for k in ("max_batch_size", "max_wait_ms", "max_queue", "max_queue_wait_s") if k in serving
        }
        return cls(**known)


@dataclass
class _Item:
    """One request in a queue, and what became of it."""

    request: GenerateRequest
    key: Hashable | None
    rows: int
    deadline_at: float  # time.monotonic() past which it must not wait any longer
    context: contextvars.Context
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    taken: float = 0.0  # when the model's thread took it (0: still queued)
    result: Any = None


class RowStreams:
    """A random source for a batch whose rows belong to several requests: each draw is made request by
    request, ``rows[i]`` rows along ``axis`` from ``rngs[i]``, and concatenated. A family whose engine
    draws a batch's numbers in calls with a batch axis passes this instead of one generator, and every
    request gets exactly the numbers it would get alone."""

    def __init__(self, rngs: list, rows: list, axis: int = 0):
        self.rngs, self.rows, self.axis = list(rngs), list(rows), axis

    def _draw(self, method: str, size, **kwargs):
        shape = (size,) if isinstance(size, int) else tuple(size)
        parts = []
        for rng, n in zip(self.rngs, self.rows):
            part = list(shape)
            part[self.axis] = n
            parts.append(getattr(rng, method)(tuple(part), **kwargs))
        return np.concatenate(parts, axis=self.axis)

    def random(self, size, dtype=np.float64):
        return self._draw("random", size, dtype=dtype)

    def standard_normal(self, size, dtype=np.float64):
        return self._draw("standard_normal", size, dtype=dtype)


class ModelQueue:
    """One model's bounded queue and the thread that runs its batches (see the module doc)."""

    def __init__(self, model_id: str, family: Family, config: ServingConfig, seconds: float | None):
        self.model_id, self.family, self.config, self.seconds = model_id, family, config, seconds
        self._pending: deque = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._batch_s = 0.0  # moving average of a batch's time, for Retry-After
        self._free_at = 0.0  # when the last batch ended
        self._last_s = 0.0  # how long it ran

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch that runs)."""
        return len(self._pending)

    # -- the requesting threads -------------------------------------------------------------------
    def submit(self, request: GenerateRequest) -> GenerateResult:
        """Run ``request`` (alone or in a batch) and return its result or raise its error."""
        key = self.family.batch_key(request)
        item = _Item(
            request,
            key,
            max(1, int(request.num_outputs)),
            time.monotonic() + self.config.max_queue_wait_s,
            contextvars.copy_context(),
        )
        with self._cond:
            if len(self._pending) >= self.config.max_queue:
                self._refuse("queue_full", len(self._pending))
            self._pending.append(item)
            metrics.QUEUE_DEPTH.labels(self.model_id).inc()
            self._start()
            self._cond.notify_all()
        self._wait(item)
        waited = item.taken - item.arrived
        metrics.observe_stage("queue", {"model": self.model_id}, waited)
        logger.info("stage=queue model=%s ms=%.1f", self.model_id, waited * 1000)
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result

    def _wait(self, item: _Item) -> None:
        if item.done.wait(max(0.0, item.deadline_at - time.monotonic())):
            return
        with self._cond:
            if not item.taken:  # still queued at its deadline: give the place up
                self._pending.remove(item)
                metrics.QUEUE_DEPTH.labels(self.model_id).dec()
                waited = time.monotonic() - item.arrived
                self._refuse("deadline", len(self._pending), f"waited {waited:.1f} s in the queue, past its deadline")
        item.done.wait()  # running: the batch's own time limit ends it

    def _refuse(self, reason: str, depth: int, why: str = "") -> None:
        metrics.OVERLOADED.labels(self.model_id, reason).inc()
        retry = max(1, math.ceil((depth / max(1, self.config.max_batch_size) + 1) * max(self._batch_s, 0.1)))
        raise Overloaded(
            f"model {self.model_id!r} is overloaded ({why or f'{depth} requests waiting'}); retry in {retry} s",
            {"model": self.model_id, "queue_depth": depth, "max_queue": self.config.max_queue, "retry_after": retry},
        )

    # -- the model's thread -----------------------------------------------------------------------
    def _start(self) -> None:
        """Start the thread if this process has none (threads do not survive gunicorn's fork)."""
        if self._thread is None or not self._thread.is_alive() or self._thread.ident is None:
            self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.model_id}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = self._take()
            self._run(batch)

    def _take(self) -> list:
        """The oldest request and those that can join it, once the batch is full or the oldest has waited
        ``max_wait_ms``."""
        limit = self.config.max_batch_size
        with self._cond:
            while True:
                while not self._pending:
                    self._cond.wait()
                first = self._pending[0]
                if first.key is not None:
                    # also from when the thread could start: the clients of the batch just answered come back
                    # while the next waits, and join it instead of forming a half batch of their own (a
                    # window that grows with the batch's time: their answers and new requests take a while)
                    wait = self.config.max_wait_ms / 1000.0
                    regroup = max(wait, REGROUP_FRACTION * self._last_s)
                    until = max(first.arrived + wait, self._free_at + regroup)
                    while self._rows(first.key) < limit and (left := until - time.monotonic()) > 0:
                        self._cond.wait(left)
                if self._pending and self._pending[0] is first:  # not given up at its deadline meanwhile
                    break
            batch: list = []
            rows, now = 0, time.monotonic()
            for item in list(self._pending):
                joins = item is first or (first.key is not None and item.key == first.key)
                if joins and (not batch or rows + item.rows <= limit):
                    batch.append(item)
                    rows += item.rows
                    self._pending.remove(item)
                    item.taken = now
            metrics.QUEUE_DEPTH.labels(self.model_id).dec(len(batch))
        return batch

    def _rows(self, key) -> int:
        return sum(item.rows for item in self._pending if item.key == key)

    def _run(self, batch: list) -> None:
        started = time.monotonic()
        rows = sum(item.rows for item in batch)
        try:
            results = batch[0].context.run(self._generate, batch, self.seconds, rows)
        except BaseException as exc:  # the batch as a whole failed (a time limit, a bug): every request fails
            results = [exc] * len(batch)
        for item, result in zip(batch, results):
            item.result = result
            item.done.set()
        self._free_at = time.monotonic()
        elapsed = self._last_s = self._free_at - started
        self._batch_s = elapsed if not self._batch_s else 0.8 * self._batch_s + 0.2 * elapsed

    def _generate(self, batch: list, seconds: float | None, rows: int) -> list:
        metrics.BATCH_SIZE.labels(self.model_id).observe(len(batch))
        metrics.BATCH_ROWS.labels(self.model_id).observe(rows)
        requests = [item.request for item in batch]
        ids = ",".join(item.context.get(request_id_var, "-") for item in batch)
        with (
            stage(logger, "generate", model=self.model_id, mode=requests[0].mode, n=rows, batch=len(batch), ids=ids),
            deadline.limit(seconds, self.model_id),
        ):
            if len(batch) == 1:
                try:
                    return [self.family.generate(requests[0])]
                except MagentaApiError as exc:
                    return [exc]
            results = self.family.generate_batch(requests)
        if len(results) != len(batch):
            raise RuntimeError(f"{type(self.family).__name__}.generate_batch returned {len(results)} results")
        return results


class Batcher:
    """The :class:`ModelQueue` of each model in this process, made on a model's first request.

    ``enabled=False`` (``BATCHING=off``) runs every request in its own thread, as it arrives, with no
    queue: the behaviour to compare against."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._queues: dict = {}
        self._guard = threading.Lock()
        self._pid = os.getpid()

    def run(self, spec: ModelSpec, family: Family, request: GenerateRequest, seconds: float | None) -> GenerateResult:
        if not self.enabled:
            with (
                stage(logger, "generate", model=spec.id, mode=request.mode, n=request.num_outputs),
                deadline.limit(seconds, spec.id),
            ):
                return family.generate(request)
        return self.queue(spec, family, seconds).submit(request)

    def queue(self, spec: ModelSpec, family: Family, seconds: float | None) -> ModelQueue:
        with self._guard:
            if self._pid != os.getpid():  # forked: the parent's queues and threads are not ours
                self._queues, self._pid = {}, os.getpid()
            queue = self._queues.get(spec.id)
            if queue is None or queue.family is not family or queue.seconds != seconds:
                queue = self._queues[spec.id] = ModelQueue(spec.id, family, ServingConfig.of(spec), seconds)
            return queue
