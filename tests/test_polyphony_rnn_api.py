"""PolyphonyRNN through the HTTP API: a magenta-written .mag bundle served from a file:// URL by the real
checkpoint store; MIDI primers, harmonization by injection, sampling from nothing, and the 422s."""

import base64
import json
from pathlib import Path

import note_seq
import pytest
from google.protobuf import json_format
from note_seq.protobuf import music_pb2

import magenta_api_polyphony_rnn
from magenta_api.music import sequence_to_midi

FIX = Path(__file__).parent / "fixtures" / "polyphony_rnn"
MIDI = Path(__file__).parent / "fixtures" / "melody_rnn" / "midi"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    app = make_app(
        tmp_path_factory.mktemp("polyphony_rnn"),
        plugins=[magenta_api_polyphony_rnn],
        models={
            "poly": {
                "family": "polyphony_rnn",
                "limits": {"num_outputs": 4, "length": 512},
                "checkpoint": {
                    "url": (FIX / "polyphony_rnn.mag").as_uri(),
                    "sha256": "",
                    "size": None,
                    "format": "mag",
                },
            }
        },
    )
    return app.test_client()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def two_voices():
    seq = json_format.ParseDict(
        json.loads((FIX / "reference.json").read_text())["primer_sequence"], music_pb2.NoteSequence()
    )
    return seq


def test_continues_a_two_voice_midi_primer_keeping_it(client):
    seq = two_voices()
    midi = base64.b64encode(sequence_to_midi(seq)).decode()
    r = gen(
        client,
        model="poly",
        primer=midi,
        length=48,
        seed=2,
        condition_on_primer=True,
        inject_primer_during_generation=False,
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    out = body["sequences"][0]
    primer_notes = {(n.pitch, round(n.start_time, 3)) for n in seq.notes}
    out_notes = {(n.get("pitch", 0), round(n.get("startTime", 0.0), 3)) for n in out["notes"]}
    assert primer_notes <= out_notes
    assert out["totalTime"] == pytest.approx(48 * 0.125)
    assert body["start_step"] == 16 and body["events"][0][0] == ["start"]


def test_injection_harmonizes_the_primer_after_its_end(client):
    """Without condition_on_primer, the primer's notes are written into the new part from its start
    (the generator's default), after the primer itself."""
    seq = two_voices()
    midi = base64.b64encode(sequence_to_midi(seq)).decode()
    body = gen(client, model="poly", primer=midi, length=40, seed=4).get_json()
    start = body["start_step"] * 0.125
    replayed = {
        (n.get("pitch", 0), round(n.get("startTime", 0.0) - start, 3))
        for n in body["sequences"][0]["notes"]
        if n.get("startTime", 0.0) >= start - 1e-9
    }
    assert {(n.pitch, round(n.start_time, 3)) for n in seq.notes} <= replayed


def test_samples_from_nothing_and_is_seeded(client):
    a = gen(client, model="poly", mode="sample", length=32, seed=7, num_outputs=2)
    assert a.status_code == 200, a.get_json()
    b = gen(client, model="poly", mode="sample", length=32, seed=7, num_outputs=2)
    assert a.get_json()["sequences"] == b.get_json()["sequences"]
    assert len(a.get_json()["sequences"]) == 2
    midi = gen(client, model="poly", mode="sample", length=16, seed=1, format="midi")
    assert midi.status_code == 200 and note_seq.midi_to_note_sequence(midi.data) is not None


def test_a_real_midi_file_continues(client):
    midi = base64.b64encode((MIDI / "melody.mid").read_bytes()).decode()
    seq = note_seq.midi_file_to_note_sequence(str(MIDI / "melody.mid"))
    steps = int(seq.total_time / (60 / seq.tempos[0].qpm / 4)) + 16
    r = gen(client, model="poly", primer=midi, length=steps, seed=1, beam_size=2, branch_factor=2)
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"primer": [60, 62]}, "/primer"),
        ({}, "/primer"),
        ({"mode": "sample", "primer": "AAAA"}, "/primer"),
        ({"length": 4}, "/length"),
        ({"primer": base64.b64encode((MIDI / "example_complex.mid").read_bytes()).decode()}, "/primer"),
        ({"beam_size": 16, "branch_factor": 8}, "/beam_size"),
    ],
)
def test_unusable_requests_are_422_naming_the_field(client, payload, field):
    payload.setdefault("primer", base64.b64encode(sequence_to_midi(two_voices())).decode()) if payload else None
    r = gen(client, model="poly", **payload)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["details"]["field"] == field
