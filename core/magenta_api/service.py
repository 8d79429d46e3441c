"""The generation pipeline, independent of HTTP: the Flask app and the CLI both call it.

validate → (cache lookup) → load (fetch + read checkpoint) → generate → render → (cache store),
one log line per stage with its duration.
"""

import io
import json
import logging
import secrets
import zipfile
from dataclasses import dataclass
from typing import Optional

import jsonschema
import numpy as np

from . import schemas
from .cache import CachedResponse, DiskCache, NullCache, cache_key
from .config import Settings
from .errors import ApiError, BadRequest, Unavailable, Unprocessable
from .family import GenerateRequest, ModelSpec
from .logs import stage
from .music import sequence_to_json, sequence_to_midi
from .plugins import PluginHost
from .registry import Registry
from .store.errors import CheckpointError, CheckpointUnavailable

logger = logging.getLogger(__name__)

CORE_DEFAULTS = {"num_outputs": 1, "temperature": 1.0, "length": None, "qpm": 120.0}
SHARED_FIELDS = ("num_outputs", "temperature", "length", "qpm")
MIDI_TYPE = "audio/midi"
ZIP_TYPE = "application/zip"
JSON_TYPE = "application/json"


@dataclass
class Rendered:
    body: bytes
    content_type: str
    filename: Optional[str]
    cache: str  # HIT or MISS
    seed: object


def _validate(instance, schema, what: str):
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    if err is not None:  # best_match: the shallowest, most relevant error (as models_file reports them)
        raise BadRequest(
            f"{what}: {err.message}",
            {"field": schemas.pointer(err.absolute_path), "schema_path": "/".join(map(str, err.absolute_schema_path))},
            code="schema_violation",
        )


