"""The core NADE (magenta_api.nade): a proper distribution, Magenta's decoding rules, and parity with
magenta's own Nade graph (fixture from reference/pianoroll_rnn_nade_reference.py)."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from magenta_api import nn
from magenta_api.nade import Nade, sigmoid

FIX = Path(__file__).parent / "fixtures" / "pianoroll_rnn_nade" / "nade"


def _random_nade(dims=5, hidden=4, seed=0, internal=True):
    rng = np.random.default_rng(seed)
    args = [rng.normal(0, 1, (dims, 1, hidden)), rng.normal(0, 1, (dims, hidden, 1))]
    if internal:
        args += [rng.normal(0, 1, (1, hidden)), rng.normal(0, 1, (1, dims))]
    return Nade(*args)


def test_probabilities_of_every_value_sum_to_one():
    nade = _random_nade()
    xs = np.array(list(itertools.product([0, 1], repeat=nade.num_dims)), np.float32)
    log_p, cond = nade.log_prob(xs)
    assert cond.shape == xs.shape
    # _safe_log's 1e-6 shifts each term by at most ~1e-6 relative
    assert np.exp(log_p.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)


def test_threshold_sample_is_the_most_likely_path_and_scored_like_log_prob():
    nade = _random_nade(seed=3)
    x, log_p = nade.sample(n=2)
    assert x.shape == (2, 5) and np.array_equal(x[0], x[1])
    again, cond = nade.log_prob(x)
    np.testing.assert_allclose(again, log_p, atol=1e-6)
    assert np.array_equal(x, (cond >= 0.5).astype(np.float32))


def test_tempered_sampling_uses_one_uniform_per_row_and_dimension():
    nade = _random_nade(dims=6, seed=1)
    rng = np.random.RandomState(5)
    x, log_p = nade.sample(n=3, temperature=1.0, rng=rng)
    np.testing.assert_allclose(nade.log_prob(x)[0], log_p, atol=1e-6)
    # Replaying: draw i of row b is uniform number 3 * i + b.
    u = np.random.RandomState(5).random_sample(18).reshape(6, 3).T
    a = np.repeat(nade.b_enc, 3, axis=0).copy()
    for i in range(6):
        logit = nade.b_dec[:, i] + sigmoid(a) @ nade.w_dec[i]
        assert np.array_equal(x[:, i], (u[:, i] < sigmoid(logit)).astype(np.float32))
        a += x[:, i : i + 1] * nade.w_enc[i]


def test_low_temperature_approaches_the_threshold_and_high_temperature_spreads():
    nade = _random_nade(dims=8, seed=2)
    cold = nade.sample(n=50, temperature=1e-4, rng=np.random.default_rng(0))[0]
    assert (cold == nade.sample(n=1)[0]).all()
    hot = nade.sample(n=200, temperature=100.0, rng=np.random.default_rng(0))[0]
    assert 0.35 < hot.mean() < 0.65


def test_external_biases_broadcast_and_are_required_without_internal_ones():
    nade = _random_nade(internal=False)
    with pytest.raises(ValueError, match="no internal biases"):
        nade.sample()
    b_enc, b_dec = np.zeros((1, 4)), np.full((2, 5), 3.0)
    x, _ = nade.sample(b_enc, b_dec)
    assert x.shape == (2, 5) and x.all()  # logits near +3: every p above 0.5
    with pytest.raises(ValueError, match="rows"):
        nade.sample(np.zeros((3, 4)), b_dec)
    with pytest.raises(ValueError, match="needs an rng"):
        nade.sample(b_enc, b_dec, temperature=1.0)
    with pytest.raises(ValueError, match="expected"):
        nade.log_prob(np.zeros((1, 3)), b_enc, b_dec[:1])


def test_inconsistent_weights_are_the_kits_weights_error():
    with pytest.raises(nn.WeightsError, match="do not agree"):
        Nade(np.zeros((5, 1, 4)), np.zeros((5, 3, 1)))
    with pytest.raises(nn.WeightsError, match="b_enc"):
        Nade(np.zeros((5, 1, 4)), np.zeros((5, 4, 1)), b_enc=np.zeros((1, 3)))
    with pytest.raises(nn.WeightsError, match="w_dec_t"):
        Nade.from_variables({"nade/w_enc": np.zeros((5, 1, 4))})


def test_parity_with_magentas_nade_graph():
    """magenta.common.Nade's log_prob, conditionals and threshold sample on its own random weights."""
    meta = json.loads((FIX / "reference.json").read_text())
    arr = dict(np.load(FIX / "reference.npz"))
    nade = Nade.from_variables({k: v for k, v in arr.items() if k.startswith("nade/")}, "nade/")
    assert (nade.num_dims, nade.num_hidden) == (meta["num_dims"], meta["num_hidden"])
    log_p, cond = nade.log_prob(arr["x"], arr["b_enc"], arr["b_dec"])
    assert np.abs(log_p - arr["log_prob"]).max() < 1e-4
    assert np.abs(cond - arr["cond_probs"]).max() < 1e-4
    x, log_p = nade.sample(arr["b_enc"], arr["b_dec"])
    assert np.array_equal(x, arr["sample"])
    assert np.abs(log_p - arr["sample_log_prob"]).max() < 1e-4
    internal = Nade.from_variables({k: v for k, v in arr.items() if k.startswith("internal/")}, "internal/")
    x, log_p = internal.sample(n=3)
    assert np.array_equal(x, arr["internal_sample"])
    assert np.abs(log_p - arr["internal_sample_log_prob"]).max() < 1e-4
