"""OpenAPI 3 document built from the app's real routes, so it cannot drift from them."""

import json

from . import __version__, schemas

ERROR = {"$ref": "#/components/schemas/Error"}

OPERATIONS = {
    ("GET", "/healthz"): ("Liveness", {"200": "the process is up"}),
    ("GET", "/readyz"): ("Readiness: at least one model can serve now", {"200": "ready", "503": "no model ready"}),
    ("GET", "/v1/models"): ("List declared models with checkpoint state", {"200": "models"}),
    ("GET", "/v1/models/{model_id}"): ("One model: capabilities, defaults, parameter schema, checkpoint state",
                                        {"200": "model", "404": "unknown model"}),
    ("GET", "/v1/plugins"): ("Installed plugins, their hooks and load errors", {"200": "plugins"}),
    ("GET", "/v1/openapi.json"): ("This document", {"200": "OpenAPI 3 document"}),
    ("POST", "/v1/generate"): (
        "Generate music with a model",
        {
            "200": "NoteSequences as JSON, or a MIDI file (zip of MIDI files when num_outputs > 1)",
            "400": "malformed JSON or schema violation",
            "404": "unknown model",
            "413": "request body too large",
            "422": "valid request the model cannot do",
            "503": "checkpoint not available",
        },
    ),
}


def _path(rule: str) -> str:
    return rule.replace("<", "{").replace(">", "}")


def openapi_document(app) -> dict:
    paths = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = _path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            summary, responses = OPERATIONS.get((method, path), (rule.endpoint, {"200": "OK"}))
            op = {
                "operationId": rule.endpoint,
                "summary": summary,
                "responses": {
                    code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
                    if code >= "400" else {"description": text}
                    for code, text in responses.items()
                },
            }
            if rule.arguments:
                op["parameters"] = [
                    {"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
                    for a in sorted(rule.arguments)
                ]
            if method == "POST":
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerateRequest"}}},
                }
                op["responses"]["200"]["content"] = {
                    "application/json": {"schema": {"type": "object"}},
                    "audio/midi": {"schema": {"type": "string", "format": "binary"}},
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                }
            paths.setdefault(path, {})[method.lower()] = op
    generate = {k: v for k, v in schemas.load("generate").items() if not k.startswith("$") or k == "$defs"}
    generate, defs = _rebase_defs(generate)
    return {
        "openapi": "3.1.0",
        "info": {"title": "magenta-api", "version": __version__,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {
                "GenerateRequest": generate,
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
