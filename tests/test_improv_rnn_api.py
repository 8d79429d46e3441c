"""ImprovRNN through the HTTP API: magenta-written .mag bundles from file:// URLs, and Magenta.js's
chord_pitches_improv in its real published layout (manifest and shards, served from 127.0.0.1) with weights
that listen to the chords: its melody sits on the chord tones more often than a run over other chords."""

import base64
import json
from pathlib import Path

import note_seq
import numpy as np
import pytest
from store_helpers import FileServer

import magenta_api_melody_rnn
from magenta_api.music import sequence_to_midi
from magenta_api.store import CheckpointStore

FIX = Path(__file__).parent / "fixtures" / "improv_rnn"
COMPAT = Path(__file__).parents[1].parent / "shared" / "compat" / "magentajs" / "chord_pitches_improv"
MIDI = Path(__file__).parent / "fixtures" / "melody_rnn" / "midi"
POP = ["C", "G", "Am", "F"]
OTHER = ["F#", "C#", "D#m", "B"]
TONES = {"C": {0, 4, 7}, "G": {7, 11, 2}, "Am": {9, 0, 4}, "F": {5, 9, 0}}


def chord_listening_weights(manifest):
    """Random weights of the published shapes, with one path that follows the chord: the chord-pitch
    inputs (13..24) drive units 0..11 of every layer (open gates, no memory), and unit k raises the
    logits of the melody classes of pitch class k."""
    rng = np.random.default_rng(0)
    entries = [w for group in manifest for w in group["weights"]]
    w = {e["name"]: rng.normal(0, 0.05, e["shape"]).astype(np.float32) for e in entries}
    units = w["rnn/multi_rnn_cell/cell_0/basic_lstm_cell/bias"].shape[0] // 4
    for layer in range(3):
        kernel = w[f"rnn/multi_rnn_cell/cell_{layer}/basic_lstm_cell/kernel"]
        bias = w[f"rnn/multi_rnn_cell/cell_{layer}/basic_lstm_cell/bias"]
        for k in range(12):
            cols = [k, units + k, 2 * units + k, 3 * units + k]  # gates i, j, f, o of unit k
            kernel[:, cols] = 0.0
            bias[cols] = [10.0, -2.5 if layer == 0 else 0.0, -10.0, 10.0]
            kernel[13 + k if layer == 0 else k, units + k] = 5.0
    fc, fc_b = w["fully_connected/weights"], w["fully_connected/biases"]
    for k in range(12):
        fc[k] = 0.0
        fc[k, [2 + p - 48 for p in range(48, 84) if p % 12 == k]] = 4.0
    fc_b[:2] -= 2.0  # fewer holds and note-offs: more notes to measure
    return entries, w


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    http_server = FileServer()

    manifest = json.loads((COMPAT / "weights_manifest.json").read_text())
    entries, weights = chord_listening_weights(manifest)
    stream = b"".join(np.asarray(weights[e["name"]], "<f4").tobytes() for e in entries)
    paths = manifest[0]["paths"]
    cut = 4 << 20
    parts = [stream[:cut], stream[cut:]]
    assert len(paths) == len(parts) == 2
    for path, part in zip(paths, parts):
        http_server.add(f"/js/chord_pitches_improv/{path}", part)
    http_server.add("/js/chord_pitches_improv/weights_manifest.json", json.dumps(manifest).encode())
    http_server.add("/js/chord_pitches_improv/config.json", (COMPAT / "config.json").read_bytes())

    def mag(name):
        return {"family": "improv_rnn", "checkpoint": {"url": (FIX / name / f"{name}.mag").as_uri(), "format": "mag"}}

    tmp = tmp_path_factory.mktemp("improv")
    app = make_app(
        tmp,
        store=CheckpointStore(tmp / "models"),
        plugins=[magenta_api_melody_rnn],
        models={
            "basic": mag("basic_improv"),
            "attention": mag("attention_improv"),
            "pitches": mag("chord_pitches_improv"),
            "js": {
                "family": "improv_rnn",
                "limits": {"num_outputs": 8},
                "checkpoint": {"url": http_server.url("/js/chord_pitches_improv"), "format": "magentajs"},
            },
        },
    )
    yield app.test_client()
    http_server.close()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def chord_tone_share(events, chords, start):
    on = [(i, e) for i, e in enumerate(events) if i >= start and e >= 0]
    hits = sum(1 for i, e in on if e % 12 in TONES[POP[min(i // 16, 3)]])
    return hits / max(1, len(on)), len(on)


def test_magentajs_chord_pitches_improv_follows_its_chords(client):
    primer = [60, -2, 62, -2]
    shares = {}
    for name, chords in (("pop", POP), ("other", OTHER)):
        r = gen(client, model="js", primer=primer, chords=chords, length=64, seed=4, num_outputs=4)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        results = [chord_tone_share(ev, chords, body["start_step"]) for ev in body["events"]]
        shares[name] = sum(s for s, _ in results) / len(results)
        assert all(n >= 8 for _, n in results)
        assert body["chords"][0] == chords[0] and body["chords"][16] == chords[1]
    print("chord-tone share", shares)
    assert shares["pop"] > shares["other"] + 0.3, shares


@pytest.mark.parametrize("mid", ["basic", "attention", "pitches"])
def test_continues_a_midi_primer_over_chords_and_renders_them(client, mid):
    midi = base64.b64encode((MIDI / "melody_rnn_primer.mid").read_bytes()).decode()
    r = gen(
        client,
        model=mid,
        primer=midi,
        chords=[{"symbol": "Dm7", "step": 0}, {"symbol": "G7", "step": 8}],
        length=48,
        seed=1,
    )
    assert r.status_code == 200, r.get_json()
    seq = r.get_json()["sequences"][0]
    annotations = [a for a in seq.get("textAnnotations", []) if a.get("annotationType") == "CHORD_SYMBOL"]
    assert [a["text"] for a in annotations] == ["Dm7", "G7"]
    rendered = gen(
        client, model=mid, primer=midi, chords=["C", "F"], length=48, seed=1, render_chords=True, format="midi"
    )
    assert rendered.status_code == 200
    notes = note_seq.midi_to_note_sequence(rendered.data).notes
    plain = gen(client, model=mid, primer=midi, chords=["C", "F"], length=48, seed=1).get_json()
    assert len(notes) > len(plain["sequences"][0]["notes"])  # the chords are played too


def test_samples_from_the_default_primer_and_is_seeded(client):
    a = gen(client, model="basic", mode="sample", chords=POP, length=64, seed=3).get_json()
    b = gen(client, model="basic", mode="sample", chords=POP, length=64, seed=3).get_json()
    assert a["events"] == b["events"] and a["events"][0][0] == 60


def test_chords_come_from_the_primers_annotations_when_not_sent(client):
    seq = note_seq.Melody([60, -2, 62]).to_sequence(qpm=120)
    a = seq.text_annotations.add(time=0.0, text="Am")
    a.annotation_type = note_seq.NoteSequence.TextAnnotation.CHORD_SYMBOL
    midi_free = json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(seq))
    body = gen(client, model="basic", primer=midi_free, length=32, seed=2).get_json()
    assert set(body["chords"]) == {"Am"}


@pytest.mark.parametrize(
    "payload,field,code",
    [
        ({"chords": ["C", "H7"]}, "/chords/1", "invalid_chord"),
        ({"chords": [{"symbol": "Xq", "step": 0}]}, "/chords/0/symbol", "invalid_chord"),
        ({"primer": [60]}, "/chords", "invalid_chord"),
        ({"chords": ["C"], "mode": "sample", "primer": [60]}, "/primer", "invalid_primer"),
        ({"chords": ["C"], "beam_size": 16, "branch_factor": 8}, "/beam_size", "over_limit"),
    ],
)
def test_unusable_requests_are_422_naming_the_field(client, payload, field, code):
    r = gen(client, model="basic", length=32, **payload)
    assert r.status_code == 422, r.get_json()
    err = r.get_json()["error"]
    assert err["code"] == code and err["details"]["field"] == field


def test_a_triad_model_refuses_a_chord_it_cannot_encode(client):
    r = gen(client, model="basic", primer=[60], chords=["C", "Csus4"], length=32)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["details"]["field"] == "/chords/1"
    assert gen(client, model="pitches", primer=[60], chords=["C", "Csus4"], length=32).status_code == 200


def test_midi_input_is_written_back_as_midi(client):
    seq = note_seq.Melody([60, -2, 64, -2]).to_sequence(qpm=100)
    midi = base64.b64encode(sequence_to_midi(seq)).decode()
    r = gen(client, model="basic", primer=midi, chords=POP, length=40, seed=5)
    assert r.status_code == 200 and r.get_json()["sequences"][0]["tempos"][0]["qpm"] == pytest.approx(100)
