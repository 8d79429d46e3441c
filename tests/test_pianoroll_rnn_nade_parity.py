"""NumPy Pianoroll RNN-NADE against Magenta 2.1.4 (committed fixtures from
reference/pianoroll_rnn_nade_reference.py): the NADE biases the RNN gives, the NADE's decoding, the
model's generation and beam search (Magenta's threshold decoding, identical frames), the sequence
generator end to end, and the pianorolls extracted from real MIDI files."""

from pathlib import Path

import numpy as np
import pytest
from melody_rnn_support import request
from note_seq import PianorollEncoderDecoder, PianorollSequence, midi_file_to_note_sequence, quantize_note_sequence
from reference_fixtures import fixture_readers

from magenta_api.checkpoint import Checkpoint
from magenta_api.family import ModelSpec
from magenta_api.store.readers.mag import read_mag
from magenta_api.testing import run_family
from magenta_api_pianoroll_rnn_nade.engine import RnnNade
from magenta_api_pianoroll_rnn_nade.family import PianorollRnnNadeFamily
from magenta_api_pianoroll_rnn_nade.generate import encode, generate

FIX = Path(__file__).parent / "fixtures" / "pianoroll_rnn_nade"
MIDI = sorted((Path(__file__).parent / "fixtures" / "melody_rnn" / "midi").glob("*.mid"))
CONFIGS = ["rnn-nade", "rnn-nade_attn"]


ref, arrays, weights = fixture_readers(FIX)


def model(name):
    return RnnNade.from_variables(weights(name), ref(name)["attn_length"])


def family(name, variables=None, meta=None):
    hp = {"config": name, "attn_length": ref(name)["attn_length"]}
    ckpt = Checkpoint(variables if variables is not None else weights(name), "native", meta or {})
    return PianorollRnnNadeFamily(ModelSpec(id=name, family="pianoroll_rnn_nade", hparams=hp), ckpt)


CASES = [(n, c) for n in CONFIGS for c in ref(n)["cases"]]


@pytest.mark.parametrize("name", CONFIGS)
def test_bundle_names_its_config_and_builds_the_family(name):
    variables, meta = read_mag(FIX / name / f"{name}.mag")
    assert meta["generator_id"] == name
    fam = family(name, variables, meta)
    assert fam.model.rnn.layer_sizes == ref(name)["layers"]
    assert (fam.model.num_dims, fam.model.num_hidden) == (88, ref(name)["nade_hidden"])


@pytest.mark.parametrize("name,case", CASES)
def test_nade_biases_and_decoding_match_magenta(name, case):
    m, arr = model(name), arrays(name)
    frames = [tuple(f) for f in ref(name)["cases"][case]["primer"]]
    inputs = encode(frames, 88)
    np.testing.assert_array_equal(inputs, arr[f"{case}/inputs"])
    out, _ = m.rnn.run(inputs[None])
    b_enc, b_dec = m.biases(out[0])
    assert np.abs(b_enc - arr[f"{case}/b_enc"]).max() < 1e-4
    assert np.abs(b_dec - arr[f"{case}/b_dec"]).max() < 1e-4
    sample, log_p = m.nade.sample(b_enc[-1:], b_dec[-1:])
    np.testing.assert_array_equal(sample[0], arr[f"{case}/sample"])
    assert abs(float(log_p[0]) - ref(name)["cases"][case]["sample_log_prob"]) < 1e-4


@pytest.mark.parametrize("name,case", CASES)
def test_generation_and_beam_search_identical(name, case):
    m, entry = model(name), ref(name)["cases"][case]
    primer = [tuple(f) for f in entry["primer"]]
    steps = ref(name)["num_steps"]
    frames, _ = generate(m, primer, steps, 1, 0.0, None)[0]
    assert [list(f) for f in frames] == entry["greedy"]
    for b in entry["beams"]:
        frames, _ = generate(
            m, primer, steps, 1, 0.0, None, b["beam_size"], b["branch_factor"], b["steps_per_iteration"]
        )[0]
        assert [list(f) for f in frames] == b["events"]


@pytest.mark.parametrize("name", CONFIGS)
def test_the_family_reproduces_the_sequence_generator(name):
    for run in ref(name)["sequence_generator"]:
        beam_size, branch_factor = run["beam"]
        req = request(
            primer=ref(name)["primer_sequence"],
            temperature=0.0,
            length=run["num_steps"],
            beam_size=beam_size,
            branch_factor=branch_factor,
        )
        out = run_family(family(name), req).sequences[0]
        notes = [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes]
        assert notes == run["notes"]
        assert out.total_time == pytest.approx(run["total_time"], abs=1e-9)


def test_pianorolls_inputs_and_labels_from_real_midi_files():
    by_file = {m["file"]: m for m in ref("rnn-nade")["midi"]}
    encoder = PianorollEncoderDecoder()
    checked = 0
    for path in MIDI:
        expected = by_file[path.name]
        if "error" in expected or not expected["num_sequences"]:
            continue
        frames = list(
            PianorollSequence(quantized_sequence=quantize_note_sequence(midi_file_to_note_sequence(str(path)), 4))
        )
        assert [list(f) for f in frames] == expected["events"]
        expected_inputs = arrays("rnn-nade")[f"midi/{path.name}/inputs"].reshape(-1, 88)
        np.testing.assert_array_equal(encode(frames, 88)[:-1], expected_inputs)
        labels = [encoder.events_to_label(frames, i) for i in range(1, len(frames))]
        assert labels == list(arrays("rnn-nade")[f"midi/{path.name}/labels"])
        checked += 1
    assert checked >= 5
