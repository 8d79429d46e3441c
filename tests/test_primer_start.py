"""``continue`` starts where Magenta's sequence generators start: parity with
``MelodyRnnSequenceGenerator`` / ``DrumsRnnSequenceGenerator`` on primers that end on and off a step
boundary, in every request form (fixtures: reference/melody_rnn_start_reference.py, start.json)."""

import base64
import json
from functools import cache

import numpy as np
import pytest
from google.protobuf import json_format
from melody_rnn_support import CONFIGS, FIX, family, reference, request
from note_seq import DrumTrack, Melody, NoteSequence

import magenta_api_melody_rnn
from magenta_api.errors import Unprocessable
from magenta_api.music import sequence_to_midi
from magenta_api.testing import make_app, run_family


@cache
def starts(name):
    return json.loads((FIX / name / "start.json").read_text())


CASES = [(name, case) for name in CONFIGS for case in starts(name)["cases"]]


def _notes(seq):
    return [[n.pitch, round(n.start_time, 6), round(n.end_time, 6), bool(n.is_drum)] for n in seq.notes]


def _params(case):
    """The request fields a client sends for a fixture case (length up to magenta's end step)."""
    params = {"length": case["end_step"] - case["events_start_step"]}
    if case["requested_start_step"] is not None:
        params["start_step"] = case["requested_start_step"]
    return params


def test_fixture_covers_every_form_on_and_off_a_boundary():
    for name in ("basic_rnn", "drum_kit_rnn"):
        cases = starts(name)["cases"].values()
        defaults = [c for c in cases if c["requested_start_step"] is None]
        for form in ("events", "json", "midi"):
            assert any(c["form"] == form and c["on_a_boundary"] for c in defaults), (name, form)
        off = [c for c in defaults if not c["on_a_boundary"]]
        # off a boundary, magenta's start both rounds a step up (one rest) and lands on the quantized end
        assert {c["start_step"] - c["primer_end_step"] for c in off} == {0, 1}
        # on a boundary, magenta starts one step after the primer's end
        assert all(c["start_step"] == c["primer_end_step"] + 1 for c in defaults if c["on_a_boundary"])
        assert any(c["requested_start_step"] is not None for c in cases)


@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_continue_equals_magentas_sequence_generator(name, case):
    c = starts(name)["cases"][case]
    fam = family(name)
    greedy = run_family(fam, request(c["primer"], temperature=0.0, **_params(c)))
    assert greedy.extra["start_step"] == c["start_step"]
    assert greedy.extra["events_start_step"] == c["events_start_step"]
    assert greedy.extra["primer_steps"] == min(c["primer_end_step"], c["start_step"]) - c["events_start_step"]
    assert _notes(greedy.sequences[0]) == c["greedy"]["notes"]
    assert greedy.sequences[0].total_time == pytest.approx(c["greedy"]["total_time"])
    # Seeded: the same draws as magenta's np.random after np.random.seed, from the same step.
    rng = np.random.RandomState(c["sample"]["seed"])
    sampled = run_family(fam, request(c["primer"], temperature=c["sample"]["temperature"], rng=rng, **_params(c)))
    assert _notes(sampled.sequences[0]) == c["sample"]["notes"]


def test_the_old_start_differs_from_magentas():
    """Starting where the quantized primer ends (what the service did) is not what magenta generates."""
    c = starts("attention_rnn")["cases"]["midi_written_from_events"]
    fam = family("attention_rnn")
    at_end = run_family(fam, request(c["primer"], temperature=0.0, start_step=c["primer_end_step"], length=64))
    assert at_end.extra["start_step"] == c["primer_end_step"] == c["start_step"] - 1
    assert _notes(at_end.sequences[0]) != c["greedy"]["notes"]


def test_start_step_at_the_primers_end_is_magentas_model_level_continuation():
    """``generate_melody`` on the event list itself (reference.json's greedy) starts right after it."""
    for name in ("basic_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn"):
        ref = reference(name)
        fam = family(name)
        for entry in ref["primers"].values():
            primer = entry["primer"]
            out = run_family(fam, request(primer, temperature=0.0, length=ref["num_steps"], start_step=len(primer)))
            assert out.extra["events"][0] == entry["greedy"], name
            default = run_family(fam, request(primer, temperature=0.0, length=ref["num_steps"]))
            assert default.extra["start_step"] == len(primer) + 1


def test_start_step_outside_what_the_primer_allows_is_422():
    fam = family("basic_rnn")
    seq = Melody([60, -2, 62, -2, 64, -2, 65, -2]).to_sequence(qpm=120)
    for primer in ([60, -2, 62, -2, 64, -2, 65, -2], json_format.MessageToDict(seq)):
        with pytest.raises(Unprocessable, match="inside the primer, which ends at step 8") as err:
            run_family(fam, request(primer, start_step=7))
        assert err.value.details == {
            "field": "/start_step",
            "primer_end_step": 8,
            "default_start_step": 9,
        }
        with pytest.raises(Unprocessable, match="length is 16") as err:
            run_family(fam, request(primer, start_step=16, length=16))
        assert err.value.code == "primer_too_long" and err.value.details["start_step"] == 16
        # the step before the end of length is the last start that generates anything
        out = run_family(fam, request(primer, start_step=15, length=16, temperature=0.0))
        assert len(out.extra["events"][0]) == 16 and out.extra["primer_steps"] == 8


