"""NADE (neural autoregressive distribution estimator) in NumPy, as magenta's ``magenta/common/nade.py``.

One implementation for every model that ends in a NADE: the Pianoroll RNN-NADE (whose RNN gives the
NADE its biases each step) and MusicVAE's multi-label NADE drums decoder.

API::

    nade = Nade(w_enc, w_dec_t, b_enc=None, b_dec=None)      # or Nade.from_variables(variables, "nade/")
    nade.num_dims, nade.num_hidden                          # D binary dimensions, H hidden units
    log_p, cond_p = nade.log_prob(x, b_enc=None, b_dec=None)   # x [B, D] of 0/1 -> [B], [B, D]
    x, log_p = nade.sample(b_enc=None, b_dec=None, n=None, temperature=None, rng=None)  # [B, D], [B]

Weights are Magenta's variables: ``w_enc`` ``[D, 1, H]`` (``V``), ``w_dec_t`` ``[D, H, 1]`` (``W'``);
``[D, H]`` is accepted for both. ``b_enc`` ``[B or 1, H]`` and ``b_dec`` ``[B or 1, D]`` are the
external biases (a row of 1 is broadcast over the batch); without them the NADE's internal ``b_enc`` /
``b_dec`` variables are used, as Magenta's ``internal_bias=True``.

The arithmetic is Magenta's, in float32 and in its order: for each dimension ``i`` the hidden units
``a`` (starting at ``b_enc``) give ``logit_i = b_dec_i + sigmoid(a) @ W'_i`` and ``p_i = sigmoid(logit_i)``;
the value ``v_i`` (observed, or drawn) adds ``log(1e-6 + p_i)`` or ``log(1e-6 + 1 - p_i)`` to the
log-probability and ``v_i * V_i`` to ``a``.

Drawing (:meth:`Nade.sample`): ``temperature=None`` is Magenta's default, no randomness at all, ``v_i =
p_i >= 0.5``. With a temperature, ``v_i`` is a Bernoulli draw on ``logit_i / temperature`` (as Magenta's
``tfp.distributions.Bernoulli(logits=...)``): one uniform double per batch row per dimension from ``rng``
(``numpy.random.Generator`` or ``RandomState``), in dimension order, ``v_i = u < sigmoid(logit_i / T)``
(TensorFlow Probability's rule). The log-probability always scores ``v`` under the untempered ``p``, as
Magenta does.
"""

from collections.abc import Mapping

import numpy as np

from . import nn

EPS = np.float32(1e-6)  # magenta's _safe_log: log(1e-6 + x)


