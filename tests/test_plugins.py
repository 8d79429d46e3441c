"""Plugins load through entry points, one by one: installed ones appear, broken ones are isolated."""

import pytest

from magenta_api.testing import make_app


@pytest.fixture
def site_app(tmp_path, plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    return make_app(tmp_path, entry_points=None)


def test_installed_example_plugin_appears_and_generates(site_app):
    client = site_app.test_client()
    models = {m["id"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert models["markov-melody"]["plugin"] == "markov"
    assert models["markov-melody"]["state"] == "ready"
    resp = client.post("/v1/generate", json={"model": "markov-melody", "seed": 11, "length": 32})
    assert resp.status_code == 200
    notes = resp.get_json()["notes"]
    assert notes and all(55 <= n["pitch"] <= 90 for n in notes)
    primer = {
        "notes": [
            {"pitch": p, "startTime": i * 0.25, "endTime": (i + 1) * 0.25, "velocity": 80}
            for i, p in enumerate([60, 62, 64, 65, 67])
        ],
        "totalTime": 1.25,
    }
    resp = client.post("/v1/generate", json={"model": "markov-melody", "mode": "continue", "primer": primer, "seed": 1})
    assert resp.status_code == 200
    notes = resp.get_json()["notes"]
    assert [n["pitch"] for n in notes[:5]] == [60, 62, 64, 65, 67]  # the output starts with the primer
    assert all(n.get("startTime", 0) >= 1.25 - 1e-9 for n in notes[5:])


def test_example_plugin_continues_an_event_list_primer_as_the_readme_sends_it(site_app):
    client = site_app.test_client()
    primer = [60, -2, 62, -2, 64, -2, 67, -2]
    resp = client.post(
        "/v1/generate", json={"model": "markov-melody", "mode": "continue", "primer": primer, "length": 24, "seed": 1}
    )
    assert resp.status_code == 200, resp.get_json()
    notes = resp.get_json()["notes"]
    assert [n["pitch"] for n in notes[:4]] == [60, 62, 64, 67]
    assert notes[3]["endTime"] == pytest.approx(1.0) and len(notes) > 4
    too_long = client.post(
        "/v1/generate", json={"model": "markov-melody", "mode": "continue", "primer": primer, "length": 8}
    )
    assert too_long.status_code == 422 and too_long.get_json()["error"]["details"]["primer_steps"] == 8


def test_broken_plugins_are_listed_and_do_not_stop_the_service(site_app):
    client = site_app.test_client()
    plugins = {p["name"]: p for p in client.get("/v1/plugins").get_json()["plugins"]}
    assert "needs a module that is not installed" in plugins["broken_import"]["error"]
    assert "boom while registering" in plugins["broken_hook"]["error"]
    assert plugins["broken_hook"]["version"] == "0.0.2"
    assert plugins["markov"]["error"] is None
    assert plugins["markov"]["hooks"] == ["register_families", "register_models"]
    assert client.get("/healthz").status_code == 200


def test_load_plugins_setting_limits_what_loads(tmp_path, plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    app = make_app(tmp_path, entry_points=["markov"])
    plugins = [p["name"] for p in app.test_client().get("/v1/plugins").get_json()["plugins"]]
    assert plugins == ["markov"]


def test_plugin_models_file_error_is_isolated(tmp_path):
    """A plugin whose declarations are invalid loses them; other plugins' models stay."""
    import toy_plugin

    from magenta_api.hookspecs import hookimpl

    class BadDeclarations:
        @staticmethod
        @hookimpl
        def register_models(register):
            register({"models": {"bad": {"family": "toy", "hparams": {"low": "x"}}}})

    app = make_app(tmp_path, plugins=[toy_plugin, BadDeclarations], models=dict(toy_plugin.TOY_MODELS))
    client = app.test_client()
    ids = [m["id"] for m in client.get("/v1/models").get_json()["models"]]
    assert "bad" not in ids and "toy-a" in ids
    errors = {p["name"]: p["error"] for p in client.get("/v1/plugins").get_json()["plugins"]}
    assert any(e and "hparams.low" in e and "'bad'" in e for e in errors.values())
