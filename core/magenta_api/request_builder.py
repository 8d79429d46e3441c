"""A ``POST /v1/generate`` body turned into a typed :class:`~magenta_api.family.GenerateRequest`, checked once.

The checks run in this order, each exactly once: the JSON Schemas (the core's, then the family's
``params_schema``), unknown fields, the mode, the model's limits, the seed, and last the family's own
:meth:`~magenta_api.family.Family.validate`. Nothing here needs the model's weights, so a bad request
is refused before any checkpoint is fetched.
"""

import json
import secrets
from dataclasses import dataclass
from typing import Any

import jsonschema
import numpy as np

from . import schemas
from .errors import InvalidRequest, TooLarge, Unprocessable
from .family import GenerateRequest, ModelSpec

CORE_DEFAULTS = {"num_outputs": 1, "temperature": 1.0, "length": None, "qpm": 120.0}
SHARED_FIELDS = ("num_outputs", "temperature", "length", "qpm")  # typed fields of GenerateRequest
LIMITED_FIELDS = ("num_outputs", "length")  # fields a models.yaml ``limits`` entry may cap
# How many items a request's lists may hold unless the model's ``limits`` say otherwise: a request can
# only grow them so far before it ties a worker up.
LIST_LIMITS = {"inputs": ("inputs", 64), "primer": ("primer_events", 4096)}
MAX_DEPTH = 32  # JSON nesting: a NoteSequence in ``inputs`` is 5 deep


def parse_json(raw: bytes):
    """A request body as JSON, refusing what JSON is not (``NaN``, ``Infinity``, which Python's parser
    accepts) and nesting deeper than :data:`MAX_DEPTH` (which would exhaust the recursion limit)."""

    def refuse_constant(name):
        raise ValueError(f"{name} is not a JSON number")

    try:
        payload = json.loads(raw or b"null", parse_constant=refuse_constant)
    except RecursionError:
        raise TooLarge(
            f"the JSON body is nested more than {MAX_DEPTH} levels deep", {"limit": MAX_DEPTH}, code="too_deeply_nested"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"malformed JSON: {exc}", {"field": ""}, code="malformed_json") from exc
    _check_depth(payload)
    return payload


def _check_depth(value) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooLarge(
                f"the JSON body is nested more than {MAX_DEPTH} levels deep",
                {"limit": MAX_DEPTH},
                code="too_deeply_nested",
            )
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)


def core_fields() -> set:
    """Every field the core understands (the generate schema's properties)."""
    return set(schemas.load("generate")["properties"])


def model_defaults(spec: ModelSpec, cls) -> dict:
    """The defaults a request to this model starts from: core, then family, then models.yaml."""
    merged = {**CORE_DEFAULTS, **cls.defaults, **spec.defaults}
    merged.setdefault("mode", cls.default_mode)
    return merged


def parameters_schema(cls) -> dict:
    """The JSON Schema of a request body for a family: the core's fields and the family's own."""
    return {"allOf": [schemas.load("generate"), cls.params_schema]}


@dataclass
class BuiltRequest:
    """A checked request: the model, its family entry, the typed request and how to render it."""

    spec: ModelSpec
    family: Any  # registry.FamilyEntry
    request: GenerateRequest
    format: str
    seeded: bool  # the client chose the seed, so the result is worth caching
    payload: dict

    def render_options(self) -> dict:
        """The fields that say how to write the result, not what to generate."""
        return {"json_style": self.payload.get("json_style", "proto"), "sample_rate": self.payload.get("sample_rate")}

    def cache_fields(self) -> dict:
        """What identifies the result (with the checkpoint and the plugin's version): the payload with
        its defaults resolved, so that a default spelt out hits the same entry."""
        fields = {k: v for k, v in self.payload.items() if k not in ("seed_sequence", "format", "stream")}
        req = self.request
        fields.update(
            model=self.spec.id,
            mode=req.mode,
            seed=req.seed,
            format=self.format,
            **{k: getattr(req, k) for k in SHARED_FIELDS},
        )
        return fields


def check_schema(instance, schema: dict, what: str) -> None:
    """InvalidRequest naming the field of the most relevant violation (jsonschema's ``best_match``)."""
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    if err is not None:
        raise InvalidRequest(
            f"{what}: {err.message}",
            {"field": schemas.pointer(err.absolute_path), "schema_path": "/".join(map(str, err.absolute_schema_path))},
            code="schema_violation",
        )


