"""Discovering and isolating plugins: each entry point loads on its own, and one that fails is
listed with its error instead of stopping the service."""

import importlib.metadata
import logging
import traceback
from dataclasses import dataclass, field

import pluggy

from . import hookspecs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "magenta_api"


@dataclass
class PluginInfo:
    name: str
    module: str = ""
    version: str | None = None
    distribution: str | None = None
    hooks: list = field(default_factory=list)
    error: str | None = None

    def as_json(self):
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            "error": self.error,
        }


class PluginHost:
    """A pluggy PluginManager plus what we learned loading each plugin."""

    def __init__(self):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict = {}

    def load_entry_points(self, only: list | None = None) -> None:
        """Load every installed ``magenta_api`` entry point (or only the named ones)."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if only is not None and ep.name not in only:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                version=dist.version if dist else None,
                distribution=dist.metadata["Name"] if dist else None,
            )
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the service down
                info.error = f"{type(exc).__name__}: {exc}"
                logger.error("plugin %s failed to load: %s\n%s", ep.name, info.error, traceback.format_exc())
                self.plugins[ep.name] = info
                continue
            self.register(module, info)

    def register(self, module, info: PluginInfo | None = None) -> None:
        """Register a module as a plugin (what tests and embedding code use directly)."""
        info = info or PluginInfo(
            name=getattr(module, "__name__", repr(module)), module=getattr(module, "__name__", "")
        )
        if self.pm.is_registered(module):
            return
        self.pm.register(module, name=info.name)
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])
        self.plugins[info.name] = info
        logger.debug("plugin %s registered (hooks: %s)", info.name, ", ".join(info.hooks))

    def call_each(self, hook_name: str, make_kwargs):
        """Call one hook plugin by plugin, with ``make_kwargs(plugin_name)`` as its arguments;
        a plugin whose hook raises gets that error recorded and the others still run."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            kwargs = make_kwargs(impl.plugin_name)
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                name = impl.plugin_name
                message = f"{hook_name}: {type(exc).__name__}: {exc}"
                logger.error("plugin %s failed in %s\n%s", name, message, traceback.format_exc())
                info = self.plugins.setdefault(name, PluginInfo(name=name))
                info.error = message if not info.error else f"{info.error}; {message}"
