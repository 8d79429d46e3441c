"""Inputs a client can send and faults an operator meets: each answers music or a clear JSON error, never a
500 (issue 16's list, through the real app with the embedded models)."""

import json
import math
import os
from pathlib import Path

import pytest

from magenta_api.testing import make_app

MEL = "embedded-mel_2bar"
RNN = "embedded-basic_rnn"
BUILT_IN = ["musicvae", "melody_rnn", "embedded"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return make_app(tmp_path_factory.mktemp("hard"), entry_points=BUILT_IN)


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/generate", data=data, content_type="application/json", **kw)


def strict_json(resp):
    """The body parsed as strict JSON: a bare NaN or Infinity fails."""

    def refuse(name):
        raise AssertionError(f"{name} in the body")

    return json.loads(resp.data, parse_constant=refuse)


def error(resp, status, code=None):
    assert resp.status_code == status, resp.data[:400]
    err = strict_json(resp)["error"]
    assert set(err) == {"code", "message", "details", "request_id"}
    if code:
        assert err["code"] == code, err
    return err


@pytest.mark.parametrize(
    "seed, same_as",
    [
        ({"seed": 0.0}, {"seed": 0}),
        ({"seed": 2.0}, {"seed": 2}),
        ({"seed": 1e20}, {"seed": 10**20}),
        ({"seed_sequence": [1e20]}, {"seed_sequence": [10**20]}),
        ({"seed": [1.0, 2]}, {"seed": [1, 2]}),
    ],
)
def test_integer_valued_float_seeds_are_integers(client, seed, same_as):
    a = post(client, {"model": MEL, **seed})
    b = post(client, {"model": MEL, **same_as})
    assert a.status_code == b.status_code == 200, a.data[:300]
    assert strict_json(a)["sequences"] == strict_json(b)["sequences"]
    assert strict_json(a)["seed"] == next(iter(same_as.values()))


def test_a_seed_past_128_bits_is_a_400(client):
    error(post(client, {"model": MEL, "seed": 2**130}), 400, "schema_violation")


@pytest.mark.parametrize("where", ["body", "primer"])
def test_json_nested_10000_deep_is_413(client, where):
    deep = "[" * 10_000 + "]" * 10_000
    body = deep if where == "body" else f'{{"model": "{RNN}", "primer": {deep}}}'
    error(post(client, body), 413, "too_deeply_nested")
    moderate = "[" * 40 + "]" * 40  # parses, but deeper than any request needs
    error(post(client, f'{{"model": "{RNN}", "primer": {moderate}}}'), 413, "too_deeply_nested")


@pytest.mark.parametrize("qpm", ["1e-3", "1e-300", "NaN", "Infinity", "-Infinity"])
def test_qpm_midi_cannot_carry_is_a_400(client, qpm):
    body = f'{{"model": "{MEL}", "seed": 1, "format": "midi", "qpm": {qpm}}}'
    error(post(client, body), 400)


@pytest.mark.parametrize("temperature", ["NaN", "1e-300", "1e-9"])
def test_temperatures_that_would_overflow_are_refused(client, temperature):
    err = error(post(client, f'{{"model": "{MEL}", "seed": 1, "temperature": {temperature}}}'), 400)
    assert err["details"]["field"] in ("", "/temperature")


def test_tiny_but_usable_temperature_makes_notes(client):
    resp = post(client, {"model": MEL, "seed": 1, "temperature": 0.0001})
    assert resp.status_code == 200 and strict_json(resp)["notes"]


def _primer(note):
    return {"notes": [{"pitch": 60, "startTime": 0, "endTime": 0.5, "velocity": 80}, note], "totalTime": 1.0}


@pytest.mark.parametrize(
    "note",
    [
        {"pitch": 300, "startTime": 0.5, "endTime": 1, "velocity": 80},
        {"pitch": -7, "startTime": 0.5, "endTime": 1, "velocity": 80},
        {"pitch": 62, "startTime": 0.5, "endTime": 1e308, "velocity": 80},
        {"pitch": 62, "startTime": -1, "endTime": 1, "velocity": 80},
        {"pitch": 62, "startTime": 0.5, "endTime": 1, "velocity": 900},
    ],
)
def test_noteseqence_values_midi_cannot_hold_are_a_422(client, note):
    err = error(post(client, {"model": RNN, "primer": _primer(note), "length": 32}), 422, "invalid_sequence")
    assert err["details"]["field"] == "/primer"


def test_inputs_over_the_limit_are_refused_before_any_work(client):
    melody = {"notes": [{"pitch": 60, "startTime": 0, "endTime": 4}]}  # small, so the body stays under 2 MB
    err = error(post(client, {"model": MEL, "mode": "encode", "inputs": [melody] * 3000}), 422, "over_limit")
    assert err["details"] == {"field": "/inputs", "limit": 64}
    err = error(post(client, {"model": RNN, "primer": [60] * 5000, "length": 5001}), 422, "over_limit")
    assert err["details"]["field"] == "/primer" and err["details"]["limit"] == 4096


def test_magentajs_int64_objects_are_numbers(client):
    """Magenta.js's toObject writes quantizedStartStep as a protobuf.js Long."""

    def long(v):
        return {"low": v, "high": 0, "unsigned": False}

    seq = {
        "notes": [
            {"pitch": 60 + i, "velocity": 100, "quantizedStartStep": long(2 * i), "quantizedEndStep": long(2 * i + 2)}
            for i in range(4)
        ],
        "quantizationInfo": {"stepsPerQuarter": 4},
        "totalQuantizedSteps": long(8),
        "tempos": [{"qpm": 120}],
    }
    resp = post(client, {"model": RNN, "primer": seq, "length": 32, "seed": 3})
    assert resp.status_code == 200, resp.data[:300]
    assert strict_json(resp)["primer_steps"] == 8


def test_405_says_which_methods_are_allowed(client):
    resp = client.get("/v1/generate")
    err = error(resp, 405, "method_not_allowed")
    assert err["details"]["path"] == "/v1/generate"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}


