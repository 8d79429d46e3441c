"""The Flask app: routes under /v1, JSON errors with request ids, and the OpenAPI document."""

import json
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import __version__
from .config import Settings
from .errors import ApiError, BadRequest, NotFound, PayloadTooLarge
from .logs import request_id_var, setup_logging
from .openapi import openapi_document
from .service import Service, error_body

logger = logging.getLogger(__name__)

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _json(data, status=200, headers=None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def create_app(settings: Settings = None, service: Service = None) -> Flask:
    """App factory: ``gunicorn 'magenta_api.app:create_app()'`` or ``flask --app magenta_api.app run``."""
    settings = settings or (service.settings if service else Settings.from_env())
    setup_logging(settings.log_level)
    service = service or Service(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["magenta_api"] = service

    @app.before_request
    def assign_request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        g.token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()

    @app.after_request
    def stamp_response(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        if "started" in g:
            logger.info("%s %s -> %s in %.1f ms", request.method, request.path, response.status_code,
                        (time.perf_counter() - g.started) * 1000)
        return response

    @app.teardown_request
    def reset_request_id(_exc):
        token = g.pop("token", None)
        if token is not None:
            request_id_var.reset(token)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        level = logging.ERROR if exc.status >= 500 else logging.INFO
        logger.log(level, "error %s %s: %s", exc.status, exc.code, exc.message)
        return _json(error_body(exc, g.get("request_id", "-")), exc.status)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return api_error(PayloadTooLarge(
            f"request body is over the limit of {settings.max_body_bytes} bytes",
            {"limit": settings.max_body_bytes}))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 404:
            return api_error(NotFound(f"no route {request.path}", {"path": request.path}))
        err = ApiError(exc.description or exc.name, {"path": request.path}, code=exc.name.lower().replace(" ", "_"))
        err.status = exc.code
        return api_error(err)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logger.exception("unhandled error")
        err = ApiError("internal error; quote the request id when reporting it", {})
        return _json(error_body(err, g.get("request_id", "-")), 500)

    @app.get("/healthz")
    def healthz():
        return _json({"status": "ok", "version": __version__})

    @app.get("/readyz")
    def readyz():
        models = service.list_models()
        ready = [m["id"] for m in models if m["available"] and m["state"] == "ready"]
        body = {"status": "ready" if ready else "not_ready", "models_ready": ready,
                "plugin_errors": {n: p.error for n, p in service.host.plugins.items() if p.error}}
        return _json(body, 200 if ready else 503)

    @app.get("/v1/models")
    def list_models():
        return _json({"models": service.list_models(), "default_model": service.registry.default_model})

    @app.get("/v1/models/<model_id>")
    def get_model(model_id):
        return _json(service.describe(service.registry.spec(model_id)))

    @app.get("/v1/plugins")
    def list_plugins():
        return _json({"plugins": [p.as_json() for _, p in sorted(service.host.plugins.items())]})

    @app.get("/v1/openapi.json")
    def openapi():
        return _json(openapi_document(app))

    @app.post("/v1/generate")
    def generate():
        raw = request.get_data(cache=False)
        try:
            payload = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"malformed JSON: {exc}", {"field": ""}, code="malformed_json")
        want_midi = request.accept_mimetypes.best == "audio/midi"
        rendered = service.generate(payload, want_midi=want_midi)
        headers = {"X-Cache": rendered.cache, "X-Seed": json.dumps(rendered.seed)}
        if rendered.filename:
            headers["Content-Disposition"] = f'attachment; filename="{rendered.filename}"'
        return Response(rendered.body, status=200, mimetype=rendered.content_type, headers=headers)

    return app
