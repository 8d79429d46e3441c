"""The service, independent of HTTP: the web layer and the CLI both call it.

A generation request goes validate → cache lookup → load → generate → render → cache store, one log
line per stage with its duration. The service only orchestrates: checks live in
:mod:`.request_builder`, making a model ready in :mod:`.loader`, output formats in :mod:`.render`.
"""

import logging

from . import deadline, metrics, progress
from .batching import Batcher
from .cache import CachedResponse, DiskCache, NullCache, cache_key
from .config import Settings
from .family import ModelSpec
from .logs import stage
from .plugins import PluginHost
from .registry import Registry
from .render import Rendered, render, render_identity
from .request_builder import build_request, model_defaults, parameters_schema
from .store import CheckpointStore

logger = logging.getLogger(__name__)


def result_cache(settings: Settings):
    """The result cache the settings name: Redis with ``CACHE_URL=redis://...`` (shared by replicas), else
    the disk cache under CACHE_DIR, or none with ``CACHE=off``."""
    if not settings.cache_enabled:
        return NullCache()
    if settings.cache_url:
        if not settings.cache_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"CACHE_URL must be a redis://, rediss:// or unix:// URL, not {settings.cache_url!r}")
        from .redis_cache import RedisCache

        return RedisCache(settings.cache_url, settings.cache_ttl_s)
    return DiskCache(settings.cache_dir, settings.cache_size_limit)


