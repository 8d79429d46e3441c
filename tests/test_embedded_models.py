"""The shipped embedded models: files match models.yaml, they are served offline through the real
plugins and store (also as the default model), and the weights are trained, not random."""

import hashlib

import numpy as np
import pytest
import yaml

import magenta_api_embedded as emb
import magenta_api_melody_rnn
import magenta_api_musicvae

IDS = ("embedded-mel_2bar", "embedded-drums_2bar", "embedded-basic_rnn", "embedded-mel_16bar")


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(emb.MODELS_FILE.read_text())


def test_models_yaml_checksums_and_sizes_match_the_shipped_files(doc):
    assert doc["default_model"] == "embedded-mel_2bar"
    assert set(doc["models"]) == set(IDS)
    total = 0
    for model_id, entry in doc["models"].items():
        ck = entry["checkpoint"]
        path = emb.HERE / ck["url"]
        assert ck["format"] == "native"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ck["sha256"], model_id
        assert path.stat().st_size == ck["size"], model_id
        total += ck["size"]
        assert ck["size"] <= 10 * 1024 * 1024, model_id
    assert total <= 15 * 1024 * 1024


def test_every_model_has_a_card_with_data_licence_and_evaluation():
    cards = emb.model_cards()
    assert set(cards) == set(IDS)
    for model_id, path in cards.items():
        text = path.read_text()
        for needle in ("## Data and licence", "## Training", "## Quality evaluation", "Apache-2.0", "steps"):
            assert needle in text, (model_id, needle)
        assert "random weights on every metric: **yes**" in text, model_id


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    app = make_app(
        tmp_path_factory.mktemp("embedded"), offline=True, plugins=[magenta_api_musicvae, magenta_api_melody_rnn, emb]
    )
    return app.test_client()


def _notes(body):
    return [n for s in body["sequences"] for n in s.get("notes", [])]


def test_models_are_listed_ready_with_a_default(client):
    body = client.get("/v1/models").get_json()
    assert body["default_model"] == "embedded-mel_2bar"
    listed = {m["id"]: m for m in body["models"]}
    for model_id in IDS:
        assert listed[model_id]["state"] == "ready", listed[model_id]
        assert listed[model_id]["available"] is True


def test_generate_without_a_model_uses_the_embedded_default(client):
    r = client.post("/v1/generate", json={"seed": 3, "num_outputs": 2})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert len(body["sequences"]) == 2 and _notes(body)
    assert all(21 <= n["pitch"] <= 108 for n in _notes(body))


def test_each_embedded_model_makes_music(client):
    drums = client.post("/v1/generate", json={"model": "embedded-drums_2bar", "seed": 1}).get_json()
    assert _notes(drums) and all(n.get("isDrum") for n in _notes(drums))
    primer = [67, -2, 71, -2, 74, -2, 71, -2]
    r = client.post("/v1/generate", json={"model": "embedded-basic_rnn", "primer": primer, "length": 48, "seed": 2})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert len(body["events"][0]) == 48 and body["events"][0][:8] == primer
    assert sum(e >= 0 for e in body["events"][0][8:]) >= 4  # it continues with notes


def test_embedded_melody_model_interpolates_and_does_similar(client):
    a = client.post("/v1/generate", json={"seed": 5, "temperature": 0.0001}).get_json()["sequences"][0]
    b = client.post("/v1/generate", json={"seed": 6, "temperature": 0.0001}).get_json()["sequences"][0]
    r = client.post("/v1/generate", json={"mode": "interpolate", "inputs": [a, b], "num_outputs": 4, "seed": 1})
    assert r.status_code == 200, r.get_json()
    assert len(r.get_json()["sequences"]) == 4
    r = client.post(
        "/v1/generate", json={"mode": "similar", "inputs": [a], "num_outputs": 3, "similarity": 0.9, "seed": 1}
    )
    assert r.status_code == 200, r.get_json()
    assert len(r.get_json()["sequences"]) == 3


def _in_scale(classes, min_pitch):
    vals = []
    major = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
    for row in classes:
        p = row[row >= 2] - 2 + min_pitch
        if len(p):
            h = np.bincount(p % 12, minlength=12)
            vals.append(max((h * np.roll(major, k)).sum() for k in range(12)) / len(p))
    return float(np.mean(vals))


def test_shipped_weights_are_trained():
    """Cheap stand-ins for bench/quality.py: tonal melodies, backbeats in the drums."""
    from magenta_api.store.readers.native import read_native
    from magenta_api_musicvae.engine import MusicVAEEngine

    rng = np.random.default_rng(0)
    mel = MusicVAEEngine(read_native(emb.HERE / "embedded-mel_2bar.safetensors")[0])
    classes = mel.sample(rng.standard_normal((200, mel.z_size)).astype(np.float32), 32, 1.0, rng)
    assert _in_scale(classes, 21) > 0.85  # random weights: about 0.6
    drums = MusicVAEEngine(read_native(emb.HERE / "embedded-drums_2bar.safetensors")[0])
    labels = drums.sample(rng.standard_normal((200, drums.z_size)).astype(np.float32), 32, 1.0, rng)
    snare = (labels >> 1) & 1
    backbeat = snare[:, [4, 12, 20, 28]].mean()
    offbeat = snare[:, [1, 3, 5, 7, 9, 11, 13, 15]].mean()
    assert backbeat > 0.5 and backbeat > 3 * offbeat
