"""The catalogue: families that plugins provide, models declared for them, and the loader that makes
them ready.

Built once per process from the plugins' hooks and the models files; the checkpoint store is given at
construction and only the :class:`~magenta_api.loader.ModelLoader` talks to it.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from . import models_file
from .errors import FamilyUnavailable, UnknownModel
from .family import Family, ModelSpec
from .loader import ModelLoader
from .plugins import PluginHost

logger = logging.getLogger(__name__)


@dataclass
class FamilyEntry:
    cls: type
    plugin: str
    version: str | None = None  # the plugin's version: part of a cached result's identity

    @property
    def code_id(self) -> str:
        return f"{self.plugin}=={self.version or '?'}"


class Registry:
    """Families and models by name, and the loader of their instances."""

    def __init__(
        self,
        host: PluginHost,
        store,
        base_models_file: Path | None = None,
        extra_models_files=(),
        default_model: str | None = None,
    ):
        self.host = host
        self.loader = ModelLoader(store)
        self.families: dict = {}
        self.models: dict = {}
        self.default_model: str | None = None
        self._collect(base_models_file, list(extra_models_files))
        if default_model:
            self.default_model = default_model
        if self.default_model and self.default_model not in self.models:
            raise models_file.ModelsFileError(f"default_model {self.default_model!r} is not a declared model")

    # -- building -----------------------------------------------------------------------------
    def _collect(self, base_file, extra_files):
        self.host.call_each("register_families", lambda plugin: {"register": lambda cls: self._add_family(cls, plugin)})
        self.host.call_each("register_models", lambda plugin: {"register": lambda src: self._add_models(src, plugin)})
        for path in ([base_file] if base_file else []) + extra_files:
            self._merge(*models_file.load_file(path))

    def _add_family(self, cls, plugin: str):
        if not (isinstance(cls, type) and issubclass(cls, Family) and cls.name):
            raise TypeError(f"{cls!r} is not a Family subclass with a name")
        if cls.name in self.families and self.families[cls.name].plugin != plugin:
            raise ValueError(f"family {cls.name!r} is already provided by plugin {self.families[cls.name].plugin!r}")
        info = self.host.plugins.get(plugin)
        self.families[cls.name] = FamilyEntry(cls, plugin, info.version if info else None)

    def _add_models(self, source, plugin: str):
        if isinstance(source, (str, Path)):
            self._merge(*models_file.load_file(Path(source)))
        else:
            self._merge(*models_file.parse(source, f"plugin {plugin}"))

    def _merge(self, specs: dict, default: str | None):
        """Add one file's models (later files override earlier ones, model by model)."""
        for spec in specs.values():
            entry = self.families.get(spec.family)
            if entry is not None:
                models_file.validate_hparams(spec, entry.cls.hparams_schema)
        self.models.update(specs)
        self.default_model = default or self.default_model

    # -- lookup ---------------------------------------------------------------------------------
    def spec(self, model_id: str | None) -> ModelSpec:
        model_id = model_id or self.default_model
        known = {"known_models": sorted(self.models)}
        if not model_id:
            raise UnknownModel("no model given and no default model is configured", known)
        if model_id not in self.models:
            raise UnknownModel(f"unknown model {model_id!r}", known)
        return self.models[model_id]

    def family(self, spec: ModelSpec) -> FamilyEntry:
        entry = self.families.get(spec.family)
        if entry is None:
            raise FamilyUnavailable(
                f"model {spec.id!r} needs family {spec.family!r}, which no loaded plugin provides",
                {"family": spec.family, "plugins": self.plugin_errors()},
            )
        return entry

    def plugin_errors(self) -> dict:
        return {name: p.error for name, p in self.host.plugins.items() if p.error}
