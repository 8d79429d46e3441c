"""The layering rules: only the web layer knows HTTP, every domain error has a status and an exit code,
plugin authors import from the package root."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import toy_plugin

from magenta_api import app as web
from magenta_api import cli
from magenta_api.errors import MagentaApiError
from magenta_api.testing import make_app

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "magenta_api"
WEB_MODULES = {"app.py", "api.py", "openapi.py", "wsgi.py", "gunicorn_worker.py", "studio.py", "streaming.py"}


def imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_web_layer_imports_flask_or_werkzeug():
    offenders = [
        str(p.relative_to(ROOT))
        for top in (CORE, ROOT / "plugins")
        for p in top.rglob("*.py")
        if p.name not in WEB_MODULES or p.parent != CORE
        if imported_modules(p) & {"flask", "werkzeug"}
    ]
    assert offenders == []


def test_store_and_registry_import_no_web_module():
    below = list((CORE / "store").rglob("*.py")) + [
        CORE / n for n in ("registry.py", "loader.py", "service.py", "request_builder.py", "family.py")
    ]
    for path in below:
        tree = ast.parse(path.read_text())
        relative = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and n.module}
        assert not relative & {"app", "api", "openapi"}, path
        class_attrs = {
            t.id
            for c in ast.walk(tree)
            if isinstance(c, ast.ClassDef)
            for n in c.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        assert "status" not in class_attrs, path  # no error class carries an HTTP status


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_domain_error_has_a_status_and_an_exit_code():
    import magenta_api.models_file
    import magenta_api.store  # noqa: F401  (defines the store's errors)

    errors = [c for c in _all_subclasses(MagentaApiError) if c.__module__.startswith("magenta_api")]
    assert len(errors) >= 8
    for cls in errors:
        exc = cls("x")
        assert not hasattr(exc, "status"), cls
        assert cli.exit_code_of(exc) in (2, 3, 4), cls
        if cls.__name__ != "ModelsFileError":  # a start-up error, never raised by a request
            assert web.status_of(exc) in (400, 404, 406, 413, 422, 503), cls


def test_a_family_that_cannot_build_its_model_is_a_503_not_a_500(tmp_path):
    client = make_app(tmp_path, plugins=[toy_plugin], models={"broken": {"family": "unbuildable"}}).test_client()
    resp = client.post("/v1/generate", json={"model": "broken"})
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert err["code"] == "model_invalid" and "weights have 2" in err["message"]
    assert err["details"]["model"] == "broken"


def test_plugin_api_is_importable_from_the_package_root():
    code = (
        "from magenta_api import hookimpl, Family, ModelSpec, GenerateRequest, GenerateResult, Unprocessable\n"
        "assert hookimpl.project_name == 'magenta_api' and issubclass(Unprocessable, Exception)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    example = ROOT / "examples" / "magenta-api-markov" / "magenta_api_markov"
    for path in list(example.glob("*.py")) + list((ROOT / "plugins").glob("*/__init__.py")):
        text = path.read_text()
        assert "magenta_api.hookspecs" not in text and "magenta_api.family" not in text, path


@pytest.mark.parametrize(
    "argv, code, text",
    [
        (["generate", "no-such-model"], 2, "[unknown_model]"),
        (["generate", "markov-melody", "--params", "[1"], 2, "--params is not a JSON object"),
        (["fetch", "no-such-model"], 2, "no-such-model: unknown model"),
    ],
)
def test_cli_maps_domain_errors_to_exit_codes_without_a_traceback(plugin_site, tmp_path, argv, code, text):
    from test_cli import run

    out = run(argv, plugin_site, tmp_path, MAGENTA_API_LOAD_PLUGINS="markov")  # not the broken test plugins
    assert out.returncode == code, out.stderr
    assert text in out.stderr
    assert "Traceback" not in out.stderr
