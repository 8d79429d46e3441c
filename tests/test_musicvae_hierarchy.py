"""Parity of the general MusicVAE engine (conductors, hierarchical encoders, trio splits, chord controls)
with magenta 2.1.4 on TF-saved random weights (reference/musicvae_hier_reference.py)."""

import numpy as np
import pytest
from musicvae_support import load

from magenta_api_musicvae.hierarchy import VAEModel, WeightsError, is_general

TOL = 1e-4
FIXTURES = (
    "hierdec_mel",
    "hier_mel",
    "flat_mel16",
    "hier_mel4_ar",
    "hierdec_trio",
    "hier_trio",
    "flat_trio",
    "mel_chords",
)


def build(name, **kw):
    variables, ref, meta = load(name)
    levels = meta["level_lengths"]
    args = dict(
        level_lengths=levels or None,
        encoder_level_lengths=meta["encoder_level_lengths"] or None,
        splits=meta["output_depths"],
        autoregressive=[] if meta["disable_autoregression"] or not levels else range(len(levels) - 1),
    )
    args.update(kw)
    return VAEModel(variables, **args), ref, meta


@pytest.fixture(scope="module", params=FIXTURES)
def model(request):
    return build(request.param)


def test_sizes_come_from_the_weights(model):
    m, ref, meta = model
    assert m.z_size == meta["hparams"]["z_size"]
    assert m.splits == meta["output_depths"] and m.output_depth == ref["targets"].shape[-1]
    assert m.control_size == meta["control_depth"]
    assert m.input_depth == ref["inputs"].shape[-1]
    assert m.encoder.hierarchical == bool(meta["encoder_level_lengths"])
    assert [u for c in m.conductor for u in c.units[-1:]] == (
        [meta["hparams"]["dec_rnn_size"][-1]] if meta["level_lengths"] else []
    )


def test_encoder_matches_magenta(model):
    m, ref, _ = model
    mu, sigma = m.encode(ref["inputs"], ref.get("controls"))
    np.testing.assert_allclose(mu, ref["mu"], atol=TOL, rtol=0)
    np.testing.assert_allclose(sigma, ref["sigma"], atol=TOL, rtol=0)


def test_teacher_forced_outputs_match_magenta(model):
    m, ref, _ = model
    logits = m.decode_logits(ref["z"], ref["targets"], ref.get("controls"))
    np.testing.assert_allclose(logits, ref["logits"], atol=TOL, rtol=0)


def test_argmax_decoding_is_identical(model):
    m, ref, _ = model
    controls = ref["controls"][0] if "controls" in ref else None
    classes, logits = m.sample(ref["z"], ref["targets"].shape[1], 0, controls=controls, return_logits=True)
    np.testing.assert_array_equal(classes, ref["greedy"])
    np.testing.assert_allclose(logits, ref["greedy_logits"], atol=TOL, rtol=0)
    # one row alone decodes as in the batch, and a shorter length is the start of the same decode
    part = min(40, ref["targets"].shape[1] - 8)
    one = m.sample(ref["z"][1:2], part, 0, controls=controls)
    np.testing.assert_array_equal(one[0], ref["greedy"][1, :part])


def test_big_decoders_step_on_the_checkpoints_own_arrays():
    """Above fuse_limit the core decoders make no fused copy: the weights stay views of the checkpoint
    (a memory map in the store), with the same numbers."""
    variables, ref, _ = load("hierdec_trio")
    m, _, _ = build("hierdec_trio", fuse_limit=0)
    assert not any(core.fused for core in m.cores)
    kernel = variables["core_decoder/core_decoder_2/decoder/multi_rnn_cell/cell_0/lstm_cell/kernel"]
    assert np.shares_memory(m.cores[2].w_prev, kernel)
    np.testing.assert_allclose(m.decode_logits(ref["z"], ref["targets"]), ref["logits"], atol=TOL, rtol=0)
    np.testing.assert_array_equal(m.sample(ref["z"], 256, 0), ref["greedy"])


def test_seeded_sampling_is_reproducible():
    m, ref, _ = build("hierdec_trio")
    a = m.sample(ref["z"], 48, 1.0, np.random.default_rng(3))
    b = m.sample(ref["z"], 48, 1.0, np.random.default_rng(3))
    c = m.sample(ref["z"], 48, 1.0, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any() and a.shape == (3, 48, 3)
    assert all(a[..., k].min() >= 0 and a[..., k].max() < d for k, d in enumerate(m.splits))
    cold = m.sample(ref["z"], 48, 1e-4, np.random.default_rng(1))
    np.testing.assert_array_equal(cold, ref["greedy"][:, :48])


def test_which_checkpoints_need_it():
    assert is_general(load("hierdec_mel")[0]) and is_general(load("hier_trio")[0])
    assert not is_general(load("flat_trio")[0]) and not is_general(load("mel_tiny")[0])


def test_bad_hierarchies_and_inputs_are_refused():
    variables, ref, _ = load("hierdec_mel")
    with pytest.raises(WeightsError, match="level lengths"):
        VAEModel(variables)
    with pytest.raises(WeightsError, match="without autoregression it would read"):
        VAEModel(load("hier_mel4_ar")[0], level_lengths=[4, 16])
    with pytest.raises(WeightsError, match="encoder of 2 levels"):
        VAEModel(load("hier_mel")[0], level_lengths=[16, 16], encoder_level_lengths=[256])
    with pytest.raises(WeightsError, match="do not add up"):
        VAEModel(load("flat_trio")[0], splits=[90, 90])
    m = VAEModel(variables, level_lengths=[16, 16])
    with pytest.raises(ValueError, match="at most 256"):
        m.sample(ref["z"], 257, 0)
    with pytest.raises(ValueError, match="needs an rng"):
        m.sample(ref["z"], 16, 1.0)
    with pytest.raises(ValueError, match="expected z"):
        m.sample(ref["z"][:, :3], 16, 0)
    with pytest.raises(ValueError, match="expected inputs"):
        m.encode(ref["inputs"][..., :10])
    chords = build("mel_chords")[0]
    no_chords = chords.sample(ref["z"][:, :12], 8, 0)  # zero controls: what Magenta's N.C.-free zeros give
    np.testing.assert_array_equal(no_chords, chords.sample(ref["z"][:, :12], 8, 0, controls=np.zeros((8, 49))))
    with pytest.raises(ValueError, match="expected controls"):
        chords.sample(ref["z"][:, :12], 8, 0, controls=np.zeros((4, 49), np.float32))
    with pytest.raises(ValueError, match="reads 256 steps"):
        build("hier_mel")[0].encode(ref["inputs"][:, :64])
