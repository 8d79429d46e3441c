"""Parity of the NumPy MusicVAE engine with magenta 2.1.4 on TF-saved random weights, on every path: the
reference and each fast path, chosen through the engine's public ``path=`` argument."""

import numpy as np
import pytest
from musicvae_support import MODELS, load

from magenta_api import nn
from magenta_api_musicvae.engine import (
    DECODER_PATHS,
    ENCODER_PATHS,
    FM_MIN,
    SMALL_BATCH,
    MusicVAEEngine,
    WeightsError,
)

TOL = 1e-4
BATCHED = [p for p in DECODER_PATHS if p != "row"]  # the paths that decode any batch and return logits


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    variables, ref, meta = load(request.param)
    return MusicVAEEngine(variables), ref, meta


def test_shapes_come_from_weights(model):
    engine, ref, meta = model
    hp = meta["hparams"]
    assert engine.z_size == hp["z_size"]
    assert [fw.cells[0].units for fw, _ in engine.enc] == hp["enc_rnn_size"]
    assert [c.units for c in engine.dec.cells] == hp["dec_rnn_size"]
    assert engine.input_depth == ref["inputs"].shape[-1]
    assert engine.output_depth == ref["targets"].shape[-1]


def test_encoder_mu_sigma_match_magenta(model):
    engine, ref, _ = model
    assert engine.encoder_path_for(bool(np.all(ref["lengths"] >= ref["inputs"].shape[1]))) == "reference"
    mu, sigma = engine.encode(ref["inputs"], ref["lengths"])
    assert mu.dtype == np.float32 and mu.shape == ref["mu"].shape
    np.testing.assert_allclose(mu, ref["mu"], atol=TOL, rtol=0)
    np.testing.assert_allclose(sigma, ref["sigma"], atol=TOL, rtol=0)
    assert (sigma > 0).all()


def test_shorter_rows_are_masked_like_dynamic_rnn(model):
    engine, ref, _ = model
    short = int(np.argmin(ref["lengths"]))
    assert ref["lengths"][short] < ref["inputs"].shape[1]
    mu_full, _ = engine.encode(ref["inputs"][short : short + 1])
    mu_len, _ = engine.encode(ref["inputs"][short : short + 1], ref["lengths"][short : short + 1])
    np.testing.assert_allclose(mu_len[0], ref["mu"][short], atol=TOL, rtol=0)
    assert np.abs(mu_full - mu_len).max() > 1e-3  # the length really changes the result


@pytest.mark.parametrize("path", BATCHED)
def test_teacher_forced_logits_match_magenta(model, path):
    engine, ref, _ = model
    logits = engine.decode_logits(ref["z"], ref["targets"], path=path)
    np.testing.assert_allclose(logits, ref["logits"], atol=TOL, rtol=0)
    # indices work as well as one-hots
    np.testing.assert_array_equal(engine.decode_logits(ref["z"], ref["targets"].argmax(-1), path=path), logits)


@pytest.mark.parametrize("path", BATCHED)
def test_argmax_decoding_is_identical(model, path):
    engine, ref, _ = model
    classes, logits = engine.sample(ref["z"], ref["greedy"].shape[1], temperature=0, return_logits=True, path=path)
    np.testing.assert_array_equal(classes, ref["greedy"])
    np.testing.assert_allclose(logits, ref["greedy_logits"], atol=TOL, rtol=0)


def test_one_z_decodes_in_place_like_magenta(model):
    """One z samples on in-place rows (the "row" path); each batch row alone gives magenta's greedy row."""
    engine, ref, _ = model
    assert engine.path_for(1) == "row" and engine.path_for(1, logits=True) == "rows"
    for b in range(ref["z"].shape[0]):
        one = engine.sample(ref["z"][b : b + 1], ref["greedy"].shape[1], temperature=0)
        np.testing.assert_array_equal(one[0], ref["greedy"][b])


