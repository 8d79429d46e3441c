"""The core NumPy kit's fused LSTM pieces against the textbook LSTM formula (TF's gate order i, j, f, o)."""

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
    rng, m, n, kernel, bias = weights
    fused = nn.fused_lstm_kernel(kernel[:m], kernel[m:], bias, 1.0)
    assert fused.shape == (m + n + 1, 4 * n) and fused.dtype == np.float32 and fused.flags.c_contiguous
    i, j, f, o = np.split(np.vstack([kernel, bias[None]]), 4, axis=1)
    np.testing.assert_array_equal(fused[:, :n], i * 0.5)
    np.testing.assert_array_equal(fused[:-1, n:2 * n], f[:-1] * 0.5)
    np.testing.assert_allclose(fused[-1, n:2 * n], (f[-1] + 1.0) * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(fused[:, 2 * n:3 * n], o * 0.5)
    np.testing.assert_array_equal(fused[:, 3 * n:], j)


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
    row = nn.RowLSTM(fused[m:m + n], n, c.astype(np.float32), h.astype(np.float32))
    assert row.input_size == 0
    for _ in range(6):
        x = rng.standard_normal(m)
        proj = (x @ fused[:m] + fused[-1]).astype(np.float32)
        row.step(proj)
        c, h = textbook_step(kernel, bias, x, c, h)
        np.testing.assert_allclose(row.h, h, atol=1e-5)
    np.testing.assert_array_equal(row.c_h1, np.concatenate([row.c, row.h, [1.0]]))
