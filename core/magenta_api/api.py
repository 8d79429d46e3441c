"""The HTTP routes (the ``api`` blueprint). Each route parses what HTTP carries, calls one
:class:`~magenta_api.service.Service` method and returns its answer as JSON or a file; errors are raised
as domain exceptions and rendered by the handlers in :mod:`.app`. Each route also declares its OpenAPI
summary and responses, which :mod:`.openapi` publishes."""

import json

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import NotFound

from . import metrics, streaming
from .errors import NotAcceptable
from .render import CONTENT_TYPES, JSON_TYPE, TYPE_ALIASES, ZIP_TYPE
from .request_builder import parse_json
from .service import Service

bp = Blueprint("api", __name__)

ERRORS = {
    "400": "malformed JSON or schema violation",
    "404": "unknown model",
    "406": "the Accept header names no format the service renders",
    "413": "request body too large or too deeply nested",
    "422": "valid request the model cannot do",
    "500": "internal error (quote the request id)",
    "503": "checkpoint or family not available",
}


def documented(summary: str, responses: dict):
    """Attach the route's OpenAPI summary and responses ({status: description}) to its view."""

    def mark(view):
        view.openapi = {"summary": summary, "responses": responses}
        return view

    return mark


def service() -> Service:
    return current_app.extensions["magenta_api"]


def json_response(data, status: int = 200, headers=None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def accepted_format() -> str:
    """The output format the Accept header prefers (JSON without one); a body's ``format`` wins over it."""
    accept = request.accept_mimetypes
    if not accept:
        return "json"
    by_type = {ZIP_TYPE: "midi", **TYPE_ALIASES, **{t: f for f, t in CONTENT_TYPES.items()}}
    best = accept.best_match([JSON_TYPE, *by_type])  # JSON first: */* answers JSON
    if best is None:
        raise NotAcceptable(
            f"cannot answer with {request.headers.get('Accept')!r}",
            {"available": sorted({*CONTENT_TYPES.values(), ZIP_TYPE})},
        )
    return by_type.get(best, "json")


@bp.get("/healthz")
@documented("Liveness", {"200": "the process is up"})
def healthz():
    from . import __version__

    return json_response({"status": "ok", "version": __version__})


@bp.get("/readyz")
@documented("Readiness: at least one model can serve now", {"200": "ready", "503": "no model ready"})
def readyz():
    body = service().readiness()
    return json_response(body, 200 if body["models_ready"] else 503)


@bp.get("/v1/models")
@documented("List declared models with checkpoint state", {"200": "models"})
def list_models():
    return json_response({"models": service().models(), "default_model": service().default_model})


@bp.get("/v1/models/<model_id>")
@documented(
    "One model: capabilities, defaults, parameter schema, checkpoint state", {"200": "model", "404": "unknown model"}
)
def get_model(model_id):
    return json_response(service().model(model_id))


@bp.get("/v1/plugins")
@documented("Installed plugins, their hooks and load errors", {"200": "plugins"})
def list_plugins():
    return json_response({"plugins": service().plugins()})


@bp.get("/metrics")
@documented("Prometheus metrics, summed over the workers", {"200": "text exposition format", "404": "on METRICS_PORT"})
def prometheus_metrics():
    if service().settings.metrics_port:  # served on its own port, not next to the API
        raise NotFound()
    return Response(metrics.render(), status=200, content_type=metrics.CONTENT_TYPE)


@bp.get("/v1/openapi.json")
@documented("This document", {"200": "OpenAPI 3 document"})
def openapi():
    from .openapi import openapi_document

    return json_response(openapi_document(current_app))


@bp.post("/v1/generate")
@documented(
    "Generate music with a model",
    {"200": "NoteSequences as JSON, or a MIDI file (zip of MIDI files when num_outputs > 1)", **ERRORS},
)
def generate():
    payload = parse_json(request.get_data(cache=False))
    if streaming.wants_stream(payload):  # Server-Sent Events while generating
        return streaming.stream_generate(service(), payload)
    rendered = service().generate(payload, accepted_format())
    headers = {"X-Seed": json.dumps(rendered.seed)}
    if rendered.cache:  # only when the result cache was consulted
        headers["X-Cache"] = rendered.cache
    if rendered.filename:
        headers["Content-Disposition"] = f'attachment; filename="{rendered.filename}"'
    return Response(rendered.body, status=200, mimetype=rendered.content_type, headers=headers)


# -- async jobs (registered only with REDIS_URL; see :mod:`.jobs`) -------------------------------------
jobs_bp = Blueprint("jobs", __name__)
JOB_ERRORS = {"404": "no such job (or another key's, or expired)", "503": "the job queue's Redis does not answer"}


def job_queue():
    return current_app.extensions["magenta_api_jobs"]


def job_owner() -> str | None:
    from .auth import current_key

    key = current_key.get()
    return key.name if key is not None else None


def job_json(info: dict, status: int = 200, headers=None) -> Response:
    """A job's description; a failed one's error carries the HTTP status /v1/generate would have answered."""
    from .app import status_of
    from .jobs import error_class

    info = dict(info)
    path = info.pop("_error_class", None)
    if "error" in info:
        err = info["error"]
        info["status"] = status_of(error_class(path)(err["message"], err["details"], err["code"]))
    return json_response(info, status, headers)


@jobs_bp.post("/v1/jobs")
@documented(
    "Queue a generation (the /v1/generate body) for a worker",
    {"202": "queued; Location names the job", **ERRORS, **JOB_ERRORS},
)
def submit_job():
    payload = parse_json(request.get_data(cache=False))
    info = job_queue().submit(payload, accepted_format(), job_owner())
    return job_json(info, 202, {"Location": info["location"]})


@jobs_bp.get("/v1/jobs/<job_id>")
@documented("A job: state, progress, and its result or error", {"200": "the job", **JOB_ERRORS})
def get_job(job_id):
    return job_json(job_queue().describe(job_id, job_owner()))


@jobs_bp.get("/v1/jobs/<job_id>/result")
@documented(
    "A job's result: what /v1/generate answers (its body, or its error and status)",
    {"200": "the generate body", "202": "not done yet", **ERRORS, **JOB_ERRORS},
)
def get_job_result(job_id):
    result, info = job_queue().result(job_id, job_owner())
    if result.error is not None:
        raise result.error
    if not result.done:
        return job_json(info, 202, {"Location": info["location"], "Retry-After": "2"})
    headers = {"X-Seed": json.dumps(result.seed)}
    if result.cache:
        headers["X-Cache"] = result.cache
    if result.filename:
        headers["Content-Disposition"] = f'attachment; filename="{result.filename}"'
    return Response(result.body, status=200, mimetype=result.content_type, headers=headers)


@jobs_bp.delete("/v1/jobs/<job_id>")
@documented(
    "Cancel a queued job, stop a running one, or delete an ended one", {"200": "the job after that", **JOB_ERRORS}
)
def cancel_job(job_id):
    return job_json(job_queue().cancel(job_id, job_owner()))
