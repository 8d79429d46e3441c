"""Test harness for the platform and for plugin authors: an app with exactly the plugins and models
you give it, isolated in a temporary folder.

    from magenta_api.testing import make_app
    app = make_app(tmp_path, plugins=[my_plugin_module], models={"my-model": {"family": "mine"}})
    client = app.test_client()
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .app import create_app
from .config import Settings
from .plugins import PluginHost
from .service import Service


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings that keep models and cache under ``tmp_path`` and read no models.yaml of the repo."""
    values: dict[str, Any] = {
        "model_dir": Path(tmp_path) / "models",
        "cache_dir": Path(tmp_path) / "cache",
        "base_models_file": None,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def make_service(
    tmp_path: Path,
    plugins: Iterable = (),
    models: dict | None = None,
    entry_points: Iterable | None = (),
    default_model: str | None = None,
    store=None,
    **settings,
) -> Service:
    """A Service with the given plugin modules registered directly, plus the named installed entry points
    (``None``: all of them; empty: none), and ``models`` written to a models.yaml in ``tmp_path``.
    ``store`` replaces the checkpoint store under ``tmp_path/models``; other keywords are Settings."""
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    extra = list(settings.pop("extra_models_files", []))
    if models is not None:
        path = tmp_path / "models.yaml"
        doc: dict[str, Any] = {"models": models}
        if default_model:
            doc["default_model"] = default_model
        path.write_text(yaml.safe_dump(doc))
        extra.append(path)
    config = make_settings(tmp_path, extra_models_files=extra, **settings)
    host = PluginHost()
    for module in plugins:
        host.register(module)
    if entry_points is None:
        host.load_entry_points()
    elif entry_points:
        host.load_entry_points(list(entry_points))
    return Service.from_settings(config, host=host, store=store)


def make_app(tmp_path: Path, **kwargs):
    """The Flask app over :func:`make_service` (same arguments), in testing mode."""
    service = make_service(tmp_path, **kwargs)
    app = create_app(service.settings, service=service)
    app.testing = True
    return app


def run_family(model, request):
    """What the service runs for a request once it is built: the family's checks, then ``generate``.
    For tests that build a family instance and a :class:`~magenta_api.family.GenerateRequest` directly."""
    type(model).validate(model.spec, request)
    return model.generate(request)
