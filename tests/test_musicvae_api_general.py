"""16-bar, trio and chord MusicVAE models through the HTTP API, their checkpoints in the published layouts
(a TF tar, Magenta.js manifest + shards + config.json) served by a real HTTP server on 127.0.0.1."""

import io

import numpy as np
import pretty_midi
import pytest
from musicvae_support import load, magentajs_files, melody, seq_json, tf_tar
from store_helpers import FileServer

import magenta_api_musicvae


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.store import CheckpointStore
    from magenta_api.testing import make_app

    tmp = tmp_path_factory.mktemp("mvae-general")
    server = FileServer()
    server.add("/tf/hierdec-mel_16bar.tar", tf_tar("hierdec_mel", "hierdec-mel_16bar"))
    trio_cfg = {
        "type": "MusicVAE",
        "dataConverter": {
            "type": "TrioConverter",
            "args": {
                "numSteps": 256,
                "numSegments": 16,
                "melArgs": {"minPitch": 21, "maxPitch": 108},
                "bassArgs": {"minPitch": 21, "maxPitch": 108},
                "drumsArgs": {},
            },
        },
    }
    q2 = {k for k in load("hierdec_trio")[0] if k.endswith("kernel")}
    for path, data in magentajs_files("hierdec_trio", trio_cfg, quantize=q2).items():
        server.add(f"/js/trio/{path}", data)
    chords_cfg = {
        "type": "MusicVAE",
        "dataConverter": {"type": "MelodyConverter", "args": {"numSteps": 32}},
        "chordEncoder": "TriadChordEncoder",
    }
    for path, data in magentajs_files("mel_chords", chords_cfg).items():
        server.add(f"/js/chords/{path}", data)
    server.add("/tf/nade-drums_2bar_reduced.tar", tf_tar("nade_reduced", "nade-drums_2bar_reduced"))
    multi_cfg = {
        "type": "MusicVAE",
        "dataConverter": {
            "type": "MultitrackConverter",
            "args": {"numSteps": 64, "numSegments": 8, "stepsPerQuarter": 24, "numVelocityBins": 8},
        },
    }
    for path, data in magentajs_files("multiperf", multi_cfg, quantize={"encoder/mu/kernel"}).items():
        server.add(f"/js/multitrack/{path}", data)
    groove_cfg = {
        "type": "MusicVAE",
        "dataConverter": {"type": "GrooveConverter", "args": {"numSteps": 32, "humanize": True}},
    }
    for path, data in magentajs_files("groove_2bar", groove_cfg).items():
        server.add(f"/js/groove/{path}", data)

    def model(url, fmt, hparams, limits=None):
        return {
            "family": "musicvae",
            "description": "tiny random weights",
            "hparams": hparams,
            "defaults": {"temperature": 0.5, "num_outputs": 1},
            "limits": limits or {"num_outputs": 8},
            "checkpoint": {"url": url, "sha256": "", "size": None, "format": fmt, "mirrors": []},
        }

    app = make_app(
        tmp,
        store=CheckpointStore(tmp / "models"),  # downloads inside the first request
        plugins=[magenta_api_musicvae],
        models={
            "mel16": model(server.url("/tf/hierdec-mel_16bar.tar"), "tf-tar", {"config": "hierdec-mel_16bar"}),
            "trio": model(server.url("/js/trio"), "magentajs", {}),
            "chords": model(server.url("/js/chords"), "magentajs", {"valid_programs": None}),
            "groove": model(server.url("/tf/hierdec-mel_16bar.tar"), "tf-tar", {"config": "groovae_2bar_humanize"}),
            "nade": model(
                server.url("/tf/nade-drums_2bar_reduced.tar"), "tf-tar", {"config": "nade-drums_2bar_reduced"}
            ),
            "multitrack": model(server.url("/js/multitrack"), "magentajs", {}),
            "humanize-js": {**model(server.url("/js/groove"), "magentajs", {}), "family": "groovae"},
        },
    )
    yield app.test_client()
    server.close()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def test_16bar_sample_and_interpolate(client):
    a = gen(client, model="mel16", seed=3, num_outputs=2)
    assert a.status_code == 200, a.get_json()
    b = gen(client, model="mel16", seed=3, num_outputs=2)
    assert a.get_json()["sequences"] == b.get_json()["sequences"]
    assert all(s["totalTime"] == 32 for s in a.get_json()["sequences"])
    r = gen(client, model="mel16", mode="interpolate", inputs=[melody(16), melody(16, offset=3)], num_outputs=3, seed=1)
    assert r.status_code == 200, r.get_json()
    assert len(r.get_json()["sequences"]) == 3


