"""GrooVAE's in-place sampling path (``path="rows"``, groove_rows.py) against the reference path and
against magenta's greedy decodes (reference/musicvae_hier_reference.py fixtures), on one row and on
batches, with and without control inputs, and on decoders of one and three layers."""

import numpy as np
import pytest
from musicvae_support import load

from magenta_api_musicvae.groove import PATHS, GrooveModel

TOL = 1e-5  # between our two paths
MAGENTA_TOL = 1e-4


@pytest.fixture(scope="module", params=["groove_2bar", "groove_hits"])
def model(request):
    variables, ref, _ = load(request.param)
    return GrooveModel(variables), ref


def both(m, z, temperature, seed, controls=None, length=32):
    out = {}
    for path in PATHS:
        rng = np.random.default_rng(seed) if temperature else None
        out[path] = m.sample(z, length, temperature, rng, controls=controls, return_raw=True, path=path)
    return out["reference"], out["rows"]


def assert_same(a, b, m):
    (out_a, raw_a), (out_b, raw_b) = a, b
    assert out_a.shape == out_b.shape and out_b.dtype == np.float32
    np.testing.assert_array_equal(out_b[..., : m.drums], out_a[..., : m.drums])  # the hits
    np.testing.assert_allclose(out_b, out_a, atol=TOL, rtol=0)
    np.testing.assert_allclose(raw_b, raw_a, atol=TOL, rtol=0)


def test_the_fast_path_is_the_default(model):
    m, _ = model
    assert m.path_for(1) == "rows" and m.path_for(8) == "rows"
    with pytest.raises(ValueError, match="sampling path"):
        m.sample(np.zeros((1, m.z_size), np.float32), 4, path="nope")


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_rows_sample_as_the_reference(model, temperature, batch):
    m, ref = model
    z = np.random.default_rng(batch).standard_normal((batch, m.z_size)).astype(np.float32)
    controls = None
    if m.control_size:
        controls = np.resize(ref["controls"], (batch, *ref["controls"].shape[1:]))
    for seed in range(3):
        assert_same(*both(m, z, temperature, seed, controls), m)


def test_rows_match_magenta_greedy_one_z_at_a_time(model):
    m, ref = model
    controls = ref.get("controls")
    ctl = None if controls is None else controls[0]  # the fixture decodes every z on the first input's hits
    out, raw = m.sample(ref["z"], 32, 0, controls=ctl, return_raw=True, path="rows")
    np.testing.assert_array_equal(out[..., : m.drums], ref["greedy"][..., : m.drums])
    np.testing.assert_allclose(out, ref["greedy"], atol=MAGENTA_TOL, rtol=0)
    np.testing.assert_allclose(raw, ref["greedy_logits"], atol=MAGENTA_TOL, rtol=0)
    for i in range(len(ref["z"])):
        one, one_raw = m.sample(ref["z"][i : i + 1], 32, 0, controls=ctl, return_raw=True, path="rows")
        np.testing.assert_array_equal(one[0, :, : m.drums], ref["greedy"][i, :, : m.drums])
        np.testing.assert_allclose(one[0], ref["greedy"][i], atol=MAGENTA_TOL, rtol=0)
        np.testing.assert_allclose(one_raw[0], ref["greedy_logits"][i], atol=MAGENTA_TOL, rtol=0)


def test_rows_draw_the_same_hits_as_the_reference_across_lengths(model):
    m, ref = model
    z = ref["z"][:1]
    ctl = None if "controls" not in ref else np.concatenate([ref["controls"][0]] * 2)  # 64 steps of hits
    for length in (1, 7, 64):
        c = None if ctl is None else ctl[:length]
        assert_same(*both(m, z, 1.0, length, c, length=length), m)


def _decoder_variables(base, layers, units, seed=0):
    """``base``'s encoder with a random GrooVAE decoder of ``layers`` LSTM layers of ``units``, the
    kernels at the scale of the bench's random checkpoints (1.5 / sqrt(fan in), as magenta's graph
    initializes them)."""
    rng = np.random.default_rng(seed)
    z = base["encoder/mu/kernel"].shape[1]
    first = base["decoder/multi_rnn_cell/cell_0/lstm_cell/kernel"].shape[0]  # 27 + z + controls + units
    out = {k: v for k, v in base.items() if not k.startswith("decoder/")}
    inputs = first - base["decoder/multi_rnn_cell/cell_0/lstm_cell/bias"].shape[0] // 4
    for k in range(layers):
        rows = (inputs if k == 0 else units) + units
        out[f"decoder/multi_rnn_cell/cell_{k}/lstm_cell/kernel"] = rng.normal(0, 1.5 / np.sqrt(rows), (rows, 4 * units))
        out[f"decoder/multi_rnn_cell/cell_{k}/lstm_cell/bias"] = rng.normal(0, 0.3, 4 * units)
    out["decoder/z_to_initial_state/kernel"] = rng.normal(0, 1.5 / np.sqrt(z), (z, 2 * units * layers))
    out["decoder/z_to_initial_state/bias"] = rng.normal(0, 0.3, 2 * units * layers)
    out["decoder/output_projection/kernel"] = rng.normal(0, 1.5 / np.sqrt(units), (units, 27))
    out["decoder/output_projection/bias"] = rng.normal(0, 0.3, 27)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("fixture", ["groove_2bar", "groove_hits"])
