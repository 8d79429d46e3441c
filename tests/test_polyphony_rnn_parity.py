"""NumPy PolyphonyRNN against Magenta 2.1.4's graph, model and sequence generator (committed fixtures from
reference/polyphony_rnn_reference.py): inputs, logits, greedy / seeded / beam continuations with and
without primer injection, the generator end to end, and the sequences extracted from real MIDI files."""

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from melody_rnn_support import request
from note_seq import midi_file_to_note_sequence, quantize_note_sequence

from magenta_api.checkpoint import Checkpoint
from magenta_api.family import ModelSpec
from magenta_api.store.readers.mag import read_mag
from magenta_api.testing import run_family
from magenta_api_melody_rnn.beam import generate
from magenta_api_melody_rnn.engine import EventRnn
from magenta_api_polyphony_rnn.events import NAMES, PolyphonicEvent, events_json, from_quantized
from magenta_api_polyphony_rnn.family import InjectingEncoder, PolyphonyRnnFamily

FIX = Path(__file__).parent / "fixtures" / "polyphony_rnn"
MIDI = sorted((Path(__file__).parent / "fixtures" / "melody_rnn" / "midi").glob("*.mid"))
TYPES = {v: k for k, v in NAMES.items()}


@cache
def ref():
    return json.loads((FIX / "reference.json").read_text())


@cache
def arrays():
    return dict(np.load(FIX / "reference.npz"))


@cache
def weights():
    return dict(np.load(FIX / "weights.npz"))


def to_events(pairs):
    return [PolyphonicEvent(TYPES[p[0]], p[1] if len(p) > 1 else None) for p in pairs]


def family(variables=None):
    ckpt = Checkpoint(variables if variables is not None else weights(), "native", {})
    return PolyphonyRnnFamily(ModelSpec(id="polyphony", family="polyphony_rnn"), ckpt)


CASES = list(ref()["cases"])


def test_bundle_reads_to_the_dumped_weights_and_builds_the_family():
    variables, meta = read_mag(FIX / "polyphony_rnn.mag")
    assert meta["generator_id"] == "polyphony"
    assert family(variables).model.layer_sizes == ref()["layers"]
    with pytest.raises(ValueError, match="259"):
        family({k: v[..., :-1] if k.startswith("fully") else v for k, v in weights().items()})


@pytest.mark.parametrize("primer", ["two_voices", "start"])
def test_inputs_and_logits_match_magenta(primer):
    entry = ref()["cases"][f"{primer}/plain"]
    encoder = InjectingEncoder(None, 0)
    inputs = encoder.full(to_events(entry["primer"]))
    np.testing.assert_array_equal(inputs, arrays()[f"{primer}/inputs"])
    logits, _ = EventRnn.from_variables(weights()).run(inputs[None])
    assert np.abs(logits[0] - arrays()[f"{primer}/logits"]).max() < 1e-4


@pytest.mark.parametrize("case", CASES)
def test_greedy_seeded_and_beam_continuations_identical(case):
    entry = ref()["cases"][case]
    model = EventRnn.from_variables(weights())
    melody = to_events(ref()["cases"]["two_voices/plain"]["primer"]) if entry["inject"] else None
    encoder = InjectingEncoder(type("Melody", (), {"events": melody})() if melody else None, 0)
    primer, steps = to_events(entry["primer"]), ref()["num_steps"]
    assert events_json(generate(model, encoder, primer, steps, 1, 0.0, None)[0].events) == entry["greedy"]
    for s in entry["samples"]:
        out = generate(model, encoder, primer, steps, 1, s["temperature"], np.random.RandomState(s["seed"]))[0]
        assert events_json(out.events) == s["events"]
    for b in entry["beams"]:
        rng = np.random.RandomState(b["seed"])
        args = (b["temperature"], rng, b["beam_size"], b["branch_factor"], b["steps_per_iteration"])
        out = generate(model, encoder, primer, steps, 1, *args)[0]
        assert events_json(out.events) == b["events"]
        assert out.score == pytest.approx(b["score"], abs=1e-3)


@pytest.mark.parametrize("run", range(len(ref()["sequence_generator"])))
def test_the_family_reproduces_the_sequence_generator(run):
    """PolyphonyRnnSequenceGenerator end to end: condition_on_primer x inject_primer_during_generation,
    greedy and seeded, beam search, and from nothing."""
    r = ref()["sequence_generator"][run]
    beam_size, branch_factor, steps_per_iteration = r["beam"]
    req = request(
        primer=None if r.get("empty") else ref()["primer_sequence"],
        mode="sample" if r.get("empty") else "continue",
        temperature=0.0 if r["temperature"] < 1e-3 else r["temperature"],
        length=r["num_steps"],
        rng=np.random.RandomState(r["seed"]),
        condition_on_primer=r["condition_on_primer"],
        inject_primer_during_generation=r["inject_primer_during_generation"],
        beam_size=beam_size,
        branch_factor=branch_factor,
        steps_per_iteration=steps_per_iteration,
    )
    out = run_family(family(), req).sequences[0]
    notes = [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes]
    assert notes == r["notes"]
    assert out.total_time == pytest.approx(r["total_time"], abs=1e-9)


def test_sequences_inputs_and_labels_from_real_midi_files():
    by_file = {m["file"]: m for m in ref()["midi"]}
    encoder = InjectingEncoder(None, 0)
    checked = 0
    for path in MIDI:
        expected = by_file[path.name]
        if "error" in expected:
            continue
        poly = from_quantized(quantize_note_sequence(midi_file_to_note_sequence(str(path)), 4))
        if not expected["num_sequences"]:
            assert poly is None
            continue
        assert events_json(poly) == expected["events"]
        events = list(poly)
        np.testing.assert_array_equal(encoder.full(events)[:-1], arrays()[f"midi/{path.name}/inputs"])
        assert encoder.labels(events) == list(arrays()[f"midi/{path.name}/labels"])
        checked += 1
    assert checked >= 5
