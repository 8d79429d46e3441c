"""NumPy ImprovRNN against Magenta 2.1.4's graph, model and sequence generator (committed fixtures from
reference/improv_rnn_reference.py): the chord-conditioned inputs, logits, greedy / seeded / beam melodies
over chord progressions, and ImprovRnnSequenceGenerator end to end on a lead-sheet primer."""

from pathlib import Path

import numpy as np
import pytest
from melody_rnn_support import request
from note_seq.protobuf import music_pb2
from reference_fixtures import fixture_readers

from magenta_api.checkpoint import Checkpoint
from magenta_api.family import ModelSpec
from magenta_api.store.readers.mag import read_mag
from magenta_api.testing import run_family
from magenta_api_melody_rnn.beam import generate
from magenta_api_melody_rnn.engine import EventRnn
from magenta_api_melody_rnn.improv import ImprovEncoder, ImprovRnnFamily

FIX = Path(__file__).parent / "fixtures" / "improv_rnn"
CONFIGS = ["basic_improv", "attention_improv", "chord_pitches_improv"]


ref, arrays, weights = fixture_readers(FIX)


def family(name, variables=None, meta=None, hparams=None):
    hp = {"config": name} if hparams is None else hparams
    ckpt = Checkpoint(variables if variables is not None else weights(name), "native", meta or {})
    return ImprovRnnFamily(ModelSpec(id=name, family="improv_rnn", hparams=hp), ckpt)


def untransposed(events, transpose):
    return [int(e) if e < 0 else int(e) - transpose for e in events]


CASES = [(n, c) for n in CONFIGS for c in ref(n)["cases"]]


@pytest.mark.parametrize("name", CONFIGS)
def test_bundle_names_its_config_and_builds_the_family(name):
    variables, meta = read_mag(FIX / name / f"{name}.mag")
    assert meta["generator_id"] == name
    fam = family(name, variables, meta, hparams={})
    assert fam.config == name and fam.model.layer_sizes == ref(name)["layers"]


@pytest.mark.parametrize("name,case", CASES)
def test_conditional_inputs_and_logits_match_magenta(name, case):
    entry = ref(name)["cases"][case]
    encoder = ImprovEncoder(name, entry["transposed_chords"])
    inputs = encoder.full(entry["prepared"])
    np.testing.assert_array_equal(inputs, arrays(name)[f"{case}/inputs"])
    logits, _ = EventRnn.from_variables(weights(name), ref(name)["attn_length"]).run(inputs[None])
    assert np.abs(logits[0] - arrays(name)[f"{case}/logits"]).max() < 1e-4


@pytest.mark.parametrize("name,case", CASES)
def test_greedy_seeded_and_beam_melodies_identical(name, case):
    entry = ref(name)["cases"][case]
    model = EventRnn.from_variables(weights(name), ref(name)["attn_length"])
    encoder = ImprovEncoder(name, entry["transposed_chords"])
    primer, steps, t = entry["prepared"], ref(name)["num_steps"], entry["transpose"]
    assert untransposed(generate(model, encoder, primer, steps, 1, 0.0, None)[0].events, t) == entry["greedy"]
    for s in entry["samples"]:
        out = generate(model, encoder, primer, steps, 1, s["temperature"], np.random.RandomState(s["seed"]))[0]
        assert untransposed(out.events, t) == s["events"]
    for b in entry["beams"]:
        rng = np.random.RandomState(b["seed"])
        args = (b["temperature"], rng, b["beam_size"], b["branch_factor"], b["steps_per_iteration"])
        out = generate(model, encoder, primer, steps, 1, *args)[0]
        assert untransposed(out.events, t) == b["events"]
        assert out.score == pytest.approx(b["score"], abs=1e-3)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_family_reproduces_the_sequence_generator(name):
    """ImprovRnnSequenceGenerator on a primer whose chord annotations are the backing chords; the service
    reads the same annotations when the request sends no chords field."""
    primer = dict(ref(name)["primer_sequence"], totalTime=1.0)  # the primer part; its chords run on
    kind = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
    for run in ref(name)["sequence_generator"]:
        beam_size, branch_factor, steps_per_iteration = run["beam"]
        req = request(
            primer=primer,
            temperature=0.0 if run["temperature"] < 1e-3 else run["temperature"],
            length=ref(name)["num_steps"],
            rng=np.random.RandomState(run["seed"]),
            start_step=run["start_step"],
            beam_size=beam_size,
            branch_factor=branch_factor,
            steps_per_iteration=steps_per_iteration,
        )
        out = run_family(family(name), req).sequences[0]
        assert [[n.pitch, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes] == run["notes"]
        chords = [[round(a.time, 6), a.text] for a in out.text_annotations if a.annotation_type == kind]
        assert chords == run["chords"]
        assert out.total_time == pytest.approx(run["total_time"], abs=1e-9)
