"""NumPy PerformanceRNN against Magenta 2.1.4's own graph, model and sequence generator (committed fixtures
from reference/performance_rnn_reference.py): inputs with their controls, logits, greedy, seeded and
beam continuations, the generator end to end, and the performances extracted from real MIDI files."""

import numpy as np
import pytest
from google.protobuf import json_format
from melody_rnn_support import request
from note_seq import midi_file_to_note_sequence
from note_seq.protobuf import music_pb2
from performance_rnn_support import CONFIGS, FIX, MIDI, arrays, family, reference, to_events, weights

from magenta_api import Unprocessable
from magenta_api.store.readers.mag import read_mag
from magenta_api.testing import run_family
from magenta_api_melody_rnn.beam import generate
from magenta_api_melody_rnn.engine import EventRnn
from magenta_api_performance_rnn.configs import CONFIGS as PERF_CONFIGS
from magenta_api_performance_rnn.encoding import ControlSchedule, make_encoder
from magenta_api_performance_rnn.primer import events_json, from_sequence

CASES = [(name, case) for name in CONFIGS for case in reference(name)["cases"]]


def _setup(name, case):
    ref = reference(name)
    config = PERF_CONFIGS[name]
    entry = ref["cases"][case]
    schedule = None
    if config.controls:
        c = ref["controls"][entry["controls"]]
        schedule = ControlSchedule(config, c, c["disable_conditioning"], ref["control_steps"])
    return ref, entry, EventRnn.from_variables(weights(name)), make_encoder(config, schedule)


@pytest.mark.parametrize("name", CONFIGS)
def test_bundle_names_its_config_and_builds_the_family(name):
    variables, meta = read_mag(FIX / name / f"{name}.mag")
    assert meta["generator_id"] == reference(name)["generator_id"]
    fam = family(name, variables=variables, meta=meta, hparams={})
    assert fam.config.name == name and fam.model.layer_sizes == reference(name)["layers"]


@pytest.mark.parametrize("name,case", CASES)
def test_inputs_and_logits_match_magenta(name, case):
    _, entry, model, encoder = _setup(name, case)
    inputs = encoder.full(to_events(entry["primer"]))
    np.testing.assert_array_equal(inputs, arrays(name)[f"{case}/inputs"])
    logits, _ = model.run(inputs[None])
    assert np.abs(logits[0] - arrays(name)[f"{case}/logits"]).max() < 1e-4


@pytest.mark.parametrize("name,case", CASES)
def test_greedy_seeded_and_beam_continuations_identical(name, case):
    ref, entry, model, encoder = _setup(name, case)
    primer = to_events(entry["primer"])
    steps = ref["num_steps"]
    greedy = generate(model, encoder, primer, steps, 1, 0.0, None)[0]
    assert events_json(greedy.events) == entry["greedy"]
    for s in entry["samples"]:
        out = generate(model, encoder, primer, steps, 1, s["temperature"], np.random.RandomState(s["seed"]))[0]
        assert events_json(out.events) == s["events"]
    for b in entry["beams"]:
        rng = np.random.RandomState(b["seed"])
        args = (b["temperature"], rng, b["beam_size"], b["branch_factor"], b["steps_per_iteration"])
        out = generate(model, encoder, primer, steps, 1, *args)[0]
        assert events_json(out.events) == b["events"]
        assert out.score == pytest.approx(b["score"], abs=1e-3)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_family_reproduces_the_sequence_generator(name):
    """PerformanceRnnSequenceGenerator end to end: primer extraction, start step, the RNN-steps estimate
    from notes_per_second, set_length and the 5-second note cut-off."""
    ref = reference(name)
    fam = family(name)
    for run in ref["sequence_generator"]:
        primer = ref["primer_sequence"] if run["end_time"] != 1.5 else None
        params = {"seconds": run["end_time"], **{k: v for k, v in run["params"].items() if k in fam_params(fam)}}
        req = request(
            primer=primer,
            mode="continue" if primer else "sample",
            temperature=0.0 if run["temperature"] < 1e-3 else run["temperature"],
            length=None,
            rng=np.random.RandomState(run["seed"]),
            **params,
        )
        out = run_family(fam, req).sequences[0]
        notes = [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes]
        assert notes == run["notes"]
        assert out.total_time == pytest.approx(run["total_time"], abs=1e-9)


def fam_params(fam):
    names = set(fam.config.controls)
    if fam.config.optional:
        names.add("disable_conditioning")
    return names


@pytest.mark.parametrize("name", CONFIGS)
def test_performances_inputs_and_labels_from_real_midi_files(name):
    ref = reference(name)
    config = PERF_CONFIGS[name]
    schedule = None
    if config.controls:
        c = ref["controls"]["constant"]
        schedule = ControlSchedule(config, c, c["disable_conditioning"], ref["control_steps"])
    encoder = make_encoder(config, schedule)
    by_file = {m["file"]: m for m in ref["midi"]}
    for path in MIDI:
        expected = by_file[path.name]
        seq = midi_file_to_note_sequence(str(path))
        if expected["num_performances"] != 1:
            with pytest.raises(Unprocessable, match="programs"):
                from_sequence(seq, config.num_velocity_bins)
            continue
        perf, _ = from_sequence(seq, config.num_velocity_bins)
        assert events_json(perf) == expected["events"]
        events = list(perf)
        inputs = encoder.full(events)
        labels = encoder.labels(events)
        arr = arrays(name)
        if config.controls:
            np.testing.assert_array_equal(inputs, arr[f"midi/{path.name}/inputs"])
            assert labels == list(arr[f"midi/{path.name}/labels"][1:])
        else:
            np.testing.assert_array_equal(inputs[:-1], arr[f"midi/{path.name}/inputs"])
            assert labels == list(arr[f"midi/{path.name}/labels"])


def test_an_empty_sequence_primer_starts_from_a_second_of_silence():
    fam = family("performance_with_dynamics")
    seq = json_format.MessageToDict(music_pb2.NoteSequence(total_time=0.0))
    out = run_family(fam, request(primer=seq or {"notes": []}, length=50, temperature=0.0))
    assert out.extra["events"][0] == [["time_shift", 49]] and out.extra["rnn_steps"] == 0
