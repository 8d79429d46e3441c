"""The catalogue: families that plugins provide, models declared for them, and loaded instances."""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import models_file
from .errors import NotFound, Unavailable
from .family import Family, ModelSpec
from .plugins import PluginHost

logger = logging.getLogger(__name__)


@dataclass
class FamilyEntry:
    cls: type
    plugin: str


class Registry:
    """Built once per app from the plugins and the models files; loads models lazily, once each."""

    def __init__(self, host: PluginHost, owner, base_models_file: Optional[Path] = None,
                 extra_models_files=(), default_model: Optional[str] = None):
        self.host = host
        self._owner = owner  # has a lazily created .store
        self.families: dict = {}
        self.models: dict = {}
        self.default_model = None
        self._loaded: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()
        self._collect(base_models_file, list(extra_models_files))
        if default_model:
            self.default_model = default_model
        if self.default_model and self.default_model not in self.models:
            raise models_file.ModelsFileError(f"default_model {self.default_model!r} is not a declared model")

    # -- building -----------------------------------------------------------------------------
    def _collect(self, base_file, extra_files):
        def family_kwargs(plugin):
            return {"register": lambda cls: self._add_family(cls, plugin)}

        def models_kwargs(plugin):
            return {"register": lambda source: self._add_plugin_models(source, plugin)}

        self.host.call_each("register_families", family_kwargs)
        self.host.call_each("register_models", models_kwargs)
        for path in ([base_file] if base_file else []) + extra_files:
            specs, default = models_file.load_file(path)
            for spec in specs.values():
                self._check_hparams(spec)
            self.models.update(specs)
            self.default_model = default or self.default_model

    def _add_family(self, cls, plugin: str):
        if not (isinstance(cls, type) and issubclass(cls, Family) and cls.name):
            raise TypeError(f"{cls!r} is not a Family subclass with a name")
        if cls.name in self.families and self.families[cls.name].plugin != plugin:
            raise ValueError(f"family {cls.name!r} is already provided by plugin {self.families[cls.name].plugin!r}")
        self.families[cls.name] = FamilyEntry(cls, plugin)

    def _add_plugin_models(self, source, plugin: str):
        if isinstance(source, (str, Path)):
            specs, default = models_file.load_file(Path(source))
        else:
            specs, default = models_file.parse(source, f"plugin {plugin}")
        for spec in specs.values():
            self._check_hparams(spec)
        self.models.update(specs)
        self.default_model = default or self.default_model

    def _check_hparams(self, spec: ModelSpec):
        entry = self.families.get(spec.family)
        if entry is not None:
            models_file.validate_hparams(spec, entry.cls.hparams_schema)

    # -- lookup ---------------------------------------------------------------------------------
    def spec(self, model_id: Optional[str]) -> ModelSpec:
        model_id = model_id or self.default_model
        if not model_id:
            raise NotFound("no model given and no default model is configured",
                           {"known_models": sorted(self.models)}, code="unknown_model")
        if model_id not in self.models:
            raise NotFound(f"unknown model {model_id!r}", {"known_models": sorted(self.models)}, code="unknown_model")
        return self.models[model_id]

    def family(self, spec: ModelSpec) -> FamilyEntry:
        entry = self.families.get(spec.family)
        if entry is None:
            raise Unavailable(
                f"model {spec.id!r} needs family {spec.family!r}, which no loaded plugin provides",
                {"family": spec.family, "plugins": {n: p.error for n, p in self.host.plugins.items() if p.error}},
                code="family_unavailable",
            )
        return entry

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def checkpoint_status(self, spec: ModelSpec) -> dict:
        if not spec.checkpoint:
            return {"state": "ready", "size": 0, "bytes_done": None, "sha256": None, "format": None}
        return self._owner.store.status(spec.id, spec.checkpoint)

    def load(self, spec: ModelSpec):
        """The family instance for a model, loading its checkpoint the first time (once per process)."""
        if spec.id in self._loaded:
            return self._loaded[spec.id]
        with self._guard:
            lock = self._locks.setdefault(spec.id, threading.Lock())
        with lock:
            if spec.id not in self._loaded:
                entry = self.family(spec)
                checkpoint = None
                if spec.checkpoint and entry.cls.needs_checkpoint:
                    checkpoint = self._owner.store.open(spec.id, spec.checkpoint)
                self._loaded[spec.id] = entry.cls(spec, checkpoint)
                logger.info("model %s loaded (family %s)", spec.id, spec.family)
        return self._loaded[spec.id]
