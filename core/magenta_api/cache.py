"""Result cache: seeded requests are deterministic, so their rendered responses can be kept.

The backend is an interface (``get``/``set``) so that Redis or another store can replace the
disk cache; :class:`DiskCache` is the default, :class:`NullCache` is ``CACHE=off``.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import diskcache


@dataclass(frozen=True)
class CachedResponse:
    body: bytes
    content_type: str
    filename: str | None = None


class CacheBackend(Protocol):
    def get(self, key: str) -> CachedResponse | None: ...

    def set(self, key: str, value: CachedResponse) -> None: ...


class NullCache:
    """Caches nothing (``CACHE=off``)."""

    enabled = False

    def get(self, key):
        return None

    def set(self, key, value):
        pass


class DiskCache:
    """A size-limited diskcache.Cache; safe across processes (gunicorn workers share it)."""

    enabled = True

    def __init__(self, directory: Path, size_limit: int):
        self._cache = diskcache.Cache(str(directory), size_limit=size_limit)

    def get(self, key):
        value = self._cache.get(key)
        return CachedResponse(*value) if value is not None else None

    def set(self, key, value: CachedResponse):
        self._cache.set(key, (value.body, value.content_type, value.filename))

    def close(self):
        self._cache.close()


def cache_key(request: dict, checkpoint_id: str) -> str:
    """sha256 of the canonical request (sorted keys, no whitespace) and the checkpoint's identity."""
    canonical = json.dumps({"request": request, "checkpoint": checkpoint_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
