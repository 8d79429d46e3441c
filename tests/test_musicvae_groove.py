"""GrooVAE against magenta 2.1.4: the GrooveConverter of each published config on real and synthetic drum
MIDI (inputs, outputs, controls, from_tensors) and the GrooveLstmDecoder engine on TF-saved random weights
(reference/musicvae_hier_reference.py)."""

import json
from functools import cache

import note_seq
import numpy as np
import pytest
from google.protobuf import json_format
from musicvae_support import FIX, load

from magenta_api_musicvae.groove import GrooveConverter, GrooveModel

TOL = 1e-4
CONFIGS = {
    "groovae_4bar": dict(split_bars=4),
    "groovae_2bar_humanize": dict(split_bars=2, humanize=True),
    "groovae_2bar_tap_fixed_velocity": dict(split_bars=2, tapify=True, fixed_velocities=True),
    "groovae_2bar_add_closed_hh": dict(split_bars=2, add_instruments=[2]),
    "groovae_2bar_hits_control_tfds": dict(split_bars=2, hits_as_controls=True),
}


@cache
def fixtures():
    return json.loads((FIX / "converters_groove.json").read_text()), dict(np.load(FIX / "converters_groove.npz"))


def sequences():
    meta, _ = fixtures()
    out = {
        p.name: note_seq.midi_file_to_note_sequence(str(p))
        for p in sorted((FIX / "midi").glob("*.mid"))
        if "drum" in p.name or "complex" in p.name
    }
    out.update(
        {f"synthetic:{k}": json_format.ParseDict(v, note_seq.NoteSequence()) for k, v in meta["synthetic"].items()}
    )
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
def test_converter_matches_magenta(config):
    meta, arrays = fixtures()
    conv = GrooveConverter(**CONFIGS[config])
    checked = 0
    for name, ns in sequences().items():
        key = f"{config}/{name}"
        t = conv.to_tensors(ns)
        assert len(t.outputs) == meta[key]["count"], key
        if not t.outputs:
            continue
        np.testing.assert_allclose(np.stack(t.inputs), arrays[f"{key}/inputs"], atol=1e-6, err_msg=key)
        np.testing.assert_allclose(np.stack(t.outputs), arrays[f"{key}/outputs"], atol=1e-6, err_msg=key)
        if conv.hits_as_controls:
            np.testing.assert_array_equal(np.stack(t.controls), arrays[f"{key}/controls"])
        back = conv.from_outputs(arrays[f"{key}/outputs"][:2])
        got = [
            sorted([n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in b.notes) for b in back
        ]
        assert got == meta[key]["from_tensors"], key
        checked += 1
    assert checked >= 2  # the real files have a tempo change (magenta yields nothing) or no 2 bars


def test_unmapped_pitches_are_left_out():
    ns = sequences()["synthetic:groove_2bar"]
    conv = GrooveConverter(split_bars=2)
    want = conv.windows(ns)[0].outputs
    ns.notes.add(pitch=100, start_time=0.5, end_time=0.6, velocity=80, is_drum=True)  # 100 is in no class
    np.testing.assert_array_equal(conv.windows(ns)[0].outputs, want)
    empty = note_seq.NoteSequence()
    empty.notes.add(pitch=100, start_time=0, end_time=1, velocity=80, is_drum=True)
    assert not conv.windows(empty) and "9 drum classes" in conv.explain(empty)


@pytest.fixture(scope="module", params=["groove_2bar", "groove_hits"])
def model(request):
    variables, ref, _ = load(request.param)
    return GrooveModel(variables), ref


def test_engine_matches_magenta(model):
    m, ref = model
    controls = ref.get("controls")
    mu, sigma = m.encode(ref["inputs"], controls)
    np.testing.assert_allclose(mu, ref["mu"], atol=TOL, rtol=0)
    np.testing.assert_allclose(sigma, ref["sigma"], atol=TOL, rtol=0)
    np.testing.assert_allclose(m.decode_outputs(ref["z"], ref["targets"], controls), ref["logits"], atol=TOL, rtol=0)
    out, raw = m.sample(ref["z"], 32, 0, controls=None if controls is None else controls[0], return_raw=True)
    np.testing.assert_array_equal(out[..., : m.drums], ref["greedy"][..., : m.drums])
    np.testing.assert_allclose(out, ref["greedy"], atol=TOL, rtol=0)
    np.testing.assert_allclose(raw, ref["greedy_logits"], atol=TOL, rtol=0)


def test_sampling_draws_hits_from_the_rng(model):
    m, ref = model
    a = m.sample(ref["z"], 32, 1.0, np.random.default_rng(1))
    b = m.sample(ref["z"], 32, 1.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    hits = a[..., : m.drums]
    assert set(np.unique(hits)) <= {0.0, 1.0} and (hits != m.sample(ref["z"], 32, 0)[..., : m.drums]).any()
    with pytest.raises(ValueError, match="needs an rng"):
        m.sample(ref["z"], 4, 1.0)