def test_x_cache_only_when_the_cache_was_consulted(client, tmp_path):
    assert "X-Cache" not in post(client, {"model": MEL}).headers  # unseeded: not cached
    assert post(client, {"model": MEL, "seed": 99}).headers["X-Cache"] in ("MISS", "HIT")
    off = make_app(tmp_path, entry_points=BUILT_IN, cache_enabled=False).test_client()
    assert "X-Cache" not in post(off, {"model": MEL, "seed": 99}).headers


@pytest.mark.parametrize("accept", ["audio/mpeg", "video/mp4, audio/aac;q=0.5"])
def test_an_accept_header_the_service_cannot_answer_is_406(client, accept):
    err = error(post(client, {"model": MEL, "seed": 1}, headers={"Accept": accept}), 406, "not_acceptable")
    assert "audio/midi" in err["details"]["available"]


@pytest.mark.parametrize(
    "accept, content_type",
    [
        ("audio/midi", "audio/midi"),
        ("*/*", "application/json"),
        ("application/json, audio/midi;q=0.1", "application/json"),
    ],
)
def test_accept_picks_the_format(client, accept, content_type):
    resp = post(client, {"model": MEL, "seed": 1}, headers={"Accept": accept})
    assert resp.status_code == 200 and resp.mimetype == content_type


def test_every_503_says_when_to_retry(tmp_path):
    models = {
        "gone": {"family": "musicvae", "checkpoint": {"url": "https://example.invalid/x.tar", "format": "tf-tar"}}
    }
    client = make_app(tmp_path, entry_points=BUILT_IN, models=models, offline=True).test_client()
    resp = post(client, {"model": "gone"})
    error(resp, 503, "checkpoint_unavailable")
    assert int(resp.headers["Retry-After"]) > 0


