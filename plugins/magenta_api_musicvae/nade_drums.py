"""MusicVAE's ``MultiLabelRnnNadeDecoder`` on NumPy: multi-label drum rolls drawn step by step from a NADE
whose biases the decoder LSTM gives (the NADE maths is the core's, :mod:`magenta_api.nade`).

Weights (magenta's names): the flat ``BidirectionalLstmEncoder``; ``decoder/z_to_initial_state``,
``decoder/multi_rnn_cell/cell_<k>``, ``decoder/output_projection`` (``[units, H + D]``: the NADE's
``b_enc`` then ``b_dec``) and ``decoder/nade/w_enc`` / ``w_dec_t``. The decoder reads [previous roll (D);
z]; the first previous roll is zeros. Decoding draws each step's roll from the NADE: thresholded at 0.5
with temperature 0 (magenta's ``temperature=None``), else Bernoulli draws on logits / temperature from
the request's rng, all uniforms drawn up front ([steps, batch, D]) so that a seed gives the same rolls
whatever the batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from magenta_api import deadline, nn
from magenta_api.nade import Nade

from .hierarchy import Encoder, _initial_state, _numbered

__all__ = ["NadeDrumsModel", "is_nade"]


def is_nade(variables: Mapping) -> bool:
    return "decoder/nade/w_enc" in variables


class _Columns:
    """An rng stand-in for :meth:`Nade.sample` that hands out pre-drawn uniforms, one column per call."""

    def __init__(self, u):
        self.u, self.i = u, 0

    def random(self, rows):
        col = self.u[:, self.i]
        self.i += 1
        return col


class NadeDrumsModel:
    """Encoder + NADE decoder of a ``nade-drums_2bar_*`` checkpoint; sizes from the weights."""

    def __init__(self, variables: Mapping[str, np.ndarray]):
        self.encoder = Encoder(variables)
        self.z_size = self.encoder.z_size
        self.input_depth = self.encoder.input_size
        self.nade = Nade.from_variables(variables, "decoder/nade/")
        self.output_depth = self.nade.num_dims
        layers = _numbered(variables, r"^decoder/multi_rnn_cell/cell_(\d+)/lstm_cell/kernel$")
        self.lstm = nn.MultiLSTM(
            [nn.LSTMCell(*nn.kernel_and_bias(variables, f"decoder/multi_rnn_cell/cell_{k}/lstm_cell/")) for k in layers]
        )
        self.init_k, self.init_b = nn.kernel_and_bias(variables, "decoder/z_to_initial_state/")
        self.out_k, self.out_b = nn.kernel_and_bias(variables, "decoder/output_projection/")
        h, d = self.nade.num_hidden, self.output_depth
        if self.out_k.shape[1] != h + d:
            raise nn.WeightsError(f"output_projection gives {self.out_k.shape[1]} values; the NADE needs {h} + {d}")
        if self.lstm.cells[0].input_size != d + self.z_size:
            raise nn.WeightsError(f"decoder input size {self.lstm.cells[0].input_size} != roll {d} + z {self.z_size}")
        self.units = [c.units for c in self.lstm.cells]

    def encode(self, inputs, lengths=None):
        return self.encoder.encode(np.asarray(inputs, np.float32), lengths)

    def _run(self, z, length, pick):
        """Decoder outputs [B, T, H + D]; ``pick(t, b_enc, b_dec)`` returns the roll fed back."""
        z = np.asarray(z, np.float32)
        states = [nn.LSTMState(c, h) for c, h in _initial_state(self.init_k, self.init_b, self.units, z)]
        x = np.zeros((z.shape[0], self.output_depth + self.z_size), np.float32)
        x[:, self.output_depth :] = z
        h = self.nade.num_hidden
        out = np.empty((z.shape[0], length, h + self.output_depth), np.float32)
        for t in range(length):
            deadline.check()
            top, states = self.lstm.step(x, states)
            o = top @ self.out_k + self.out_b
            out[:, t] = o
            x[:, : self.output_depth] = pick(t, o[:, :h], o[:, h:])
        return out

    def decode_outputs(self, z, targets):
        """Teacher-forced (decoder outputs [B, T, H + D], NADE probabilities of ``targets`` [B, T, D])."""
        y = np.asarray(targets, np.float32)
        probs = np.empty(y.shape, np.float32)

        def pick(t, b_enc, b_dec):
            probs[:, t] = self.nade.log_prob(y[:, t], b_enc, b_dec)[1]
            return y[:, t]

        return self._run(z, y.shape[1], pick), probs

    def sample(self, z, length, temperature=0.0, rng=None, return_outputs=False):
        """Rolls [B, length, D] (0/1)."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_size:
            raise ValueError(f"expected z [batch, {self.z_size}], got {z.shape}")
        if temperature and rng is None:
            raise ValueError("sampling with a temperature needs an rng")
        u = rng.random((length, z.shape[0], self.output_depth)) if temperature else None
        rolls = np.empty((z.shape[0], length, self.output_depth), np.float32)

        def pick(t, b_enc, b_dec):
            if u is None:
                roll, _ = self.nade.sample(b_enc, b_dec)
            else:
                roll, _ = self.nade.sample(b_enc, b_dec, temperature=temperature, rng=_Columns(u[t]))
            rolls[:, t] = roll
            return roll

        out = self._run(z, length, pick)
        return (rolls, out) if return_outputs else rolls