def test_sampling_is_reproducible_with_the_same_seed():
    engine = MusicVAEEngine(load("mel_tiny")[0])
    z = np.random.default_rng(0).standard_normal((8, engine.z_size)).astype(np.float32)
    a = engine.sample(z, 32, 1.0, np.random.default_rng(5))
    b = engine.sample(z, 32, 1.0, np.random.default_rng(5))
    c = engine.sample(z, 32, 1.0, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert a.min() >= 0 and a.max() < engine.output_depth


def test_low_temperature_approaches_argmax():
    engine, ref = MusicVAEEngine(load("mel_tiny")[0]), load("mel_tiny")[1]
    cold = engine.sample(ref["z"], 32, 1e-4, np.random.default_rng(1))
    np.testing.assert_array_equal(cold, ref["greedy"])


def test_bad_shapes_and_missing_weights_are_refused():
    variables = dict(load("mel_tiny")[0])
    engine = MusicVAEEngine(variables)
    with pytest.raises(ValueError):
        engine.sample(np.zeros((1, engine.z_size + 1), np.float32), 4, 0)
    with pytest.raises(ValueError):
        engine.encode(np.zeros((1, 32, engine.input_depth + 1)))
    with pytest.raises(ValueError):
        engine.sample(np.zeros((1, engine.z_size), np.float32), 4, 1.0)  # temperature without rng
    with pytest.raises(ValueError, match="'row' samples one z"):
        engine.sample(np.zeros((2, engine.z_size), np.float32), 4, 0, path="row")
    with pytest.raises(ValueError, match="expected one of"):
        engine.decode_logits(np.zeros((2, engine.z_size), np.float32), np.zeros((2, 4), np.int64), path="fast")
    with pytest.raises(ValueError, match="'full' only when"):
        engine.encode(np.zeros((1, 32, engine.input_depth)), [16], path="full")
    del variables["decoder/output_projection/bias"]
    with pytest.raises(WeightsError, match="output_projection/bias"):
        MusicVAEEngine(variables)
    with pytest.raises(WeightsError):
        MusicVAEEngine({"foo": np.zeros(3)})
    assert WeightsError is nn.WeightsError


def test_every_path_draws_the_same_samples():
    """Seeded sampling gives the same classes whichever path decodes: one z, and a batch over FM_MIN."""
    engine, ref = MusicVAEEngine(load("mel_small")[0]), load("mel_small")[1]
    for z, paths in ((ref["z"][1:2], DECODER_PATHS), (np.tile(ref["z"], (2, 1)), BATCHED)):
        for temperature in (0, 0.5, 1.0):
            base = engine.sample(z, 32, temperature, np.random.default_rng(3), path="reference")
            for path in paths:
                np.testing.assert_array_equal(
                    engine.sample(z, 32, temperature, np.random.default_rng(3), path=path),
                    base,
                    err_msg=f"{path} at T={temperature}",
                )
            _, logits = engine.sample(z, 32, temperature, np.random.default_rng(3), return_logits=True)
            assert logits.shape == (z.shape[0], 32, engine.output_depth)


def test_gumbel_max_draws_follow_the_softmax():
    from magenta_api_musicvae.engine import _gumbel

    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5], np.float32)
    for temperature in (0.5, 1.0, 2.0):
        noise = _gumbel(np.random.default_rng(0), (200_000, logits.size))
        freq = np.bincount((logits / temperature + noise).argmax(1), minlength=logits.size) / len(noise)
        p = np.exp(logits / temperature)
        np.testing.assert_allclose(freq, p / p.sum(), atol=0.005)


@pytest.mark.parametrize("path", ENCODER_PATHS)
def test_full_length_rows_encode_like_magenta_on_every_path(model, path):
    """Full-length rows (what the service sends) take the "full" path unless told otherwise."""
    engine, ref, _ = model
    full = ref["lengths"] == ref["inputs"].shape[1]
    assert engine.encoder_path_for(True) == "full"
    x = ref["inputs"][full]
    mu, sigma = engine.encode(x, path=path)
    np.testing.assert_allclose(mu, ref["mu"][full], atol=TOL, rtol=0)
    np.testing.assert_allclose(sigma, ref["sigma"][full], atol=TOL, rtol=0)
    masked, _ = engine.encode(x, ref["lengths"][full], path="reference")
    np.testing.assert_allclose(mu, masked, atol=1e-5)


@pytest.mark.parametrize("block_elements", [nn.BLOCK_ELEMENTS, 1 << 10])  # one block of W^T rows, and many
@pytest.mark.parametrize("name", MODELS)
def test_feature_major_batch_path_matches_magenta(name, block_elements):
    """Batches over ``FM_MIN`` rows decode with transposed, row-blocked weights: the magenta
    references (6 rows) tiled to 12 rows must come out the same."""
    variables, ref, _ = load(name)
    engine = MusicVAEEngine(variables, block_elements=block_elements)
    reps = 2
    assert ref["z"].shape[0] * reps > FM_MIN >= ref["z"].shape[0]
    assert engine.path_for(ref["z"].shape[0] * reps, logits=True) == "feature_major"
    z = np.tile(ref["z"], (reps, 1))
    logits = engine.decode_logits(z, np.tile(ref["targets"], (reps, 1, 1)))
    np.testing.assert_allclose(logits, np.tile(ref["logits"], (reps, 1, 1)), atol=TOL, rtol=0)
    classes, greedy_logits = engine.sample(z, ref["greedy"].shape[1], temperature=0, return_logits=True)
    np.testing.assert_array_equal(classes, np.tile(ref["greedy"], (reps, 1)))
    np.testing.assert_allclose(greedy_logits, np.tile(ref["greedy_logits"], (reps, 1, 1)), atol=TOL, rtol=0)
    # sampling draws the same noise as the row-major path
    rowmajor = engine.sample(z, 32, 0.7, np.random.default_rng(5), path="rows")
    np.testing.assert_array_equal(engine.sample(z, 32, 0.7, np.random.default_rng(5)), rowmajor)


