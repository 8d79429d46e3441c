"""Pianoroll RNN-NADE through the HTTP API: magenta-written .mag bundles served from file:// URLs by the real
checkpoint store; MIDI primers, sampling, seeds, Magenta's threshold decoding and the 422s."""

import base64
from pathlib import Path

import note_seq
import pytest

import magenta_api_pianoroll_rnn_nade
from magenta_api.music import sequence_to_midi

FIX = Path(__file__).parent / "fixtures" / "pianoroll_rnn_nade"
MIDI = Path(__file__).parent / "fixtures" / "melody_rnn" / "midi"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    def model(name, attn):
        return {
            "family": "pianoroll_rnn_nade",
            "hparams": {"attn_length": attn},
            "limits": {"num_outputs": 4, "length": 512},
            "checkpoint": {"url": (FIX / name / f"{name}.mag").as_uri(), "sha256": "", "size": None, "format": "mag"},
        }

    app = make_app(
        tmp_path_factory.mktemp("pianoroll"),
        plugins=[magenta_api_pianoroll_rnn_nade],
        models={"nade": model("rnn-nade", 0), "attn": model("rnn-nade_attn", 6)},
    )
    return app.test_client()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def _midi(name="melody.mid"):
    return base64.b64encode((MIDI / name).read_bytes()).decode()


@pytest.mark.parametrize("mid", ["nade", "attn"])
def test_continues_a_midi_primer_keeping_it(client, mid):
    seq = note_seq.midi_file_to_note_sequence(str(MIDI / "melody.mid"))
    steps = int(round(seq.total_time / (60 / seq.tempos[0].qpm / 4)))
    r = gen(client, model=mid, primer=_midi(), length=steps + 16, seed=3)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    first = min(seq.notes, key=lambda n: (n.start_time, -n.pitch))
    assert any(n["pitch"] == first.pitch and n.get("startTime", 0) == 0 for n in body["sequences"][0]["notes"])
    assert len(body["events"][0]) == steps + 16 and body["start_step"] == steps + 1


def test_sampling_is_seeded_and_temperature_zero_is_magentas_deterministic_decoding(client):
    a = gen(client, model="nade", mode="sample", length=24, seed=5, num_outputs=2).get_json()
    b = gen(client, model="nade", mode="sample", length=24, seed=5, num_outputs=2).get_json()
    c = gen(client, model="nade", mode="sample", length=24, seed=6, num_outputs=2).get_json()
    assert a["events"] == b["events"] != c["events"]
    g1 = gen(client, model="nade", mode="sample", length=24, seed=1, temperature=0).get_json()
    g2 = gen(client, model="nade", mode="sample", length=24, seed=2, temperature=0).get_json()
    assert g1["events"] == g2["events"]


def test_event_list_primer_beam_search_and_midi_output(client):
    primer = [[60, 64, 67], [60, 64, 67], [], [62, 65, 69]]
    r = gen(client, model="attn", primer=primer, length=20, seed=2, beam_size=2, branch_factor=2, format="midi")
    assert r.status_code == 200 and r.mimetype == "audio/midi"
    out = note_seq.midi_to_note_sequence(r.data)
    assert {60, 64, 67} <= {n.pitch for n in out.notes}


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"primer": [[100]]}, "/primer"),
        ({"primer": [[60, "x"]]}, "/primer"),
        ({"primer": []}, "/primer"),
        ({"primer": [[60]], "length": 2}, "/length"),
        ({"mode": "sample", "primer": [[60]]}, "/primer"),
        ({"primer": base64.b64encode(sequence_to_midi(note_seq.NoteSequence())).decode()}, "/primer"),
        ({"primer": [[60]], "beam_size": 16, "branch_factor": 8}, "/beam_size"),
    ],
)
def test_unusable_requests_are_422_naming_the_field(client, payload, field):
    r = gen(client, model="nade", **payload)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["details"]["field"] == field
