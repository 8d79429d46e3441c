"""Result cache: seeded requests are deterministic, so their rendered responses can be kept.

The cache is best effort: the music is made whether or not it can be stored, so a cache that cannot be
read or written (a full or read-only disk, a corrupt database) is logged, counted and reported as
``degraded`` by :meth:`DiskCache.health`, and never fails a request or the service's start.

The backend is an interface (``get``/``set``/``health``) so that Redis or another store can replace the
disk cache; :class:`DiskCache` is the default, :class:`NullCache` is ``CACHE=off``.
"""

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import diskcache

from . import metrics

log = logging.getLogger(__name__)

REOPEN_AFTER_S = 30.0  # a cache that could not be opened is tried again after this long


@dataclass(frozen=True)
class CachedResponse:
    body: bytes
    content_type: str
    filename: str | None = None


class CacheBackend(Protocol):
    enabled: bool

    def get(self, key: str) -> CachedResponse | None: ...

    def set(self, key: str, value: CachedResponse) -> None: ...

    def health(self) -> dict: ...


class NullCache:
    """Caches nothing (``CACHE=off``)."""

    enabled = False

    def get(self, key):
        return None

    def set(self, key, value):
        pass

    def health(self) -> dict:
        return {"state": "off"}


class DiskCache:
    """A size-limited diskcache.Cache, safe across processes (gunicorn workers share it), best effort."""

    enabled = True

    def __init__(self, directory: Path, size_limit: int):
        self.directory, self.size_limit = Path(directory), size_limit
        self.errors = 0
        self.last_error: str | None = None
        self._failing = False
        self._cache: diskcache.Cache | None = None
        self._opened_at = 0.0
        self._guard = threading.Lock()  # opened on first use: listing models creates no folder

    def _open(self) -> diskcache.Cache | None:
        with self._guard:
            due = not self._opened_at or time.monotonic() - self._opened_at >= REOPEN_AFTER_S
            if self._cache is None and due:
                self._opened_at = time.monotonic()
                try:
                    self._cache = diskcache.Cache(str(self.directory), size_limit=self.size_limit)
                except Exception as exc:  # a full, read-only or corrupt cache folder
                    self._failed("open", exc)
        return self._cache

    def _failed(self, op: str, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{op}: {type(exc).__name__}: {exc}"
        self._failing = True
        metrics.cache_error(op)
        log.warning("result cache %s failed (%s); serving without it", op, self.last_error)

    def _ok(self) -> None:
        self._failing = False

    def get(self, key):
        cache = self._open()
        if cache is None:
            return None
        try:
            value = cache.get(key)
        except Exception as exc:
            self._failed("read", exc)
            return None
        self._ok()
        return CachedResponse(*value) if value is not None else None

    def set(self, key, value: CachedResponse):
        cache = self._open()
        if cache is None:
            return
        try:
            cache.set(key, (value.body, value.content_type, value.filename))
        except Exception as exc:
            self._failed("write", exc)
            return
        self._ok()

    def health(self) -> dict:
        """``ok``, or ``degraded`` while the cache cannot be opened or its last read or write failed."""
        state = "degraded" if self._open() is None or self._failing else "ok"
        return {"state": state, "errors": self.errors, "last_error": self.last_error}

    def close(self):
        if self._cache is not None:
            self._cache.close()


def cache_key(request: dict, checkpoint_id: str) -> str:
    """sha256 of the canonical request (sorted keys, no whitespace) and the checkpoint's identity."""
    canonical = json.dumps({"request": request, "checkpoint": checkpoint_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
