"""The Flask app: a short factory, request ids, and the one table that maps domain errors to HTTP.

``gunicorn 'magenta_api.wsgi:app'`` (what ``magenta-api serve`` runs) or ``flask --app magenta_api.app run``.
Logging is configured by those entry points, not here.
"""

import logging
import re
import time
import uuid

from flask import Flask, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import api, metrics, streaming, studio
from .config import Settings
from .errors import (
    AudioUnavailable,
    FamilyUnavailable,
    InvalidRequest,
    MagentaApiError,
    ModelBroken,
    NotAcceptable,
    Overloaded,
    TooLarge,
    UnknownModel,
    Unprocessable,
)
from .jobs import JobsUnavailable
from .logs import request_id_var
from .service import Service
from .store import CheckpointError

logger = logging.getLogger(__name__)

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
RETRY_AFTER_S = 30  # what a 503 suggests when the error does not know better (details.retry_after)

# Every domain error's HTTP status, by class (a subclass takes its nearest listed base's status).
STATUS = {
    InvalidRequest: 400,
    UnknownModel: 404,
    NotAcceptable: 406,
    TooLarge: 413,
    Unprocessable: 422,
    FamilyUnavailable: 503,
    ModelBroken: 503,
    CheckpointError: 503,
    JobsUnavailable: 503,
    Overloaded: 503,
    AudioUnavailable: 503,
}


def status_of(exc: MagentaApiError) -> int:
    return next((STATUS[k] for k in type(exc).__mro__ if k in STATUS), 500)


def error_response(code: str, message: str, details: dict | None, status: int, headers=None):
    """The one shape of every error body: ``{"error": {code, message, details, request_id}}``."""
    body = {
        "error": {"code": code, "message": message, "details": details or {}, "request_id": g.get("request_id", "-")}
    }
    level = logging.ERROR if status >= 500 else logging.INFO
    logger.log(level, "error %s %s: %s", status, code, message)
    headers = dict(headers or {})
    if status == 503:  # every 503 says when to try again
        headers.setdefault("Retry-After", str(int((details or {}).get("retry_after") or RETRY_AFTER_S)))
    return api.json_response(body, status, headers)


def create_app(settings: Settings | None = None, service: Service | None = None) -> Flask:
    """The app over ``service`` (built from ``settings``, or from the environment)."""
    service = service or Service.from_settings(settings or Settings.from_env())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = service.settings.max_body_bytes
    app.extensions["magenta_api"] = service
    register_request_ids(app)
    register_error_handlers(app)
    register_access(app, service.settings)
    app.register_blueprint(api.bp)
    app.register_blueprint(studio.bp)  # the web page at /
    streaming.install(app)  # the /v1/live WebSocket
    if service.settings.redis_url:  # async jobs need the queue's Redis
        from .jobs import JobQueue

        app.extensions["magenta_api_jobs"] = JobQueue(service.settings, service)
        app.register_blueprint(api.jobs_bp)
    if service.settings.cors_origins:  # off unless CORS_ORIGINS names the origins (or "*")
        CORS(app, origins=service.settings.cors_origins, expose_headers=["X-Request-ID", "X-Seed", "X-Cache"])
    return app


OPEN_PATHS = ("/healthz", "/readyz", "/metrics")  # probes and scrapes need no key and have no limit


def register_access(app: Flask, settings: Settings) -> None:
    """API keys (only with API_KEYS_FILE), then rate limits (RATE_LIMIT or per-key limits), in that order,
    so that the limiter knows the key. See :mod:`.auth` and :mod:`.ratelimit`."""
    from . import auth, ratelimit

    def is_open() -> bool:
        if request.path == "/" or request.path.startswith("/static/"):  # the studio page; its calls carry the key
            return True
        return request.path in OPEN_PATHS or request.method == "OPTIONS"  # CORS preflights carry no key

    if settings.api_keys_file:
        keys = auth.KeyStore(settings.api_keys_file)
        keys.entries()  # an unreadable keys file stops start-up, not the first request

        @app.before_request
        def authenticate():
            if not is_open():
                g.api_key_token = auth.current_key.set(keys.authenticate(request.headers))

        @app.teardown_request
        def forget_key(_exc):
            token = g.pop("api_key_token", None)
            if token is not None:
                auth.current_key.reset(token)

    @app.errorhandler(auth.AccessError)
    def access_error(exc: auth.AccessError):
        if isinstance(exc, auth.Unauthorized):
            return error_response(exc.code, exc.message, exc.details, 401, {"WWW-Authenticate": "Bearer"})
        return error_response(exc.code, exc.message, exc.details, 500)

    ratelimit.install(app, settings, is_open, keyed_limits=bool(settings.api_keys_file))


def register_request_ids(app: Flask) -> None:
    """Each request gets an id (the client's ``X-Request-ID`` if sane): on every log line and response."""

    @app.before_request
    def assign_request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        g.token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()
        g.metrics_token = metrics.begin_request()

    @app.after_request
    def stamp_response(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        if "started" in g and request.endpoint == "api.generate":
            metrics.count_request(response.status_code, time.perf_counter() - g.started)
        if "started" in g:
            logger.info(
                "%s %s -> %s in %.1f ms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - g.started) * 1000,
            )
        return response

    @app.teardown_request
    def reset_request_id(_exc):
        token = g.pop("token", None)
        if token is not None:
            request_id_var.reset(token)
        labels = g.pop("metrics_token", None)
        if labels is not None:
            metrics.end_request(labels)


def register_error_handlers(app: Flask) -> None:
    """Domain errors by :data:`STATUS`, HTTP errors with their own status, anything else a logged 500."""

    @app.errorhandler(MagentaApiError)
    def domain_error(exc: MagentaApiError):
        return error_response(exc.code, exc.message, exc.details, status_of(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(
            "payload_too_large", f"request body is over the limit of {limit} bytes", {"limit": limit}, 413
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 404:
            return error_response("not_found", f"no route {request.path}", {"path": request.path}, 404)
        allow = {k: v for k, v in exc.get_headers() if k == "Allow"}
        return error_response(
            exc.name.lower().replace(" ", "_"),
            exc.description or exc.name,
            {"path": request.path},
            exc.code or 500,
            allow,
        )

    @app.errorhandler(Exception)
    def unexpected(_exc: Exception):
        logger.exception("unhandled error")
        return error_response("internal_error", "internal error; quote the request id when reporting it", {}, 500)
