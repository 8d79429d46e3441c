"""MelodyRNN / DrumsRNN through the HTTP API: magenta-written .mag bundles served from file:// URLs
by the real checkpoint store."""

import base64
import io
import json

import note_seq
import numpy as np
import pretty_midi
import pytest
from google.protobuf import json_format
from melody_rnn_support import FIX, reference
from note_seq import Melody

import magenta_api_melody_rnn
from magenta_api.music import sequence_to_midi

MODELS = {"basic": "basic_rnn", "attention": "attention_rnn", "drums": "drum_kit_rnn"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    def model(name):
        return {
            "family": "melody_rnn",
            "description": f"tiny random {name}",
            "hparams": {"config": name},
            "defaults": {"temperature": 1.0, "length": 40, "qpm": 120, "num_outputs": 1},
            "limits": {"num_outputs": 8, "length": 256},
            "checkpoint": {
                "url": (FIX / name / f"{name}.mag").as_uri(),
                "sha256": "",
                "size": None,
                "format": "mag",
                "mirrors": [],
            },
        }

    app = make_app(
        tmp_path_factory.mktemp("melody_rnn"),
        plugins=[magenta_api_melody_rnn],
        models={mid: model(name) for mid, name in MODELS.items()},
    )
    return app.test_client()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def test_models_are_listed_with_continue_as_default(client):
    body = client.get("/v1/models/attention").get_json()
    assert body["family"] == "melody_rnn"
    assert set(body["capabilities"]) == {"continue", "sample"} and body["default_mode"] == "continue"


@pytest.mark.parametrize("mid", ["basic", "attention"])
def test_continuation_from_each_primer_form_is_magentas(client, mid):
    name = MODELS[mid]
    entry = reference(name)["primers"]["twinkle"]
    seq = Melody(entry["primer"]).to_sequence(qpm=120)
    forms = [entry["primer"], json_format.MessageToDict(seq), base64.b64encode(sequence_to_midi(seq)).decode()]
    outs = []
    for primer in forms:
        r = gen(client, model=mid, primer=primer, temperature=0, length=40, seed=1, start_step=len(entry["primer"]))
        assert r.status_code == 200, r.get_json()
        outs.append(r.get_json())
    # Started right after the primer: magenta's generate_melody on the event list.
    assert outs[0]["events"][0] == entry["greedy"]
    assert outs[0]["sequences"] == outs[1]["sequences"] == outs[2]["sequences"]
    # By default all three start where MelodyRnnSequenceGenerator does: one step later.
    assert {gen(client, model=mid, primer=p, temperature=0).get_json()["start_step"] for p in forms} == {17}


def test_drums_continuation_and_midi_output(client):
    entry = reference("drum_kit_rnn")["primers"]["beat"]
    r = gen(client, model="drums", primer=entry["primer"], temperature=0, length=40, format="midi")
    assert r.status_code == 200 and r.mimetype == "audio/midi"
    pm = pretty_midi.PrettyMIDI(io.BytesIO(r.data))
    assert pm.instruments[0].is_drum
    ns = note_seq.midi_to_note_sequence(r.data)
    assert ns.notes and all(n.is_drum for n in ns.notes)
    # Started right after the event list (start_step = its length): magenta's generate_drum_track on it.
    body = gen(client, model="drums", primer=entry["primer"], temperature=0, length=40, start_step=16).get_json()
    assert body["events"][0] == entry["greedy"]


def test_beam_search_and_seeded_reproducibility(client):
    payload = dict(
        model="attention",
        primer=[60, -2, 62, -2, 64],
        length=48,
        seed=5,
        beam_size=3,
        branch_factor=2,
        steps_per_iteration=2,
    )
    a, b = gen(client, **payload), gen(client, **payload)
    assert a.status_code == 200, a.get_json()
    assert a.get_json()["sequences"] == b.get_json()["sequences"]
    assert a.headers["X-Seed"] == "5" and len(a.get_json()["events"][0]) == 48
    c = gen(client, **{**payload, "seed": 6})
    assert c.get_json()["sequences"] != a.get_json()["sequences"]
    bad = gen(client, **{**payload, "beam_size": 0})
    assert bad.status_code == 400


def test_default_primer_and_sample_mode(client):
    r = gen(client, model="basic", mode="sample", seed=2, num_outputs=2, length=32)
    assert r.status_code == 200, r.get_json()
    assert [e[0] for e in r.get_json()["events"]] == [60, 60]
    assert gen(client, model="basic", mode="sample", primer=[60]).status_code == 422


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"primer": [60, -2, 62, -2], "length": 4}, "/length"),
        ({"primer": [60, 200]}, "/primer"),
        ({"primer": [[60, 64]]}, "/primer"),
        ({"length": 300}, "/length"),
    ],
)
def test_unusable_requests_are_422_with_a_reason(client, payload, field):
    r = gen(client, model="basic", **payload)
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert err["details"]["field"] == field and err["message"]


COMPAT = FIX.parents[2].parent / "shared" / "compat" / "magentajs"


def _improv_folder(folder):
    """A Magenta.js checkpoint with the variable names and shapes of the official chord_pitches_improv
    (its weights_manifest.json and config.json from ../shared/compat), zeros for weights."""
    manifest = json.loads((COMPAT / "chord_pitches_improv" / "weights_manifest.json").read_text())
    entries = [w for group in manifest for w in group["weights"]]
    folder.mkdir()
    with open(folder / "group1-shard1of1", "wb") as f:
        for w in entries:
            f.write(np.zeros(w["shape"], np.float32).tobytes())
    (folder / "weights_manifest.json").write_text(json.dumps([{"paths": ["group1-shard1of1"], "weights": entries}]))
    (folder / "config.json").write_bytes((COMPAT / "chord_pitches_improv" / "config.json").read_bytes())
    return folder


@pytest.mark.parametrize("hparams", [{"config": "basic_rnn"}, {}])
def test_an_improv_rnn_checkpoint_declared_as_melody_rnn_says_what_it_is(tmp_path, hparams):
    from magenta_api.testing import make_app

    folder = _improv_folder(tmp_path / "chord_pitches_improv")
    app = make_app(
        tmp_path / "state",
        plugins=[magenta_api_melody_rnn],
        models={
            "improv": {
                "family": "melody_rnn",
                "hparams": hparams,
                "checkpoint": {"url": folder.as_uri(), "sha256": "", "size": None, "format": "magentajs"},
            }
        },
    )
    r = app.test_client().post("/v1/generate", json={"model": "improv", "primer": [60, -2, 62]})
    assert r.status_code == 503, r.get_json()
    message = r.get_json()["error"]["message"]
    assert "this looks like an ImprovRNN checkpoint (chord_pitches_improv): 75 inputs = 38 melody + 37 chord" in message
    assert "the melody_rnn family does not run it" in message and "min_note" not in message