def full_disk_cache(folder: Path) -> Path:
    """A cache folder whose database is /dev/full: every write fails with ENOSPC, as on a full disk."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/full", folder / "cache.db")
    return folder


def test_a_full_cache_disk_degrades_the_service_but_never_fails_a_request(tmp_path):
    cache_dir = full_disk_cache(tmp_path / "full-cache")
    client = make_app(tmp_path, entry_points=BUILT_IN, cache_dir=cache_dir).test_client()  # boots on it
    first = post(client, {"model": MEL, "seed": 5})
    again = post(client, {"model": MEL, "seed": 5})
    assert first.status_code == again.status_code == 200
    assert first.data == again.data and strict_json(first)["notes"]
    ready = client.get("/readyz")
    body = strict_json(ready)
    assert ready.status_code == 200  # the models can serve
    assert body["status"] == "degraded" and body["degraded"] == ["cache"]
    assert body["cache"]["state"] == "degraded" and body["cache"]["errors"] >= 1
    assert "full" in body["cache"]["last_error"] or "disk" in body["cache"]["last_error"]


def test_a_working_cache_is_ready_not_degraded(client):
    post(client, {"model": MEL, "seed": 8})
    body = strict_json(client.get("/readyz"))
    assert body["status"] == "ready" and body["cache"]["state"] == "ok" and body["degraded"] == []


def test_listing_models_creates_no_cache_folder(tmp_path):
    client = make_app(tmp_path, entry_points=BUILT_IN).test_client()
    assert client.get("/v1/models").status_code == 200
    assert not (tmp_path / "cache").exists()


def test_nothing_in_a_json_answer_is_not_json(client):
    body = strict_json(post(client, {"model": MEL, "seed": 1, "temperature": 0}))
    assert all(math.isfinite(n.get("startTime", 0.0)) for n in body["notes"])


def test_cors_is_off_by_default_and_names_only_the_configured_origins(client, tmp_path):
    origin = {"Origin": "https://studio.example"}
    assert "Access-Control-Allow-Origin" not in post(client, {"model": MEL}, headers=origin).headers
    allowed = make_app(tmp_path, entry_points=BUILT_IN, cors_origins=["https://studio.example"]).test_client()
    preflight = allowed.options(
        "/v1/generate",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    resp = post(allowed, {"model": MEL, "seed": 1}, headers=origin)
    assert resp.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    assert "X-Seed" in resp.headers["Access-Control-Expose-Headers"]
    other = post(allowed, {"model": MEL}, headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    "body",
    [
        {"model": "slow-rnn", "primer": [60], "length": 4000, "seed": 1, "beam_size": 4, "branch_factor": 4},
        {"model": "slow-rnn", "primer": [60], "length": 4000, "seed": 1},
        {"model": "slow-vae", "num_outputs": 32, "seed": 1},
        {"model": "slow-vae", "num_outputs": 1, "seed": 1},
    ],
)
def test_a_generation_past_its_time_limit_stops_with_a_422(tmp_path, body):
    import time

    models = {
        "slow-rnn": {
            "family": "melody_rnn",
            "hparams": {"config": "basic_rnn"},
            "limits": {"seconds": 0.05},
            "checkpoint": {"url": "embedded-basic_rnn.safetensors", "format": "native"},
        },
        "slow-vae": {
            "family": "musicvae",
            "limits": {"seconds": 1e-6},
            "checkpoint": {"url": "embedded-mel_2bar.safetensors", "format": "native"},
        },
    }
    import magenta_api_embedded

    for m in models.values():
        m["checkpoint"]["url"] = (magenta_api_embedded.HERE / m["checkpoint"]["url"]).as_uri()
    client = make_app(tmp_path, entry_points=BUILT_IN, models=models).test_client()
    started = time.monotonic()
    err = error(post(client, body), 422, "time_limit_exceeded")
    assert time.monotonic() - started < 5  # stopped, not finished (4000 steps of beam 16 take far longer)
    assert err["details"]["limit_seconds"] == models[body["model"]]["limits"]["seconds"]
