"""OpenAPI 3 document built from the app's real routes and the summary and responses each route declares
(``api.documented``), so it cannot drift from them."""

import json

from . import __version__, schemas

ERROR = {"$ref": "#/components/schemas/Error"}


def _path(rule: str) -> str:
    return rule.replace("<", "{").replace(">", "}")


def openapi_document(app) -> dict:
    paths: dict = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
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
        "info": {
            "title": "magenta-api",
            "version": __version__,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
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