def sigmoid(x):
    """float32 logistic function, as TensorFlow's (no overflow warning for very negative inputs)."""
    x = np.asarray(x, np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _safe_log(x):
    return np.log(EPS + x)


class Nade:
    """A NADE with Magenta's weight layout; see the module docstring for the maths and the API."""

    def __init__(self, w_enc, w_dec_t, b_enc=None, b_dec=None):
        w_enc = np.asarray(w_enc, np.float32)
        w_dec_t = np.asarray(w_dec_t, np.float32)
        if w_enc.ndim == 3:
            w_enc = w_enc.reshape(w_enc.shape[0], w_enc.shape[2])
        if w_dec_t.ndim == 3:
            w_dec_t = w_dec_t.reshape(w_dec_t.shape[0], w_dec_t.shape[1])
        if w_enc.ndim != 2 or w_enc.shape != w_dec_t.shape:
            raise nn.WeightsError(
                f"NADE weights do not agree: w_enc {w_enc.shape}, w_dec_t {w_dec_t.shape} (expected [D, 1, H] and "
                "[D, H, 1])"
            )
        self.w_enc = np.ascontiguousarray(w_enc)  # [D, H]: V, row i added to a when v_i = 1
        self.w_dec = np.ascontiguousarray(w_dec_t)  # [D, H]: W', row i decodes dimension i
        self.num_dims, self.num_hidden = (int(s) for s in w_enc.shape)
        self.b_enc = None if b_enc is None else self._bias(b_enc, self.num_hidden, "b_enc")
        self.b_dec = None if b_dec is None else self._bias(b_dec, self.num_dims, "b_dec")

    @classmethod
    def from_variables(cls, variables: Mapping, prefix: str = "nade/") -> "Nade":
        """From a checkpoint's ``<prefix>w_enc`` / ``w_dec_t`` (and ``b_enc`` / ``b_dec`` when it has them)."""
        b_enc = variables.get(prefix + "b_enc")
        b_dec = variables.get(prefix + "b_dec")
        return cls(
            nn.variable(variables, prefix + "w_enc"),
            nn.variable(variables, prefix + "w_dec_t"),
            None if b_enc is None else np.asarray(b_enc, np.float32),
            None if b_dec is None else np.asarray(b_dec, np.float32),
        )

    @staticmethod
    def _bias(b, size: int, name: str) -> np.ndarray:
        b = np.asarray(b, np.float32)
        if b.ndim == 1:
            b = b[None]
        if b.ndim != 2 or b.shape[1] != size:
            raise nn.WeightsError(f"NADE {name} has shape {b.shape}; expected [batch, {size}]")
        return b

    def _biases(self, b_enc, b_dec, batch: int | None):
        b_enc = self.b_enc if b_enc is None else self._bias(b_enc, self.num_hidden, "b_enc")
        b_dec = self.b_dec if b_dec is None else self._bias(b_dec, self.num_dims, "b_dec")
        if b_enc is None or b_dec is None:
            raise ValueError("this NADE has no internal biases: pass b_enc and b_dec")
        rows = batch or max(len(b_enc), len(b_dec))
        if len(b_enc) == 1 != rows:
            b_enc = np.repeat(b_enc, rows, axis=0)
        if len(b_dec) == 1 != rows:
            b_dec = np.repeat(b_dec, rows, axis=0)
        if len(b_enc) != rows or len(b_dec) != rows:
            raise ValueError(f"NADE biases have {len(b_enc)} and {len(b_dec)} rows for a batch of {rows}")
        return b_enc, b_dec

    def _cond(self, a, b_dec, i):
        """(p_i, logit_i), each [B], for dimension ``i`` given the hidden units ``a`` [B, H]."""
        logit = b_dec[:, i] + sigmoid(a) @ self.w_dec[i]
        return sigmoid(logit), logit

    def log_prob(self, x, b_enc=None, b_dec=None):
        """Log-probability [B] of each row of ``x`` [B, D] (values 0/1), and the conditional
        probabilities p_i [B, D] of each dimension given the ones before it."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_dims:
            raise ValueError(f"NADE input has shape {x.shape}; expected [batch, {self.num_dims}]")
        b_enc, b_dec = self._biases(b_enc, b_dec, len(x))
        a = b_enc.copy()
        log_p = np.zeros(len(x), np.float32)
        cond = np.empty(x.shape, np.float32)
        for i in range(self.num_dims):
            p, _ = self._cond(a, b_dec, i)
            v = x[:, i]
            log_p += v * _safe_log(p) + (1 - v) * _safe_log(1 - p)
            cond[:, i] = p
            a += v[:, None] * self.w_enc[i]
        return log_p, cond

    def sample(self, b_enc=None, b_dec=None, n: int | None = None, temperature: float | None = None, rng=None):
        """Draw one value per batch row: ([B, D] float32 of 0/1, log-probability [B] under the untempered
        conditionals). ``n`` repeats single-row biases n times; ``temperature=None`` thresholds at 0.5
        (no ``rng`` needed), otherwise Bernoulli draws on logits / temperature from ``rng``."""
        b_enc, b_dec = self._biases(b_enc, b_dec, n)
        if temperature is not None and rng is None:
            raise ValueError("sampling a NADE with a temperature needs an rng")
        rows = len(b_enc)
        a = b_enc.copy()
        out = np.zeros((rows, self.num_dims), np.float32)
        log_p = np.zeros(rows, np.float32)
        for i in range(self.num_dims):
            p, logit = self._cond(a, b_dec, i)
            if temperature is None:
                v = (p >= 0.5).astype(np.float32)
            else:
                q = sigmoid(logit / np.float32(temperature))
                v = (rng.random(rows) < q).astype(np.float32)
            out[:, i] = v
            log_p += v * _safe_log(p) + (1 - v) * _safe_log(1 - p)
            on = v > 0
            if on.any():
                a[on] += self.w_enc[i]
        return out, log_p