def test_rows_on_other_depths(fixture, layers):
    variables, ref, _ = load(fixture)
    m = GrooveModel(_decoder_variables(variables, layers, 24))
    assert len(m.core.layers) == layers
    controls = ref.get("controls")
    for batch in (1, 3):
        z = np.random.default_rng(batch).standard_normal((batch, m.z_size)).astype(np.float32)
        ctl = None if controls is None else controls[:batch]
        for temperature in (0.0, 0.7):
            assert_same(*both(m, z, temperature, batch, ctl), m)


# The general engine's core decoders (hierarchy.CoreDecoder, which GrooVAE's encoder-side model shares)
# step batches of SGEMM_MIN rows or more with one sgemm, padded to a multiple of 8 rows: 7 and 8 rows
# decode as magenta's 3 fixture rows do.


@pytest.mark.parametrize("name", ["hierdec_trio", "hierdec_mel", "mel_chords"])
@pytest.mark.parametrize("batch", [7, 8])
def test_general_decoder_batches_of_sgemm_rows_match_magenta(name, batch):
    from magenta_api_musicvae.hierarchy import SGEMM_MIN, VAEModel

    assert batch >= SGEMM_MIN
    variables, ref, meta = load(name)
    levels = meta["level_lengths"]
    m = VAEModel(
        variables,
        level_lengths=levels or None,
        encoder_level_lengths=meta["encoder_level_lengths"] or None,
        splits=meta["output_depths"],
        autoregressive=[] if meta["disable_autoregression"] or not levels else range(len(levels) - 1),
    )
    rows = np.arange(batch) % len(ref["z"])
    controls = ref["controls"][0] if "controls" in ref else None
    classes, logits = m.sample(ref["z"][rows], ref["targets"].shape[1], 0, controls=controls, return_logits=True)
    np.testing.assert_array_equal(classes, ref["greedy"][rows])
    np.testing.assert_allclose(logits, ref["greedy_logits"][rows], atol=MAGENTA_TOL, rtol=0)
    teacher = m.decode_logits(ref["z"][rows], ref["targets"][rows], None if controls is None else ref["controls"][rows])
    np.testing.assert_allclose(teacher, ref["logits"][rows], atol=MAGENTA_TOL, rtol=0)


def test_drum_notes_from_their_wire_format_are_the_added_notes():
    import note_seq

    from magenta_api_musicvae.groove import GrooveConverter, add_drum_notes

    rng = np.random.default_rng(0)
    pitches, velocities = rng.integers(0, 128, 40), rng.integers(0, 128, 40)
    velocities[:3] = [0, 127, 1]
    starts = rng.uniform(-0.1, 8, 40)
    ends = starts + 0.125
    got, want = note_seq.NoteSequence(), note_seq.NoteSequence()
    add_drum_notes(got, pitches, velocities, starts, ends)
    for p, v, s, e in zip(pitches.tolist(), velocities.tolist(), starts.tolist(), ends.tolist()):
        want.notes.add(instrument=9, is_drum=True, pitch=p, velocity=v, start_time=s, end_time=e)
    assert got == want and got.SerializeToString() == want.SerializeToString()
    add_drum_notes(got, [], [], [], [])
    assert got == want
    with pytest.raises(ValueError, match=r"0\.\.127"):
        add_drum_notes(got, [128], [1], [0.0], [1.0])
    # a whole decode: what from_outputs makes is what magenta's from_tensors loop adds note by note
    conv = GrooveConverter(split_bars=2)
    out = np.zeros((2, 32, 27), np.float32)
    out[..., :9] = rng.random((2, 32, 9)) < 0.4
    out[..., 9:18], out[..., 18:] = rng.random((2, 32, 9)), rng.uniform(-1, 1, (2, 32, 9))
    for sample, ns in zip(out, conv.from_outputs(out, qpm=100.0)):
        step = 60.0 / 100.0 / 4
        want = note_seq.NoteSequence(ticks_per_quarter=note_seq.STANDARD_PPQ)
        want.tempos.add(qpm=100.0)
        for t, j in zip(*np.nonzero(sample[:, :9] > 0.5)):
            start = (t - np.clip(float(sample[t, 18 + j]) / 2, -0.5, 0.5)) * step
            want.notes.add(
                instrument=9,
                is_drum=True,
                pitch=conv.pitch_classes[j][0],
                velocity=int(np.clip(np.round(float(sample[t, 9 + j]) * 127), 0, 127)),
                start_time=start,
                end_time=start + step,
            )
        want.total_time = max([n.end_time for n in want.notes] + [32 * step])
        assert ns == want
