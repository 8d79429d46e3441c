"""The result cache in Redis (``CACHE_URL=redis://host:port/db``), shared by every replica.

The same contract as :class:`~magenta_api.cache.DiskCache`: ``get``/``set``/``health``, best effort (a
Redis that is down or full is logged, counted and reported ``degraded``; the request still gets its
music). Each entry is one hash (body, content type, file name) that expires after ``ttl_s`` seconds, so
Redis's own eviction and expiry bound the cache instead of a size limit of ours.
"""

import logging
import threading
from typing import Any

import redis

from .cache import CachedResponse

log = logging.getLogger(__name__)

KEY_PREFIX = "magenta-api:cache:"
TIMEOUT_S = 2.0  # a cache slower than this is treated as down: the music is made without it


class RedisCache:
    """Seeded results in Redis under ``magenta-api:cache:<key>``, expiring after ``ttl_s``."""

    enabled = True

    def __init__(self, url: str, ttl_s: int, client: redis.Redis | None = None):
        self.url, self.ttl_s = url, ttl_s
        self.client = client or redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self.errors = 0
        self.last_error: str | None = None
        self._failing = False
        self._guard = threading.Lock()

    def _failed(self, op: str, exc: Exception) -> None:
        with self._guard:
            self.errors += 1
            self.last_error = f"{op}: {type(exc).__name__}: {exc}"
            self._failing = op != "ping" or self._failing  # a failed read or write stays until one works
        log.warning("redis result cache %s failed (%s); serving without it", op, self.last_error)

    def get(self, key: str) -> CachedResponse | None:
        try:
            fields: list[Any] = list(self.client.hmget(KEY_PREFIX + key, "body", "type", "name"))
        except redis.RedisError as exc:
            self._failed("read", exc)
            return None
        self._failing = False
        body, content_type, name = fields
        if body is None or content_type is None:
            return None
        return CachedResponse(body, content_type.decode(), name.decode() if name else None)

    def set(self, key: str, value: CachedResponse) -> None:
        mapping: dict[Any, Any] = {
            "body": value.body,
            "type": value.content_type,
            "name": value.filename or "",
        }
        try:
            with self.client.pipeline() as pipe:
                pipe.hset(KEY_PREFIX + key, mapping=mapping)
                pipe.expire(KEY_PREFIX + key, self.ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            self._failed("write", exc)
            return
        self._failing = False

    def health(self) -> dict:
        """``ok``, or ``degraded`` while Redis does not answer or the last read or write failed."""
        reachable = True
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self._failed("ping", exc)
            reachable = False
        return {
            "state": "degraded" if self._failing or not reachable else "ok",
            "backend": "redis",
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        self.client.close()
