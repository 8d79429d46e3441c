"""The embedded 16-bar hierarchical melody model through the HTTP API, offline: 16-bar samples and
interpolations, and 64-bar long-form pieces that a seed reproduces (in-process and from a real
``magenta-api serve``)."""

import io

import numpy as np
import pretty_midi
import pytest
import requests
from server_support import running_service

import magenta_api_embedded as emb
import magenta_api_musicvae

MODEL = "embedded-mel_16bar"
SECONDS_PER_BAR = 2.0  # 120 qpm, 4 quarters


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    app = make_app(tmp_path_factory.mktemp("mel16"), offline=True, plugins=[magenta_api_musicvae, emb])
    return app.test_client()


def gen(client, **body):
    return client.post("/v1/generate", json={"model": MODEL, **body})


def _bars_with_notes(seq):
    return {int(n.get("startTime", 0.0) // SECONDS_PER_BAR) for n in seq.get("notes", [])}


def test_listed_ready_as_a_hierarchical_16_bar_model(client):
    listed = {m["id"]: m for m in client.get("/v1/models").get_json()["models"]}
    model = listed[MODEL]
    assert model["state"] == "ready" and model["available"] is True
    assert model["hparams"]["config"] == "hier-mel_16bar" and model["hparams"]["steps"] == 256


def test_sample_is_16_bars_of_melody_and_seeded(client):
    r = gen(client, seed=4, num_outputs=2)
    assert r.status_code == 200, r.get_json()
    seqs = r.get_json()["sequences"]
    assert len(seqs) == 2
    for seq in seqs:
        assert seq["totalTime"] <= 16 * SECONDS_PER_BAR
        assert all(21 <= n["pitch"] <= 108 for n in seq["notes"])
        assert len(_bars_with_notes(seq)) >= 12  # a tune: notes in (nearly) every bar
    notes = [[(n["pitch"], n.get("startTime", 0.0)) for n in s["notes"]] for s in seqs]
    assert notes[0] != notes[1]
    assert gen(client, seed=4, num_outputs=2).get_json()["sequences"] == seqs
    assert gen(client, seed=5, num_outputs=2).get_json()["sequences"] != seqs


def test_interpolates_between_two_16_bar_melodies(client):
    a, b = gen(client, seed=7, num_outputs=2, temperature=0.0001).get_json()["sequences"]
    body = {"mode": "interpolate", "inputs": [a, b], "num_outputs": 5, "seed": 1, "temperature": 0.0001}
    r = gen(client, **body)
    assert r.status_code == 200, r.get_json()
    seqs = r.get_json()["sequences"]
    assert len(seqs) == 5
    assert all(s["totalTime"] <= 16 * SECONDS_PER_BAR and s["notes"] for s in seqs)
    pitches = [tuple(n["pitch"] for n in s["notes"]) for s in seqs]
    assert len(set(pitches)) > 1  # the path moves from one melody to the other
    assert gen(client, **body).get_json()["sequences"] == seqs


def test_64_bar_long_form_is_1024_steps_and_seeded(client):
    r = gen(client, seed=11, bars=64)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["long_form"]["chunks"] == 4 and body["long_form"]["bars"] == 64
    seq = body["sequences"][0]
    assert seq["totalTime"] == 64 * SECONDS_PER_BAR
    assert max(n["endTime"] for n in seq["notes"]) <= 64 * SECONDS_PER_BAR + 1e-9
    bars = _bars_with_notes(seq)
    assert len(bars) >= 48 and max(bars) >= 60  # music all the way through the four chunks
    assert gen(client, seed=11, bars=64).get_json()["sequences"] == body["sequences"]
    assert gen(client, seed=12, bars=64).get_json()["sequences"] != body["sequences"]
    midi = gen(client, seed=11, bars=64, format="midi")
    assert midi.status_code == 200
    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi.data))
    assert 64 * SECONDS_PER_BAR - SECONDS_PER_BAR < pm.get_end_time() <= 64 * SECONDS_PER_BAR + 1e-6


def test_long_form_from_a_real_server_is_identical_for_a_seed(tmp_path):
    """`magenta-api serve` with only the shipped files and no network: the same 64 bars twice."""
    env = {"MODEL_DIR": str(tmp_path / "models"), "CACHE": "off"}
    with running_service(tmp_path, env) as svc:
        body = {"model": MODEL, "seed": 21, "bars": 64, "format": "midi"}
        first = requests.post(svc.base + "/v1/generate", json=body, timeout=120)
        assert first.status_code == 200, first.text
        again = requests.post(svc.base + "/v1/generate", json=body, timeout=120)
        assert again.content == first.content
        pm = pretty_midi.PrettyMIDI(io.BytesIO(first.content))
        steps = np.unique(np.round(np.array([n.start for n in pm.instruments[0].notes]) * 8).astype(int))
        assert steps.max() >= 60 * 16 and steps.max() < 64 * 16  # 16th steps up to the 1024th


def test_shipped_weights_are_trained_and_small():
    """A cheap stand-in for bench/quality.py: tonal 16-bar melodies (random weights: about 0.63 in scale)."""
    from magenta_api.store.readers.native import read_native
    from magenta_api_musicvae.hierarchy import VAEModel

    path = emb.HERE / f"{MODEL}.safetensors"
    assert path.stat().st_size <= 10 * 1024 * 1024
    engine = VAEModel(read_native(path)[0], level_lengths=[16, 16])
    rng = np.random.default_rng(0)
    classes = engine.sample(rng.standard_normal((40, engine.z_size)).astype(np.float32), 256, 0.5, rng)[..., 0]
    major = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
    in_scale = []
    for row in classes:
        pitches = row[row >= 2] - 2 + 21
        h = np.bincount(pitches % 12, minlength=12)
        in_scale.append(max((h * np.roll(major, k)).sum() for k in range(12)) / max(len(pitches), 1))
    assert np.mean(in_scale) > 0.85
    assert np.mean([(row >= 2).sum() for row in classes]) > 16 * 3  # notes, not held silence
