"""Rate limits with Flask-Limiter: per API key (its own ``rate_limit``, else ``RATE_LIMIT``), per client IP
for requests without a key.

``RATE_LIMIT="60/minute;1000/day"`` is one budget across every limited route (Flask-Limiter's
application limits), so generating, listing and polling jobs all count. The counters live in Redis when
``REDIS_URL`` is set, so every replica counts against the same numbers; without it, in the process's
memory. When Redis cannot be reached the limiter falls back to memory and logs it (it never fails a
request). A request over its limit is a 429 with ``Retry-After``, the ``X-RateLimit-*`` headers of
Flask-Limiter and the ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset`` (seconds)
fields of the IETF draft. ``/healthz``, ``/readyz`` and ``/metrics`` are never limited. Nothing is
limited unless ``RATE_LIMIT`` is set or a key carries a limit.
"""

import time
from collections.abc import Callable

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .auth import current_key
from .config import Settings

KEY_PREFIX = "magenta-api"


def client_identity() -> str:
    """What a request counts against: its API key's name, else its client address."""
    key = current_key.get()
    return f"key:{key.name}" if key is not None else f"ip:{get_remote_address()}"


def limit_of(default: str | None) -> str | None:
    """The limit of the request being served: its key's own, else the deployment's ``RATE_LIMIT``."""
    key = current_key.get()
    return (key.rate_limit if key is not None else None) or default


def install(app, settings: Settings, is_open: Callable[[], bool], keyed_limits: bool = False) -> Limiter | None:
    """Limit ``app`` (None when neither ``RATE_LIMIT`` nor per-key limits are configured).

    ``is_open`` tells (in a request) whether the route is one that stays open; the web layer registers
    authentication before this, so the key is known when the limit is chosen."""
    if not settings.rate_limit and not keyed_limits:
        return None
    default = settings.rate_limit
    limiter = Limiter(
        client_identity,
        app=app,
        application_limits=[lambda: limit_of(default) or "1000000/second"],
        application_limits_exempt_when=lambda: is_open() or limit_of(default) is None,
        storage_uri=settings.redis_url or "memory://",
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2} if settings.redis_url else {},
        strategy="fixed-window",
        headers_enabled=True,
        retry_after="delta-seconds",
        key_prefix=KEY_PREFIX,
        swallow_errors=True,
        in_memory_fallback_enabled=bool(settings.redis_url),
    )

    @app.after_request
    def draft_headers(response):
        """The IETF draft's RateLimit fields beside Flask-Limiter's X-RateLimit-* ones."""
        current = limiter.current_limit
        if current is not None:
            response.headers["RateLimit-Limit"] = str(current.limit.amount)
            response.headers["RateLimit-Remaining"] = str(max(current.remaining, 0))
            response.headers["RateLimit-Reset"] = str(max(int(current.reset_at - time.time()), 0))
            response.headers["RateLimit-Policy"] = f"{current.limit.amount};w={current.limit.get_expiry()}"
        return response

    return limiter
