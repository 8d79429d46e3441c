"""NADE drums (MultiLabelRnnNadeDecoder) against magenta 2.1.4: encoder, decoder outputs, NADE
probabilities, thresholded decoding, and the roll-output drums converter (reduced and full classes)."""

import json
from functools import cache

import note_seq
import numpy as np
import pytest
from google.protobuf import json_format
from musicvae_support import FIX, load, request

from magenta_api.checkpoint import Checkpoint
from magenta_api.family import ModelSpec
from magenta_api.music import sequence_to_json
from magenta_api.testing import run_family
from magenta_api_musicvae.converters import DRUM_PITCH_CLASSES, FULL_DRUM_PITCH_CLASSES, DrumsConverter
from magenta_api_musicvae.family import MusicVAEFamily
from magenta_api_musicvae.nade_drums import NadeDrumsModel

TOL = 1e-4


@pytest.fixture(scope="module", params=["nade_reduced", "nade_full"])
def model(request):
    variables, ref, _ = load(request.param)
    return NadeDrumsModel(variables), ref


def test_encoder_and_decoder_match_magenta(model):
    m, ref = model
    mu, sigma = m.encode(ref["inputs"])
    np.testing.assert_allclose(mu, ref["mu"], atol=TOL, rtol=0)
    np.testing.assert_allclose(sigma, ref["sigma"], atol=TOL, rtol=0)
    # magenta decodes NADE models with sampling probability 1 outside training: its "teacher-forced" outputs
    # are the thresholded decode's, and nade_probs are the targets' conditionals under them
    rolls, outputs = m.sample(ref["z"], 32, 0, return_outputs=True)
    np.testing.assert_array_equal(rolls, ref["greedy"])
    np.testing.assert_allclose(outputs, ref["greedy_logits"], atol=TOL, rtol=0)
    np.testing.assert_allclose(outputs, ref["logits"], atol=TOL, rtol=0)
    h = m.nade.num_hidden
    probs = np.stack(
        [m.nade.log_prob(ref["targets"][:, t], outputs[:, t, :h], outputs[:, t, h:])[1] for t in range(32)], 1
    )
    np.testing.assert_allclose(probs, ref["nade_probs"], atol=TOL, rtol=0)
    # teacher forcing on the decode's own rolls gives the same outputs
    forced, forced_probs = m.decode_outputs(ref["z"], rolls)
    np.testing.assert_allclose(forced, outputs, atol=1e-5, rtol=0)
    assert forced_probs.shape == rolls.shape


def test_seeded_draws(model):
    m, ref = model
    a = m.sample(ref["z"], 32, 1.0, np.random.default_rng(2))
    np.testing.assert_array_equal(a, m.sample(ref["z"], 32, 1.0, np.random.default_rng(2)))
    assert (a != ref["greedy"]).any() and set(np.unique(a)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="needs an rng"):
        m.sample(ref["z"], 4, 1.0)
    with pytest.raises(ValueError, match="expected z"):
        m.sample(ref["z"][:, :2], 4, 0)


@cache
def converter_fixtures():
    return json.loads((FIX / "converters_nade.json").read_text()), dict(np.load(FIX / "converters_nade.npz"))


@pytest.mark.parametrize(
    ("config", "classes"),
    [("nade-drums_2bar_reduced", DRUM_PITCH_CLASSES), ("nade-drums_2bar_full", FULL_DRUM_PITCH_CLASSES)],
)
def test_roll_converter_matches_magenta(config, classes):
    meta, arrays = converter_fixtures()
    synth = json.loads((FIX / "converters.json").read_text())["synthetic"]
    sources = {p.name: note_seq.midi_file_to_note_sequence(str(p)) for p in sorted((FIX / "midi").glob("*.mid"))}
    sources.update({f"synthetic:{k}": json_format.ParseDict(v, note_seq.NoteSequence()) for k, v in synth.items()})
    conv = DrumsConverter(pitch_classes=classes, roll_output=True, slice_bars=2, max_tensors=None)
    checked = 0
    for name, ns in sources.items():
        key = f"{config}/{name}"
        t = conv.to_tensors(ns)
        assert len(t.outputs) == meta[key]["count"], key
        if t.outputs:
            np.testing.assert_array_equal(np.stack(t.inputs), arrays[f"{key}/inputs"], err_msg=key)
            np.testing.assert_array_equal(np.stack(t.outputs), arrays[f"{key}/outputs"], err_msg=key)
            back = conv.from_classes(arrays[f"{key}/outputs"][:2])
            got = [
                sorted([n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in b.notes)
                for b in back
            ]
            assert got == meta[key]["from_tensors"], key
            checked += 1
    assert checked >= 3


def test_nade_models_through_the_family():
    for name, config, depth in (
        ("nade_reduced", "nade-drums_2bar_reduced", 9),
        ("nade_full", "nade-drums_2bar_full", 61),
    ):
        spec = ModelSpec(id=name, family="musicvae", hparams={"config": config})
        fam = MusicVAEFamily(spec, Checkpoint(load(name)[0], "native", {}, "sha"))
        assert fam.converter.output_depth == depth and fam.converter.roll_output
        seqs = run_family(fam, request("sample", num_outputs=2, seed=1, temperature=0.5)).sequences
        assert all(n.is_drum for s in seqs for n in s.notes) and seqs[0].total_time == pytest.approx(4.0)
        _, ref, _ = load(name)
        dec = run_family(fam, request("decode", temperature=0, z=ref["z"].tolist())).sequences
        assert [s.SerializeToString() for s in dec] == [
            s.SerializeToString() for s in fam._sequences(ref["greedy"], 120.0)
        ]
        beat = fam._sequences(ref["greedy"][:1], 120.0)[0]
        if beat.notes:
            enc = run_family(fam, request("encode", inputs=[sequence_to_json(beat)]))
            assert np.array(enc.extra["mu"]).shape == (1, ref["z"].shape[1])
