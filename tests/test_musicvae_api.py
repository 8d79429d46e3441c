"""MusicVAE through the HTTP API: the tiny TF checkpoints served from file:// URLs by the real store."""

import base64
import io
import zipfile

import note_seq
import numpy as np
import pretty_midi
import pytest
from musicvae_support import FIX, drums, melody

import magenta_api_musicvae
from magenta_api.music import sequence_from_json, sequence_to_midi

COMPLEX = FIX / "midi" / "example_complex.mid"  # note-seq testdata: 18 instruments, a tempo change


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    def model(name, converter):
        return {
            "family": "musicvae",
            "description": f"tiny random {converter} model",
            "hparams": {"converter": converter, "steps": 32},
            "defaults": {"temperature": 0.5, "num_outputs": 1},
            "limits": {"num_outputs": 8},
            "checkpoint": {
                "url": (FIX / f"{name}.ckpt").as_uri(),
                "sha256": "",
                "size": None,
                "format": "tf",
                "mirrors": [],
            },
        }

    app = make_app(
        tmp_path_factory.mktemp("mvae"),
        plugins=[magenta_api_musicvae],
        models={"mel-tiny": model("mel_tiny", "melody"), "drums-tiny": model("drums_tiny", "drums")},
    )
    return app.test_client()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def test_model_is_listed_with_capabilities(client):
    body = client.get("/v1/models/mel-tiny").get_json()
    assert body["family"] == "musicvae"
    assert set(body["capabilities"]) == {"sample", "interpolate", "similar", "encode", "decode"}
    assert body["defaults"]["temperature"] == 0.5


def test_sample_is_reproducible_with_a_seed(client):
    a = gen(client, model="mel-tiny", num_outputs=3, seed=42)
    b = gen(client, model="mel-tiny", num_outputs=3, seed=42)
    c = gen(client, model="mel-tiny", num_outputs=3, seed=43)
    assert a.status_code == 200, a.get_json()
    assert a.get_json()["sequences"] == b.get_json()["sequences"]
    assert a.get_json()["sequences"] != c.get_json()["sequences"]
    assert len(a.get_json()["sequences"]) == 3
    assert a.headers["X-Seed"] == "42"


def test_sample_as_midi_opens_with_the_expected_length(client):
    r = client.post("/v1/generate", json={"model": "drums-tiny", "seed": 1, "format": "midi"})
    assert r.status_code == 200 and r.mimetype == "audio/midi"
    pm = pretty_midi.PrettyMIDI(io.BytesIO(r.data))
    assert pm.instruments[0].is_drum
    assert pm.get_end_time() <= 4.0 + 1e-6 and pm.get_end_time() > 2.0
    ns = note_seq.midi_to_note_sequence(r.data)
    assert all(n.is_drum for n in ns.notes)
    several = client.post("/v1/generate", json={"model": "mel-tiny", "seed": 1, "num_outputs": 2, "format": "midi"})
    names = zipfile.ZipFile(io.BytesIO(several.data)).namelist()
    assert len(names) == 2


def test_interpolate_with_midi_and_json_inputs(client):
    a = base64.b64encode(sequence_to_midi(sequence_from_json(melody(2)))).decode()
    r = gen(
        client,
        model="mel-tiny",
        mode="interpolate",
        inputs=[a, melody(2, offset=7)],
        num_outputs=4,
        temperature=0,
        seed=1,
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert len(body["sequences"]) == 4 and body["inputs_used"][0]["windows"] == 1


def test_similar_and_encode_decode_round_trip(client):
    enc = gen(client, model="mel-tiny", mode="encode", inputs=[melody(2)], seed=5).get_json()
    assert np.array(enc["mu"]).shape == (1, 16)
    dec = gen(client, model="mel-tiny", mode="decode", z=enc["mu"], temperature=0).get_json()
    sim = gen(
        client,
        model="mel-tiny",
        mode="similar",
        inputs=[melody(2)],
        similarity=1.0,
        temperature=0,
        num_outputs=2,
        seed=3,
    ).get_json()
    assert sim["sequences"] == [dec["sequences"][0]] * 2
    assert sim["similarity"] == 1.0


def test_unusable_inputs_are_422_and_bad_params_400(client):
    r = gen(client, model="mel-tiny", mode="similar", inputs=[melody(1)])
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert "too short" in err["message"] and err["details"]["field"] == "/inputs/0"
    r = gen(client, model="drums-tiny", mode="encode", inputs=[melody(2)])
    assert r.status_code == 422 and "drum" in r.get_json()["error"]["message"]
    assert gen(client, model="mel-tiny", mode="similar", inputs=[melody(2)], similarity=2).status_code == 400
    assert gen(client, model="mel-tiny", mode="decode", z=[[0.0] * 3]).status_code == 422
    assert gen(client, model="mel-tiny", num_outputs=9).status_code == 422  # over the model's limit
    over = gen(client, model="mel-tiny", mode="decode", z=[[0.0] * 16] * 9)
    assert over.status_code == 422 and over.get_json()["error"]["code"] == "over_limit"
    assert gen(client, model="drums-tiny", mode="interpolate", inputs=[drums(2)], num_outputs=3).status_code == 422


def test_http_multi_track_midi_is_refused_then_chosen(client):
    midi = base64.b64encode(COMPLEX.read_bytes()).decode()
    r = client.post("/v1/generate", json={"model": "mel-tiny", "mode": "encode", "inputs": [midi]})
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert err["code"] == "ambiguous_input" and err["details"]["field"] == "/inputs/0"
    assert len(err["details"]["instruments"]) == 8
    r = client.post(
        "/v1/generate", json={"model": "mel-tiny", "mode": "similar", "primer": midi, "instrument": 4, "seed": 1}
    )
    assert r.status_code == 200, r.get_json()
    used = r.get_json()["inputs_used"][0]
    assert (used["instrument"], used["program"], used["piece"]) == (4, 5, 1) and used["windows"] == 103
    assert used["start_step"] == 112


def test_http_instrument_is_validated(client):
    for bad in (-1, "0", 1.5, [0, "x"]):
        r = client.post(
            "/v1/generate", json={"model": "mel-tiny", "mode": "encode", "inputs": [melody(2)], "instrument": bad}
        )
        assert r.status_code == 400, bad
    r = client.post(
        "/v1/generate", json={"model": "mel-tiny", "mode": "encode", "inputs": [melody(2)], "instrument": [0, None]}
    )
    assert r.status_code == 422 and r.get_json()["error"]["details"]["field"] == "/instrument"
    r = client.post(
        "/v1/generate", json={"model": "mel-tiny", "mode": "encode", "inputs": [melody(2)], "instrument": [None]}
    )
    assert r.status_code == 200 and r.get_json()["inputs_used"][0]["instrument"] == 0