class Service:
    """Registry + checkpoint store + result cache, configured from :class:`Settings`."""

    def __init__(self, settings: Settings, host: Optional[PluginHost] = None, store=None, cache=None):
        self.settings = settings
        if host is None:
            host = PluginHost()
            host.load_entry_points(settings.load_plugins)
        self.host = host
        self._store = store
        if cache is None:
            cache = DiskCache(settings.cache_dir, settings.cache_size_limit) if settings.cache_enabled else NullCache()
        self.cache = cache
        self.registry = Registry(
            host, self, settings.base_models_file, settings.extra_models_files, settings.default_model
        )

    @property
    def store(self):
        """The checkpoint store, created on first use (listing plugins needs none)."""
        if self._store is None:
            from .store import CheckpointStore

            self._store = CheckpointStore(self.settings.model_dir, offline=self.settings.offline)
        return self._store

    # -- catalogue ------------------------------------------------------------------------------
    def describe(self, spec: ModelSpec) -> dict:
        entry = self.registry.families.get(spec.family)
        cls = entry.cls if entry else None
        status = self.registry.checkpoint_status(spec) if (cls is None or cls.needs_checkpoint) else {"state": "ready"}
        checkpoint = None
        if spec.checkpoint:
            checkpoint = {
                "url": spec.checkpoint["url"],
                "format": spec.checkpoint["format"],
                "sha256": spec.checkpoint.get("sha256") or status.get("sha256") or None,
                **{k: status.get(k) for k in ("state", "size", "bytes_done")},
            }
        info = {
            "id": spec.id,
            "family": spec.family,
            "plugin": entry.plugin if entry else None,
            "description": spec.description or (cls.description if cls else ""),
            "available": entry is not None,
            "capabilities": list(cls.capabilities) if cls else [],
            "default_mode": (spec.defaults.get("mode") or cls.default_mode) if cls else None,
            "defaults": self._defaults(spec, cls) if cls else dict(spec.defaults),
            "limits": spec.limits,
            "hparams": spec.hparams,
            "parameters": self.parameters_schema(cls) if cls else None,
            "state": status.get("state"),
            "checkpoint": checkpoint,
            "loaded": self.registry.is_loaded(spec.id),
            "default": spec.id == self.registry.default_model,
        }
        if entry is None:
            info["error"] = f"family {spec.family!r} is not provided by any loaded plugin"
        return info

    def list_models(self) -> list:
        return [self.describe(spec) for _, spec in sorted(self.registry.models.items())]

    @staticmethod
    def parameters_schema(cls) -> dict:
        return {"allOf": [schemas.load("generate"), cls.params_schema]}

    @staticmethod
    def _defaults(spec: ModelSpec, cls) -> dict:
        merged = {**CORE_DEFAULTS, **cls.defaults, **spec.defaults}
        merged.setdefault("mode", cls.default_mode)
        return merged

    # -- generation -----------------------------------------------------------------------------
    def build_request(self, payload) -> tuple:
        """Validate a payload and resolve defaults; returns (spec, family entry, GenerateRequest, format, seeded)."""
        if not isinstance(payload, dict):
            raise BadRequest("the request body must be a JSON object", {"field": ""}, code="schema_violation")
        _validate(payload, schemas.load("generate"), "invalid request")
        spec = self.registry.spec(payload.get("model"))
        entry = self.registry.family(spec)
        cls = entry.cls
        _validate(payload, cls.params_schema, f"invalid parameter for {spec.id}")
        self._refuse_unknown_fields(payload, cls, spec)
        opts = {**self._defaults(spec, cls), **{k: payload[k] for k in SHARED_FIELDS if k in payload}}
        mode = payload.get("mode") or opts["mode"]
        if mode not in cls.capabilities:
            raise Unprocessable(
                f"model {spec.id!r} cannot do mode {mode!r}; it supports {', '.join(cls.capabilities)}",
                {"field": "/mode", "supported": list(cls.capabilities)},
                code="mode_not_supported",
            )
        for name in ("num_outputs", "length"):
            limit = spec.limits.get(name)
            if limit is not None and opts.get(name) is not None and opts[name] > limit:
                raise Unprocessable(
                    f"{name} {opts[name]} is over this model's limit of {limit}",
                    {"field": f"/{name}", "limit": limit},
                    code="over_limit",
                )
        seeded = "seed" in payload or "seed_sequence" in payload
        if "seed" in payload and "seed_sequence" in payload and payload["seed"] != payload["seed_sequence"]:
            raise BadRequest("give either seed or seed_sequence, not two different ones", {"field": "/seed_sequence"})
        seed = payload.get("seed", payload.get("seed_sequence"))
        if seed is None:
            seed = secrets.randbits(53)  # fits a JavaScript number, so any client can send it back
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
            params=payload,
        )
        cls.validate(spec, request)
        return spec, entry, request, seeded

    @staticmethod
    def _refuse_unknown_fields(payload: dict, cls, spec: ModelSpec) -> None:
        """A misspelt field ("temprature") would otherwise be ignored in silence. Families that take
        free-form fields say so with ``"additionalProperties": true`` in their params_schema."""
        if cls.params_schema.get("additionalProperties") is True:
            return
        known = set(schemas.load("generate")["properties"]) | set(cls.params_schema.get("properties", {}))
        unknown = sorted(set(payload) - known)
        if unknown:
            raise BadRequest(
                f"unknown field {unknown[0]!r} for model {spec.id!r}",
                {"field": f"/{unknown[0]}", "unknown": unknown, "accepted": sorted(known)},
                code="unknown_field",
            )

    def generate(self, payload, want_midi: bool = False) -> Rendered:
        with stage(logger, "validate") as info:
            spec, entry, request, seeded = self.build_request(payload)
            fmt = payload.get("format") or ("midi" if want_midi else "json")
            info.update(model=spec.id, mode=request.mode, n=request.num_outputs)
        canonical = {k: v for k, v in payload.items() if k not in ("seed_sequence", "format")}
        canonical.update(
            model=spec.id, mode=request.mode, seed=request.seed, format=fmt,
            **{k: getattr(request, k) for k in SHARED_FIELDS},
        )
        plugin = self.host.plugins.get(entry.plugin)
        code_id = f"{entry.plugin}=={plugin.version if plugin else '?'}"
        key = None
        if seeded and self.cache.enabled:
            with stage(logger, "cache", op="get") as info:
                identity = self._checkpoint_identity(spec)
                if identity is not None:
                    key = cache_key(canonical, f"{identity}|{code_id}")
                    hit = self.cache.get(key)
                    info.update(hit=hit is not None)
                    if hit is not None:
                        return Rendered(hit.body, hit.content_type, hit.filename, "HIT", request.seed)
        model = self._load(spec, entry)
        with stage(logger, "generate", model=spec.id, mode=request.mode, n=request.num_outputs):
            result = model.generate(request)
        rendered = self._render(spec, request, result, fmt)
        if seeded and self.cache.enabled:
            with stage(logger, "cache", op="set"):
                if key is None:
                    identity = (model.checkpoint.sha256 if model.checkpoint else "none") or "unknown"
                    key = cache_key(canonical, f"{identity}|{code_id}")
                self.cache.set(key, CachedResponse(rendered.body, rendered.content_type, rendered.filename))
            rendered.cache = "MISS"
        return rendered

    def _checkpoint_identity(self, spec: ModelSpec) -> Optional[str]:
        if not spec.checkpoint:
            return "none"
        declared = spec.checkpoint.get("sha256")
        if declared:
            return declared
        return self.registry.checkpoint_status(spec).get("sha256")

    def _load(self, spec: ModelSpec, entry):
        needs_fetch = (spec.checkpoint and entry.cls.needs_checkpoint and not self.registry.is_loaded(spec.id)
                       and self.registry.checkpoint_status(spec).get("state") != "ready")
        try:
            if needs_fetch:
                with stage(logger, "fetch", model=spec.id):
                    self.store.fetch(spec.id, spec.checkpoint)
            with stage(logger, "load", model=spec.id, cached=self.registry.is_loaded(spec.id)):
                return self.registry.load(spec)
        except CheckpointUnavailable as exc:
            hint = getattr(exc, "hint", None) or f"magenta-api fetch {spec.id}"
            raise Unavailable(
                f"checkpoint of {spec.id!r} is not available: {getattr(exc, 'reason', None) or exc}",
                {"model": spec.id, "fix": hint, "state": self.registry.checkpoint_status(spec).get("state")},
            ) from exc
        except CheckpointError as exc:
            raise Unavailable(
                f"checkpoint of {spec.id!r} could not be used: {exc}",
                {"model": spec.id, "fix": f"magenta-api fetch {spec.id}"},
                code="checkpoint_invalid",
            ) from exc

    def _render(self, spec, request, result, fmt) -> Rendered:
        if fmt == "midi":
            if not result.sequences:
                raise Unprocessable(f"mode {request.mode!r} returns no music to render as MIDI", {"field": "/format"})
            base = f"{spec.id}-{request.mode}"
            if len(result.sequences) == 1:
                return Rendered(sequence_to_midi(result.sequences[0]), MIDI_TYPE, f"{base}.mid", "MISS", request.seed)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for i, seq in enumerate(result.sequences, 1):
                    info = zipfile.ZipInfo(f"{base}-{i}.mid", date_time=(2020, 1, 1, 0, 0, 0))
                    zf.writestr(info, sequence_to_midi(seq))
            return Rendered(buf.getvalue(), ZIP_TYPE, f"{base}.zip", "MISS", request.seed)
        sequences = [sequence_to_json(s) for s in result.sequences]
        body = {
            "model": spec.id,
            "mode": request.mode,
            "seed": request.seed,
            "parameters": {k: getattr(request, k) for k in SHARED_FIELDS},
            "sequences": sequences,
            "notes": sequences[0].get("notes", []) if sequences else [],
            **result.extra,
        }
        return Rendered(json.dumps(body).encode(), JSON_TYPE, None, "MISS", request.seed)


def error_body(exc: ApiError, request_id: str) -> dict:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details, "request_id": request_id}}
