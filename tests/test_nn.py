"""The core NumPy kit against the textbook LSTM formula (TF's gate order i, j, f, o): the plain cell the
reference paths use, the fused and in-place layers of the fast paths, and the shared matmul and lookups."""

import numpy as np
import pytest

from magenta_api import nn


def sig(v):
    return 1 / (1 + np.exp(-v))


def textbook_step(kernel, bias, x, c, h, forget_bias=1.0):
    """One TF LSTM step in float64."""
    gates = np.concatenate([x, h], -1) @ kernel.astype(np.float64) + bias
    i, j, f, o = np.split(gates, 4, axis=-1)
    c = sig(f + forget_bias) * c + sig(i) * np.tanh(j)
    return c, sig(o) * np.tanh(c)


@pytest.fixture
def weights():
    rng = np.random.default_rng(3)
    inputs, units = 7, 5
    kernel = rng.standard_normal((inputs + units, 4 * units)).astype(np.float32)
    bias = rng.standard_normal(4 * units).astype(np.float32)
    return rng, inputs, units, kernel, bias


def test_fused_kernel_is_scaled_reordered_and_carries_the_bias_row(weights):
    _, m, n, kernel, bias = weights
    fused = nn.fused_lstm_kernel(kernel[:m], kernel[m:], bias, 1.0)
    assert fused.shape == (m + n + 1, 4 * n) and fused.dtype == np.float32 and fused.flags.c_contiguous
    i, j, f, o = np.split(np.vstack([kernel, bias[None]]), 4, axis=1)
    np.testing.assert_array_equal(fused[:, :n], i * 0.5)
    np.testing.assert_array_equal(fused[:-1, n : 2 * n], f[:-1] * 0.5)
    np.testing.assert_allclose(fused[-1, n : 2 * n], (f[-1] + 1.0) * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(fused[:, 2 * n : 3 * n], o * 0.5)
    np.testing.assert_array_equal(fused[:, 3 * n :], j)


def test_fused_update_equals_the_textbook_step_for_a_batch(weights):
    rng, m, n, kernel, bias = weights
    fused = nn.fused_lstm_kernel(kernel[:m], kernel[m:], bias, 1.0)
    x, c, h = rng.standard_normal((3, m)), rng.standard_normal((3, n)), rng.standard_normal((3, n))
    g = (np.concatenate([x, h], 1) @ fused[:-1] + fused[-1]).astype(np.float32)
    c1, h1 = nn.fused_lstm_update(g, c.astype(np.float32), n)
    c_ref, h_ref = textbook_step(kernel, bias, x, c, h)
    np.testing.assert_allclose(c1, c_ref, atol=1e-5)
    np.testing.assert_allclose(h1, h_ref, atol=1e-5)


def test_row_lstm_with_its_own_input_follows_the_textbook_over_many_steps(weights):
    rng, m, n, kernel, bias = weights
    fused = nn.fused_lstm_kernel(kernel[:m], kernel[m:], bias, 1.0)
    c, h = rng.standard_normal(n), rng.standard_normal(n)
    row = nn.RowLSTM(fused, n, c.astype(np.float32), h.astype(np.float32))
    assert row.input_size == m
    for _ in range(6):
        x = rng.standard_normal(m)
        row.x[:] = x
        row.step()
        c, h = textbook_step(kernel, bias, x, c, h)
        np.testing.assert_allclose(row.c, c, atol=1e-5)
        np.testing.assert_allclose(row.h, h, atol=1e-5)
    np.testing.assert_array_equal(row.h1, np.append(row.h, 1.0))
    assert row.c_h1 is None  # x sits between c and h


def test_input_less_row_lstm_takes_the_callers_projection(weights):
    rng, m, n, kernel, bias = weights
    fused = nn.fused_lstm_kernel(kernel[:m], kernel[m:], bias, 1.0)
    c, h = rng.standard_normal(n), rng.standard_normal(n)
    row = nn.RowLSTM(fused[m : m + n], n, c.astype(np.float32), h.astype(np.float32))
    assert row.input_size == 0
    for _ in range(6):
        x = rng.standard_normal(m)
        proj = (x @ fused[:m] + fused[-1]).astype(np.float32)
        row.step(proj)
        c, h = textbook_step(kernel, bias, x, c, h)
        np.testing.assert_allclose(row.h, h, atol=1e-5)
    np.testing.assert_array_equal(row.c_h1, np.concatenate([row.c, row.h, [1.0]]))


def test_lstm_cell_matches_the_textbook_formula(weights):
    rng, m, n, kernel, bias = weights
    cell = nn.LSTMCell(kernel, bias, forget_bias=1.0)
    x, c, h = rng.standard_normal((3, m)), rng.standard_normal((3, n)), rng.standard_normal((3, n))
    st = cell.step(x.astype(np.float32), nn.LSTMState(c.astype(np.float32), h.astype(np.float32)))
    c_ref, h_ref = textbook_step(kernel, bias, x, c, h)
    np.testing.assert_allclose(st.c, c_ref, atol=1e-5)
    np.testing.assert_allclose(st.h, h_ref, atol=1e-5)


def test_fused_layer_steps_equal_the_textbook_with_or_without_the_input_part(weights):
    rng, m, n, kernel, bias = weights
    layer = nn.FusedLSTM(nn.LSTMCell(kernel, bias))
    assert (layer.units, layer.input_size) == (n, m) and np.shares_memory(layer.w_xh, layer.kernel)
    x, c, h = (rng.standard_normal(s).astype(np.float32) for s in ((3, m), (3, n), (3, n)))
    c_ref, h_ref = textbook_step(kernel, bias, x, c, h)
    for c1, h1 in (layer.step_xh(x, c, h), layer.step(x @ layer.w_x + layer.bias, c, h)):
        np.testing.assert_allclose(c1, c_ref, atol=1e-5)
        np.testing.assert_allclose(h1, h_ref, atol=1e-5)


def test_matmul_matches_plain_matmul_for_every_batch_size():
    rng = np.random.default_rng(0)
    # a cache-sized weight, one over SMALL_WEIGHT (per-row products) and one over BLOCK_ELEMENTS (in blocks)
    for shape in ((64, 96), (300, 600), (1100, 1000)):
        w = rng.standard_normal(shape).astype(np.float32)
        for rows in (1, 2, 3, 5, 8, 9, 32):
            x = rng.standard_normal((rows, shape[0])).astype(np.float32)
            np.testing.assert_allclose(nn.matmul(x, w), x.astype(np.float64) @ w, rtol=1e-4, atol=1e-3)


def test_variables_are_found_under_either_spelling_or_named_when_missing():
    variables = {
        "a/weights": np.ones((2, 3), np.float64),
        "b/kernel": np.zeros((2, 3)),
        "b/bias": np.ones(3),
        "a/biases": np.arange(3),
    }
    kernel, bias = nn.kernel_and_bias(variables, "a/")
    assert kernel.dtype == np.float32 and kernel.flags.c_contiguous and bias.tolist() == [0, 1, 2]
    assert nn.kernel_and_bias(variables, "x/", "b/")[1].tolist() == [1, 1, 1]  # the first scope that has them
    with pytest.raises(nn.WeightsError, match="'c/kernel'"):
        nn.kernel_and_bias(variables, "c/")
    with pytest.raises(ValueError):  # WeightsError is a ValueError
        nn.variable(variables, "a/missing", "a/other")