# --- small batches: the in-place steppers, the feature-major encoder and the kit helpers they use --------------


@pytest.mark.parametrize("rows", [1, 3, 12])
@pytest.mark.parametrize("shape", [(64, 96), (600, 400), (1200, 1000)])  # small, per-row gemv, row blocks
def test_matmul_into_a_buffer_equals_the_plain_product(rows, shape):
    """``nn.matmul(..., out=)`` writes the product into the caller's buffer on each of its rules, also
    from a column slice of a wider buffer (how the steppers read their h)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(np.float32)
    wide = rng.standard_normal((rows, shape[0] + 7)).astype(np.float32)
    x = wide[:, 3 : 3 + shape[0]]
    out = np.full((rows, shape[1]), np.nan, np.float32)
    assert nn.matmul(x, w, out=out) is out
    np.testing.assert_allclose(out, x.astype(np.float64) @ w, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(nn.matmul(x, w), out, rtol=1e-5, atol=1e-5)


def test_small_gemm_blocks_stay_within_the_kernel_size():
    for batch, inputs in ((1, 256), (2, 512), (5, 512), (8, 2048), (32, 4096)):
        rows = nn.small_gemm_rows(batch, inputs)
        assert rows % 16 == 0 and rows >= 16
        assert rows == 16 or rows * batch * inputs <= nn.SMALL_GEMM_MNK
    assert isinstance(nn.small_gemm(), bool)


@pytest.mark.parametrize("batch", [2, 3, 8, 11])
def test_small_batches_decode_like_the_reference_on_every_batched_path(batch):
    """Small and ragged batches: the in-place row-major stepper and the feature-major one (small-matrix
    blocks, or columns padded to a multiple of PAD) give the reference path's logits within 1e-4 and its
    samples exactly."""
    variables, ref, _ = load("mel_small")
    engine = MusicVAEEngine(variables)
    z = np.tile(ref["z"], (2, 1))[:batch]
    targets = np.tile(ref["targets"], (2, 1, 1))[:batch]
    assert len(z) == batch
    base = engine.decode_logits(z, targets, path="reference")
    for path in ("rows", "feature_major"):
        np.testing.assert_allclose(engine.decode_logits(z, targets, path=path), base, atol=TOL, rtol=0)
        for temperature in (0.0, 0.5):
            np.testing.assert_array_equal(
                engine.sample(z, 32, temperature, np.random.default_rng(7), path=path),
                engine.sample(z, 32, temperature, np.random.default_rng(7), path="reference"),
            )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_feature_major_encoder_equals_the_reference(name, batch):
    """The feature-major encoder (both directions stepped together, transposed scaled weights in blocks)
    gives the masked reference's mu and sigma for full-length rows, one-hot (melody) or not (drum rolls)."""
    variables, ref, _ = load(name)
    engine = MusicVAEEngine(variables)
    full = ref["inputs"][ref["lengths"] == ref["inputs"].shape[1]]
    x = np.concatenate([full] * batch)[:batch]
    mu_ref, sigma_ref = engine.encode(x, path="reference")
    for path in ("full", "feature_major"):
        mu, sigma = engine.encode(x, path=path)
        np.testing.assert_allclose(mu, mu_ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(sigma, sigma_ref, atol=1e-5, rtol=0)


def test_paths_follow_the_blas_kernels(monkeypatch):
    """With small-matrix kernels (an AVX-512 OpenBLAS core) 2..FM_MIN rows go feature-major, encoder and
    decoder; without them row-major; one z and big batches do not depend on it."""
    engine = MusicVAEEngine(load("mel_tiny")[0])
    for small, rows, encoder in ((True, "feature_major", "feature_major"), (False, "rows", "full")):
        monkeypatch.setattr(nn, "small_gemm", lambda small=small: small)
        assert engine.path_for(5) == rows and engine.path_for(2, logits=True) == rows
        assert engine.encoder_path_for(True, 2) == encoder and engine.encoder_path_for(True, SMALL_BATCH) == encoder
        assert engine.path_for(SMALL_BATCH) == (rows if SMALL_BATCH <= FM_MIN else "feature_major")
        assert engine.path_for(1) == "row" and engine.path_for(FM_MIN + 1) == "feature_major"
        assert engine.encoder_path_for(True, 1) == "full" and engine.encoder_path_for(True, SMALL_BATCH + 1) == "full"
        assert engine.encoder_path_for(False, 2) == "reference"


def test_warm_builds_the_batched_weights_once(monkeypatch):
    monkeypatch.setattr(nn, "small_gemm", lambda: True)  # the encoder's transposed weights too
    engine = MusicVAEEngine(load("mel_tiny")[0])
    engine.warm()
    fm = engine._feature_major()
    engine.warm()
    assert engine._feature_major() is fm
    z = np.zeros((3, engine.z_size), np.float32)
    np.testing.assert_array_equal(engine.sample(z, 8, 0.0, path="feature_major"), engine.sample(z, 8, 0.0))