def test_default_start_leaves_room_for_the_rest_step():
    fam = family("basic_rnn")
    with pytest.raises(Unprocessable, match="generation starts at step 5") as err:
        run_family(fam, request([60, -2, 62, -2], length=5))
    assert err.value.code == "primer_too_long"
    out = run_family(fam, request([60, -2, 62, -2], length=6, temperature=0.0))
    assert out.extra["events"][0][:5] == [60, -2, 62, -2, -1]  # the held note ends: one step of rest


# -- through the HTTP app ---------------------------------------------------------------------------

MODELS = {"basic": "basic_rnn", "attention": "attention_rnn", "drums": "drum_kit_rnn"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
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
        tmp_path_factory.mktemp("primer_start"),
        plugins=[magenta_api_melody_rnn],
        models={mid: model(name) for mid, name in MODELS.items()},
    )
    return app.test_client()


HTTP_CASES = [(mid, case) for mid in MODELS for case in starts(MODELS[mid])["cases"]]


@pytest.mark.parametrize("mid,case", HTTP_CASES, ids=[f"{m}-{c}" for m, c in HTTP_CASES])
def test_http_continue_equals_magentas_sequence_generator(client, mid, case):
    c = starts(MODELS[mid])["cases"][case]
    r = client.post("/v1/generate", json={"model": mid, "primer": c["primer"], "temperature": 0, **_params(c)})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["start_step"] == c["start_step"] and body["events_start_step"] == c["events_start_step"]
    assert _notes(json_format.ParseDict(body["sequences"][0], NoteSequence())) == c["greedy"]["notes"]


@pytest.mark.parametrize("mid", ["basic", "attention", "drums"])
def test_http_event_list_json_and_midi_of_one_primer_start_alike(client, mid):
    """The same boundary-ending primer as an event list, its NoteSequence JSON and its MIDI: one start."""
    name = MODELS[mid]
    primer = next(iter(reference(name)["primers"].values()))["primer"]
    if name.startswith("drum"):
        primer = primer[:-1]  # a sequence ends with its last note: no trailing rest to lose
        seq = DrumTrack([frozenset(e) for e in primer]).to_sequence(qpm=120)
    else:
        seq = Melody(primer).to_sequence(qpm=120)
    forms = [primer, json_format.MessageToDict(seq), base64.b64encode(sequence_to_midi(seq)).decode()]
    bodies = []
    for form in forms:
        r = client.post("/v1/generate", json={"model": mid, "primer": form, "temperature": 0, "length": 48})
        assert r.status_code == 200, r.get_json()
        bodies.append(r.get_json())
    assert {b["start_step"] for b in bodies} == {len(primer) + 1}
    assert bodies[0]["sequences"] == bodies[1]["sequences"] == bodies[2]["sequences"]
    assert bodies[0]["events"] == bodies[1]["events"] == bodies[2]["events"]


def test_http_start_step_aligns_a_midi_primer(client):
    """A base64 MIDI primer can be started anywhere from its end on, like the other forms."""
    c = starts("attention_rnn")["cases"]["midi_melody_from_step_16"]
    default = starts("attention_rnn")["cases"]["midi_melody"]
    assert c["primer"] == default["primer"]
    r = client.post("/v1/generate", json={"model": "attention", "primer": c["primer"], "temperature": 0, "length": 64})
    assert r.get_json()["start_step"] == default["start_step"] == 13
    for step in (12, 16, 30):
        r = client.post(
            "/v1/generate",
            json={"model": "attention", "primer": c["primer"], "temperature": 0, "length": 64, "start_step": step},
        )
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert body["start_step"] == step and body["primer_steps"] == 12 and len(body["events"][0]) == 64
        assert body["events"][0][12:step] == ([-1] + [-2] * (step - 13) if step > 12 else [])  # a rest until then
    r = client.post(
        "/v1/generate",
        json={"model": "attention", "primer": c["primer"], "temperature": 0, "length": 64, "start_step": 16},
    )
    assert _notes(json_format.ParseDict(r.get_json()["sequences"][0], NoteSequence())) == c["greedy"]["notes"]


@pytest.mark.parametrize(
    "value,status,code",
    [(-1, 400, None), (1.5, 400, None), ("16", 400, None), (10**9, 400, None), (3, 422, "invalid_primer")],
)
def test_http_start_step_is_validated(client, value, status, code):
    r = client.post(
        "/v1/generate", json={"model": "basic", "primer": [60, -2, 62, -2, 64, -2], "length": 32, "start_step": value}
    )
    assert r.status_code == status, r.get_json()
    err = r.get_json()["error"]
    assert "start_step" in err["details"].get("field", "") or "start_step" in err["message"]
    if code:
        assert err["code"] == code


def test_http_start_step_past_length_is_primer_too_long(client):
    r = client.post("/v1/generate", json={"model": "drums", "primer": [[36], [], [42]], "length": 16, "start_step": 16})
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert err["code"] == "primer_too_long" and err["details"] == {
        "field": "/length",
        "primer_steps": 3,
        "start_step": 16,
    }


def test_parameters_and_openapi_document_start_step(client):
    family_fields = client.get("/v1/models/basic").get_json()["parameters"]["allOf"][1]["properties"]
    assert family_fields["start_step"]["type"] == "integer" and family_fields["start_step"]["minimum"] == 0
    assert "Magenta's sequence generator" in family_fields["start_step"]["description"]
    assert '"start_step"' in json.dumps(client.get("/v1/openapi.json").get_json())