class Service:
    """The catalogue and the generation pipeline over one registry and one result cache."""

    def __init__(self, settings: Settings, registry: Registry, cache):
        self.settings = settings
        self.registry = registry
        self.loader = registry.loader
        self.cache = cache
        self.batcher = Batcher(enabled=settings.batching)

    @classmethod
    def from_settings(cls, settings: Settings, host: PluginHost | None = None, store=None, cache=None) -> "Service":
        """Everything built from :class:`Settings`: the installed plugins (unless ``host`` is given), the
        checkpoint store under MODEL_DIR, the disk cache (or none with CACHE=off)."""
        if host is None:
            host = PluginHost()
            host.load_entry_points(settings.load_plugins)
        if store is None:
            store = CheckpointStore(
                settings.model_dir,
                offline=settings.offline,
                fetch_wait_s=settings.fetch_wait_s,
                keep_source=settings.keep_source,
            )
        if cache is None:
            cache = result_cache(settings)
        registry = Registry(host, store, settings.base_models_file, settings.extra_models_files, settings.default_model)
        return cls(settings, registry, cache)

    # -- catalogue ------------------------------------------------------------------------------
    @property
    def default_model(self) -> str | None:
        return self.registry.default_model

    def models(self) -> list:
        return [self._describe(spec) for _, spec in sorted(self.registry.models.items())]

    def model(self, model_id: str) -> dict:
        return self._describe(self.registry.spec(model_id))

    def plugins(self) -> list:
        return [p.as_json() for _, p in sorted(self.registry.host.plugins.items())]

    def readiness(self) -> dict:
        """Which models can serve a request now (checkpoint on disk, family loaded), and plugin errors."""
        ready = [m["id"] for m in self.models() if m["available"] and m["state"] == "ready"]
        cache = self.cache.health()
        degraded = [name for name, part in (("cache", cache),) if part.get("state") == "degraded"]
        return {
            "status": ("degraded" if degraded else "ready") if ready else "not_ready",
            "models_ready": ready,
            "degraded": degraded,
            "cache": cache,
            "plugin_errors": self.registry.plugin_errors(),
        }

    def _describe(self, spec: ModelSpec) -> dict:
        entry = self.registry.families.get(spec.family)
        cls = entry.cls if entry else None
        status = self.loader.status(spec, cls)
        checkpoint = None
        if spec.checkpoint:
            checkpoint = {
                "url": spec.checkpoint["url"],
                "format": spec.checkpoint["format"],
                "sha256": spec.checkpoint.get("sha256") or status.get("sha256") or None,
                **{k: status.get(k) for k in ("state", "size", "bytes_done")},
                **{
                    k: status[k]
                    for k in ("phase", "reason", "failed_at", "attempts", "retry_after", "fix")
                    if k in status
                },
            }
        info = {
            "id": spec.id,
            "family": spec.family,
            "plugin": entry.plugin if entry else None,
            "description": spec.description or (cls.description if cls else ""),
            "available": entry is not None,
            "capabilities": list(cls.capabilities) if cls else [],
            "default_mode": (spec.defaults.get("mode") or cls.default_mode) if cls else None,
            "defaults": model_defaults(spec, cls) if cls else dict(spec.defaults),
            "limits": spec.limits,
            "hparams": spec.hparams,
            "parameters": parameters_schema(cls) if cls else None,
            "state": status.get("state"),
            "checkpoint": checkpoint,
            "loaded": self.loader.is_loaded(spec.id),
            "default": spec.id == self.registry.default_model,
        }
        if entry is None:
            info["error"] = f"family {spec.family!r} is not provided by any loaded plugin"
        elif status.get("state") == "error":  # the family refused this checkpoint; remembered by the loader
            info["error"] = status.get("error")
            info["error_code"] = status.get("error_code")
        return info

    # -- checkpoints ----------------------------------------------------------------------------
    def prepare(self, model_id: str, progress: bool = False, repin: bool = False) -> dict | None:
        """Fetch a model's checkpoint and build its native copy now (``repin``: replace its pinned sha256);
        its status, or None if it has none."""
        return self.loader.prepare(self.registry.spec(model_id), progress=progress, repin=repin)

    def forget(self, model_id: str) -> dict | None:
        """Delete a model's downloaded checkpoint and its pinned sha256; what was removed, or None."""
        return self.loader.forget(self.registry.spec(model_id))

    # -- generation -----------------------------------------------------------------------------
    def generate(self, payload, default_format: str = "json", listener=None) -> Rendered:
        """Music for one request body, rendered; raises the domain errors of each layer below.
        With a ``listener`` (streaming), the generation runs alone in this thread and reports its
        music to it as it is decided (:mod:`.progress`), after a ``start`` event."""
        with stage(logger, "validate") as info:
            built = build_request(payload, self.registry, default_format)
            spec, entry, request = built.spec, built.family, built.request
            info.update(model=spec.id, mode=request.mode, n=request.num_outputs)
            metrics.note_request(model=spec.id, mode=request.mode)
        renderer = render_identity(built.format)  # before any work: audio without a synthesizer is a 503 now
        if listener is not None:
            listener("start", {"model": spec.id, "mode": request.mode, "seed": request.seed, "n": request.num_outputs})
        key = None
        if built.seeded and self.cache.enabled:
            with stage(logger, "cache", op="get") as info:
                fields = {**built.cache_fields(), **({"renderer": renderer} if renderer else {})}
                key = cache_key(fields, f"{self.loader.identity(spec, entry.cls)}|{entry.code_id}")
                hit = self.cache.get(key)
                info.update(hit=hit is not None)
                metrics.cache_lookup(hit is not None)
            if hit is not None:
                return Rendered(hit.body, hit.content_type, hit.filename, request.seed, "HIT")
        model = self.loader.load(spec, entry.cls)
        seconds = spec.limits.get("seconds", self.settings.generate_seconds)
        if listener is None:
            result = self.batcher.run(spec, model, request, seconds)  # alone or batched with concurrent requests
        else:  # streamed: alone, in this thread, so that the family's progress reaches the listener
            with (
                stage(logger, "generate", model=spec.id, mode=request.mode, n=request.num_outputs, stream=True),
                deadline.limit(seconds, spec.id),
                progress.listen(listener),
            ):
                result = model.generate(request)
        with stage(logger, "render", format=built.format):
            rendered = render(built.format, spec.id, request, result, **built.render_options())
        if key is not None:
            with stage(logger, "cache", op="set"):
                self.cache.set(key, CachedResponse(rendered.body, rendered.content_type, rendered.filename))
            rendered.cache = "MISS"
        return rendered
