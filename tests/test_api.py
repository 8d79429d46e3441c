"""The HTTP API through Flask's test client, with the toy plugin registered directly."""

import io
import json
import zipfile

import note_seq
import pytest


def error_of(resp):
    body = resp.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]
    return body["error"]


def test_generate_returns_sequences_and_notes(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "seed": 3, "num_outputs": 2, "length": 6})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["seed"] == 3 and body["model"] == "toy-a" and body["mode"] == "sample"
    assert len(body["sequences"]) == 2
    assert body["notes"] == body["sequences"][0]["notes"]
    assert len(body["notes"]) == 6
    note = body["notes"][1]
    assert {"pitch", "startTime", "endTime", "velocity"} <= set(note)  # protobuf JSON mapping: camelCase
    assert 60 <= note["pitch"] < 72
    assert "startTime" not in body["notes"][0]  # proto3 JSON omits zero values, as Magenta.js does
    assert body["note_count"] == 6


def test_seed_sequence_payload_from_the_seed_document_is_accepted(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "seed_sequence": [0, 1, 2, 3]})
    assert resp.status_code == 200
    assert resp.get_json()["seed"] == [0, 1, 2, 3]
    assert "notes" in resp.get_json()


def test_same_seed_same_bytes_and_cache_hit(client):
    payload = {"model": "toy-a", "seed": 42, "length": 16}
    first = client.post("/v1/generate", json=payload)
    second = client.post("/v1/generate", json=payload)
    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"
    assert first.data == second.data
    other = client.post("/v1/generate", json={**payload, "seed": 43})
    assert other.headers["X-Cache"] == "MISS"
    assert other.data != first.data


def test_same_seed_same_bytes_without_cache(tmp_path):
    import toy_plugin

    from magenta_api.testing import make_app

    app = make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), cache_enabled=False)
    c = app.test_client()
    a = c.post("/v1/generate", json={"model": "toy-a", "seed": 9})
    b = c.post("/v1/generate", json={"model": "toy-a", "seed": 9})
    assert a.data == b.data
    assert "X-Cache" not in a.headers and "X-Cache" not in b.headers  # no cache was consulted
    assert not (tmp_path / "cache").exists()


def test_unseeded_request_echoes_a_seed_that_reproduces_it(client):
    first = client.post("/v1/generate", json={"model": "toy-a", "length": 12})
    seed = first.get_json()["seed"]
    assert isinstance(seed, int) and seed < 2**53
    again = client.post("/v1/generate", json={"model": "toy-a", "length": 12, "seed": seed})
    assert again.get_json()["sequences"] == first.get_json()["sequences"]


def test_request_id_is_echoed(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "seed": 1}, headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = client.get("/healthz")
    assert len(resp.headers["X-Request-ID"]) == 32


def test_400_malformed_json(client):
    resp = client.post("/v1/generate", data=b'{"model": ', content_type="application/json")
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "malformed_json"


def test_400_schema_violation_names_the_field(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "num_outputs": "two"})
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["details"]["field"] == "/num_outputs"
    resp = client.post("/v1/generate", json={"model": "toy-a", "seed_sequence": [1, -5]})
    assert resp.status_code == 400 and error_of(resp)["details"]["field"].startswith("/seed_sequence")


def test_400_plugin_parameter_violation(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "explode": "yes"})
    assert resp.status_code == 400
    assert error_of(resp)["details"]["field"] == "/explode"


def test_404_unknown_model_lists_known(client):
    resp = client.post("/v1/generate", json={"model": "nope"})
    assert resp.status_code == 404
    err = error_of(resp)
    assert err["details"]["known_models"] == ["toy-a", "toy-b"]
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/v1/no-such-route").status_code == 404


def test_413_body_over_limit(tmp_path):
    import toy_plugin

    from magenta_api.testing import make_app

    app = make_app(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), max_body_bytes=1000)
    resp = app.test_client().post("/v1/generate", json={"model": "toy-a", "primer": [60] * 2000})
    assert resp.status_code == 413
    assert error_of(resp)["code"] == "payload_too_large"


def test_422_mode_limit_and_primer(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "mode": "interpolate"})
    assert resp.status_code == 422
    assert error_of(resp)["details"]["supported"] == ["sample", "continue"]
    resp = client.post("/v1/generate", json={"model": "toy-a", "num_outputs": 5})
    assert resp.status_code == 422 and error_of(resp)["details"]["limit"] == 4
    resp = client.post("/v1/generate", json={"model": "toy-a", "length": 65})
    assert resp.status_code == 422 and error_of(resp)["details"]["field"] == "/length"
    resp = client.post("/v1/generate", json={"model": "toy-b"})  # default mode continue, no primer
    assert resp.status_code == 422 and "primer" in error_of(resp)["message"]


def test_500_is_safe(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "explode": True})
    assert resp.status_code == 500
    err = error_of(resp)
    assert "secret" not in json.dumps(err) and "Traceback" not in resp.get_data(as_text=True)
    assert "request id" in err["message"]


def test_midi_output_single_and_zip(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "seed": 5, "length": 8, "format": "midi"})
    assert resp.status_code == 200 and resp.mimetype == "audio/midi"
    seq = note_seq.midi_to_note_sequence(resp.data)
    assert len(seq.notes) == 8
    assert seq.total_time == pytest.approx(8 * 0.125, abs=1e-3)
    resp = client.post(
        "/v1/generate", json={"model": "toy-a", "seed": 5, "num_outputs": 3}, headers={"Accept": "audio/midi"}
    )
    assert resp.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(resp.data)).namelist()
    assert len(names) == 3 and all(n.endswith(".mid") for n in names)


def test_models_listing_and_detail(client):
    models = client.get("/v1/models").get_json()["models"]
    ids = [m["id"] for m in models]
    assert ids == ["toy-a", "toy-b"]
    detail = client.get("/v1/models/toy-b").get_json()
    assert detail["family"] == "toy" and detail["plugin"] == "toy_plugin"
    assert detail["capabilities"] == ["sample", "continue"]
    assert detail["default_mode"] == "continue" and detail["defaults"]["length"] == 8
    assert detail["state"] == "ready" and detail["loaded"] is False
    assert detail["parameters"]["allOf"][1]["properties"]["explode"] == {"type": "boolean"}
    client.post("/v1/generate", json={"model": "toy-a", "seed": 1})
    assert client.get("/v1/models/toy-a").get_json()["loaded"] is True


def test_plugins_health_ready(client):
    plugins = client.get("/v1/plugins").get_json()["plugins"]
    assert [p["name"] for p in plugins] == ["toy_plugin"]
    assert plugins[0]["hooks"] == ["register_families"] and plugins[0]["error"] is None
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200


def test_openapi_matches_routes(toy_app):
    doc = toy_app.test_client().get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    routes = {
        (m.lower(), r.rule.replace("<", "{").replace(">", "}"))
        for r in toy_app.url_map.iter_rules()
        if r.endpoint not in ("static", "studio.static", "studio.page") and not r.websocket  # JSON operations
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes
    gen = doc["paths"]["/v1/generate"]["post"]
    assert {"400", "404", "413", "422", "503"} <= set(gen["responses"])
    ref = doc["components"]["schemas"]["GenerateRequest"]["properties"]["seed"]["$ref"]
    assert ref.split("/")[-1] in doc["components"]["schemas"]


def test_400_unknown_field_is_not_ignored(client):
    resp = client.post("/v1/generate", json={"model": "toy-a", "temprature": 0.5})
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["code"] == "unknown_field" and err["details"]["field"] == "/temprature"
    assert "temperature" in err["details"]["accepted"] and "explode" in err["details"]["accepted"]
