"""OpenAPI 3 document built from the app's real routes and the summary and responses each route declares
(``api.documented``), so it cannot drift from them."""

import json

from . import __version__, schemas
from .render import AUDIO_TYPES

BINARY = {"type": "string", "format": "binary"}
SSE_EVENT = {  # one Server-Sent Event of a streamed generation (start, notes, bar, result, error)
    "type": "object",
    "properties": {"event": {"enum": ["start", "notes", "bar", "result", "error"]}, "data": {"type": "string"}},
    "required": ["event", "data"],
}

ERROR = {"$ref": "#/components/schemas/Error"}


def _path(rule: str) -> str:
    return rule.replace("<", "{").replace(">", "}")


def openapi_document(app) -> dict:
    paths: dict = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "studio.static", "studio.page") or rule.websocket:
            continue  # files, the web page and the WebSocket are not JSON operations
        path = _path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            doc = getattr(app.view_functions[rule.endpoint], "openapi", {})
            summary, responses = doc.get("summary", rule.endpoint), doc.get("responses", {"200": "OK"})
            op = {
                "operationId": rule.endpoint.rsplit(".", 1)[-1],
                "summary": summary,
                "responses": {
                    code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
                    if code >= "400"
                    else {"description": text}
                    for code, text in responses.items()
                },
            }
            if rule.arguments:
                op["parameters"] = [
                    {"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
                    for a in sorted(rule.arguments)
                ]
            if method == "POST":  # every POST takes a generate body (/v1/generate, /v1/jobs)
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerateBody"}}},
                }
            if method == "POST" and "200" in op["responses"]:  # /v1/jobs answers 202 with the job
                op["responses"]["200"]["content"] = {
                    "application/json": {"schema": {"type": "object"}},
                    "audio/midi": {"schema": {"type": "string", "format": "binary"}},
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                    **{t: {"schema": BINARY} for t in (*AUDIO_TYPES.values(), "image/png")},
                    "image/svg+xml": {"schema": {"type": "string"}},
                    "text/event-stream": {"schema": SSE_EVENT},  # "stream": true: the schema of each event
                }
            paths.setdefault(path, {})[method.lower()] = op
    generate = {k: v for k, v in schemas.load("generate").items() if not k.startswith("$") or k == "$defs"}
    generate, defs = _rebase_defs(generate)
    per_model = _model_bodies(app, generate)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "magenta-api",
            "version": __version__,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {
                "GenerateRequest": generate,
                "GenerateBody": {
                    "description": "A request body: one of the per-model schemas (a body without `model` goes to "
                    "the default model)",
                    "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in per_model],
                }
                if per_model
                else {"$ref": "#/components/schemas/GenerateRequest"},
                **per_model,
                **defs,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "details", "request_id"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {"type": "object"},
                                "request_id": {"type": "string"},
                            },
                        }
                    },
                },
            }
        },
    }


def _rebase_defs(schema: dict) -> tuple:
    """Move the request schema's $defs into components so that its $refs resolve in the document."""
    defs = schema.pop("$defs", {})
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/GenerateRequest_')
    return json.loads(text), {f"GenerateRequest_{k}": v for k, v in defs.items()}


def _model_bodies(app, generate: dict) -> dict:
    """One request schema per servable model: the core's fields with ``model`` fixed to its id, ``mode`` to
    its family's modes, the family's own fields, and no other field unless the family takes free-form
    ones; the default model's ``model`` may be left out. Keys are component names."""
    service = app.extensions.get("magenta_api")
    if service is None:
        return {}
    bodies = {}
    for model in service.models():
        if not model["available"]:
            continue
        family = model["parameters"]["allOf"][1]
        props = {**generate["properties"], **family.get("properties", {})}
        props["model"] = {"const": model["id"]}
        props["mode"] = {"enum": model["capabilities"]}
        body: dict = {"type": "object", "properties": props}
        if family.get("additionalProperties") is not True:
            body["additionalProperties"] = False
        if not model["default"]:
            body["required"] = ["model"]
        bodies[f"GenerateFor_{model['id']}"] = body
    return bodies