def _refuse_unknown_fields(payload: dict, cls, spec: ModelSpec) -> None:
    """A misspelt field ("temprature") would otherwise be ignored in silence. Families that take
    free-form fields say so with ``"additionalProperties": true`` in their params_schema."""
    if cls.params_schema.get("additionalProperties") is True:
        return
    known = core_fields() | set(cls.params_schema.get("properties", {}))
    unknown = sorted(set(payload) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r} for model {spec.id!r}",
            {"field": f"/{unknown[0]}", "unknown": unknown, "accepted": sorted(known)},
            code="unknown_field",
        )


def _check_mode(mode: str, cls, spec: ModelSpec) -> None:
    if mode not in cls.capabilities:
        raise Unprocessable(
            f"model {spec.id!r} cannot do mode {mode!r}; it supports {', '.join(cls.capabilities)}",
            {"field": "/mode", "supported": list(cls.capabilities)},
            code="mode_not_supported",
        )


def _check_limits(payload: dict, opts: dict, spec: ModelSpec) -> None:
    for field, (limit_name, default) in LIST_LIMITS.items():
        limit = spec.limits.get(limit_name, default)
        value = payload.get(field)
        if isinstance(value, list) and len(value) > limit:
            raise Unprocessable(
                f"{field} has {len(value)} items; this model takes at most {limit}",
                {"field": f"/{field}", "limit": limit},
                code="over_limit",
            )
    for name in LIMITED_FIELDS:
        limit = spec.limits.get(name)
        if limit is not None and opts.get(name) is not None and opts[name] > limit:
            raise Unprocessable(
                f"{name} {opts[name]} is over this model's limit of {limit}",
                {"field": f"/{name}", "limit": limit},
                code="over_limit",
            )


def _seed(payload: dict):
    """The client's seed (``seed`` or the seed document's ``seed_sequence``), or a fresh one that the
    response echoes so that the client can reproduce the result."""
    if "seed" in payload and "seed_sequence" in payload and payload["seed"] != payload["seed_sequence"]:
        raise InvalidRequest("give either seed or seed_sequence, not two different ones", {"field": "/seed_sequence"})
    seed = payload.get("seed", payload.get("seed_sequence"))
    if seed is None:
        return secrets.randbits(53)  # fits a JavaScript number, so any client can send it back
    # JSON has one number type: the schema's integers include 2.0 and 1e20, which SeedSequence refuses.
    return [int(s) for s in seed] if isinstance(seed, list) else int(seed)


def build_request(payload, registry, default_format: str = "json") -> BuiltRequest:
    """Check ``payload`` against the model it names and resolve its defaults (see the module doc).
    ``default_format`` applies when the body has no ``format`` (the web layer derives it from Accept)."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object", {"field": ""}, code="schema_violation")
    check_schema(payload, schemas.load("generate"), "invalid request")
    spec = registry.spec(payload.get("model"))
    entry = registry.family(spec)
    cls = entry.cls
    check_schema(payload, cls.params_schema, f"invalid parameter for {spec.id}")
    _refuse_unknown_fields(payload, cls, spec)
    opts = {**model_defaults(spec, cls), **{k: payload[k] for k in SHARED_FIELDS if k in payload}}
    mode = payload.get("mode") or opts["mode"]
    _check_mode(mode, cls, spec)
    _check_limits(payload, opts, spec)
    seed = _seed(payload)
    request = GenerateRequest(
        mode=mode,
        num_outputs=int(opts["num_outputs"]),
        temperature=float(opts["temperature"]),
        length=opts.get("length"),
        qpm=float(opts["qpm"]),
        seed=seed,
        rng=np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed))),
        primer=payload.get("primer"),
        inputs=list(payload.get("inputs") or []),
        params={k: v for k, v in payload.items() if k not in core_fields()},
        explicit=frozenset(payload),
    )
    cls.validate(spec, request)
    seeded = "seed" in payload or "seed_sequence" in payload
    fmt: str | None = payload.get("format")
    return BuiltRequest(spec, entry, request, fmt or default_format, seeded, payload)