def test_trio_sample_is_melody_bass_and_drums_on_channel_10(client):
    r = gen(client, model="trio", seed=4, temperature=1.0, format="midi")
    assert r.status_code == 200, r.get_json()
    pm = pretty_midi.PrettyMIDI(io.BytesIO(r.data))
    kinds = sorted((i.is_drum, i.program) for i in pm.instruments if i.notes)
    assert kinds == [(False, 0), (False, 33), (True, 0)]
    j = gen(client, model="trio", seed=4, temperature=1.0).get_json()
    assert {n.get("instrument", 0) for n in j["sequences"][0]["notes"]} == {0, 1, 9}


def test_chords_condition_mel_chords(client):
    r = gen(client, model="chords", seed=2, chords=["C", "G7"])
    assert r.status_code == 200, r.get_json()
    ann = r.get_json()["sequences"][0]["textAnnotations"]
    assert [(a.get("time", 0), a["text"]) for a in ann] == [(0, "C"), (2, "G7")]
    timed = gen(client, model="chords", seed=2, chords=[{"symbol": "C", "step": 0}, {"symbol": "G7", "step": 16}])
    assert timed.get_json()["sequences"] == r.get_json()["sequences"]
    bad = gen(client, model="chords", seed=2, chords=["C", "Q7"])
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_chord"
    assert "Q7" in bad.get_json()["error"]["message"]
    assert gen(client, model="chords", seed=2).get_json()["error"]["code"] == "chords_required"
    assert gen(client, model="chords", chords="C").status_code == 400
    assert gen(client, model="mel16", chords=["C"]).status_code == 422


def test_a_configuration_the_family_cannot_run_is_a_503_that_says_why(client):
    r = gen(client, model="groove", seed=1)
    assert r.status_code == 503
    err = r.get_json()["error"]
    assert err["code"] == "checkpoint_incompatible" and "GrooVAE" in err["details"]["reason"]
    listed = {m["id"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert {"mel16", "trio", "chords", "groove"} <= set(listed)


def test_trio_weights_were_dequantized_close_to_the_originals(client):
    """The q2 layout stores kernels as uint16: the loaded model decodes close to the float weights."""
    r = gen(client, model="trio", mode="decode", temperature=0, z=load("hierdec_trio")[1]["z"][:1].tolist())
    assert r.status_code == 200 and np.size(r.get_json()["sequences"][0]["notes"]) > 0


def test_64_bar_long_form_from_the_16_bar_model(client):
    r = gen(client, model="mel16", seed=9, bars=64, format="midi")
    assert r.status_code == 200, r.get_json()
    pm = pretty_midi.PrettyMIDI(io.BytesIO(r.data))
    assert 127.0 < pm.get_end_time() <= 128.0 + 1e-6
    j = gen(client, model="mel16", seed=9, bars=64).get_json()
    assert j["long_form"]["chunks"] == 4 and j["sequences"][0]["totalTime"] == 128
    assert gen(client, model="mel16", seed=9, bars=64).get_json()["sequences"] == j["sequences"]


def test_nade_multitrack_and_groovae_from_published_layouts(client):
    r = gen(client, model="nade", seed=2, num_outputs=2)
    assert r.status_code == 200, r.get_json()
    assert all(n.get("isDrum") for s in r.get_json()["sequences"] for n in s["notes"])
    r = gen(client, model="multitrack", seed=5, temperature=1.0, format="midi")
    assert r.status_code == 200, r.get_json()
    pm = pretty_midi.PrettyMIDI(io.BytesIO(r.data))
    assert pm.instruments and pm.get_end_time() <= 2.5
    beat = seq_json([(36 if t % 8 == 0 else 42, t, t + 1) for t in range(0, 32, 2)], drums=True)
    r = gen(client, model="humanize-js", mode="humanize", inputs=[beat], seed=1)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["inputs_used"][0]["windows"] == 1
