"""MusicVAE's flat model (BidirectionalLstmEncoder + CategoricalLstmDecoder) on NumPy.

Reads Magenta's variable names, so TF checkpoints, Magenta.js weights and our own exports all
load alike; every size comes from the weights' shapes. The arithmetic follows magenta 2.1.4:

* encoder: stacked bidirectional ``LSTMBlockCell`` layers (``encoder/cell_<i>/bidirectional_rnn``),
  layer i+1 reads [fw outputs; bw outputs]; the encoding is [final h fw; final h bw] of the top
  layer; ``mu = dense(enc)``, ``sigma = softplus(dense(enc))``.
* decoder: ``tanh(dense(z))`` split into (c, h) per layer (``decoder/z_to_initial_state``); at each
  step the input is [previous output one-hot (zeros first); z]; a ``MultiRNNCell`` of
  ``LSTMBlockCell``; logits = ``decoder/output_projection``. No residual/dropout at inference.
"""

import logging
import re
from typing import Mapping, Optional

import numpy as np

from magenta_api import nn

log = logging.getLogger(__name__)

_ENC = re.compile(r"^encoder/cell_(\d+)/bidirectional_rnn/(fw|bw)/multi_rnn_cell/cell_0/lstm_cell/kernel$")
_DEC = re.compile(r"^decoder/multi_rnn_cell/cell_(\d+)/lstm_cell/kernel$")


class WeightsError(ValueError):
    """The variables do not form a flat MusicVAE (missing or inconsistent tensors)."""


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


class MusicVAEEngine:
    """Encoder and decoder of one flat MusicVAE; everything is batched on axis 0."""

    def __init__(self, variables: Mapping[str, np.ndarray]):
        def get(name):
            if name not in variables:
                raise WeightsError(f"checkpoint lacks variable {name!r}")
            return variables[name]

        enc_layers = sorted({int(m.group(1)) for k in variables if (m := _ENC.match(k))})
        dec_layers = sorted({int(m.group(1)) for k in variables if (m := _DEC.match(k))})
        if not enc_layers or not dec_layers:
            raise WeightsError("not a flat MusicVAE checkpoint (no encoder/decoder LSTM variables)")
        if enc_layers != list(range(len(enc_layers))) or dec_layers != list(range(len(dec_layers))):
            raise WeightsError("LSTM layers are not numbered 0..n-1")

        def cell(prefix):
            return nn.LSTMCell(get(prefix + "/lstm_cell/kernel"), get(prefix + "/lstm_cell/bias"))

        self.enc = []
        for i in enc_layers:
            base = f"encoder/cell_{i}/bidirectional_rnn"
            self.enc.append((nn.MultiLSTM([cell(f"{base}/fw/multi_rnn_cell/cell_0")]),
                             nn.MultiLSTM([cell(f"{base}/bw/multi_rnn_cell/cell_0")])))
        self.mu_k, self.mu_b = _f32(get("encoder/mu/kernel")), _f32(get("encoder/mu/bias"))
        self.sigma_k, self.sigma_b = _f32(get("encoder/sigma/kernel")), _f32(get("encoder/sigma/bias"))
        self.dec = nn.MultiLSTM([cell(f"decoder/multi_rnn_cell/cell_{k}") for k in dec_layers])
        self.init_k = _f32(get("decoder/z_to_initial_state/kernel"))
        self.init_b = _f32(get("decoder/z_to_initial_state/bias"))
        self.out_k = _f32(get("decoder/output_projection/kernel"))
        self.out_b = _f32(get("decoder/output_projection/bias"))

        self.input_depth = self.enc[0][0].cells[0].input_size
        self.z_size = self.mu_k.shape[1]
        self.output_depth = self.out_k.shape[1]
        first = self.dec.cells[0]
        if first.input_size != self.output_depth + self.z_size:
            raise WeightsError(
                f"decoder input size {first.input_size} != output depth {self.output_depth} + z size {self.z_size}")
        if self.init_k.shape != (self.z_size, 2 * sum(c.units for c in self.dec.cells)):
            raise WeightsError("decoder/z_to_initial_state does not match the decoder layers")
        # Layer 0's input is [one-hot(previous); z]: its input projection is a row gather plus a
        # per-sequence constant, so the big [output_depth + z, 4H] matmul never runs per step.
        self._w_onehot = first.w_x[: self.output_depth]
        self._w_z = first.w_x[self.output_depth:]

    # --- encoder ---------------------------------------------------------------------------

    def encode(self, inputs, lengths=None):
        """(mu, sigma) for ``inputs`` [B, T, input_depth] with optional per-row ``lengths``."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.input_depth:
            raise ValueError(f"expected inputs [batch, steps, {self.input_depth}], got {x.shape}")
        batch, steps = x.shape[:2]
        lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
        for fw, bw in self.enc:
            (out_fw, out_bw), (st_fw, st_bw) = nn.bidirectional(fw, bw, x, lengths)
            x = np.concatenate([out_fw, out_bw], axis=-1)
        enc = np.concatenate([st_fw[-1].h, st_bw[-1].h], axis=-1)
        mu = enc @ self.mu_k + self.mu_b
        sigma = nn.softplus(enc @ self.sigma_k + self.sigma_b).astype(np.float32)
        return mu, sigma

    # --- decoder ---------------------------------------------------------------------------

    def initial_state(self, z):
        """The decoder's starting (c, h) per layer: ``tanh(dense(z))`` split in flatten order."""
        flat = np.tanh(z @ self.init_k + self.init_b)
        states, at = [], 0
        for c in self.dec.cells:
            states.append(nn.LSTMState(flat[:, at:at + c.units].copy(), flat[:, at + c.units:at + 2 * c.units].copy()))
            at += 2 * c.units
        return states

    def _step(self, prev_idx, z_proj, states):
        """One decoder step; ``prev_idx`` [B] are the previous classes (-1 = zero input)."""
        cells = self.dec.cells
        gates = states[0].h @ cells[0].w_h
        gates += z_proj
        if prev_idx is not None:
            gates += self._w_onehot[prev_idx]
        new = [cells[0]._gates_to_state(gates, states[0].c)]
        x = new[0].h
        for cell, st in zip(cells[1:], states[1:]):
            g = x @ cell.w_x
            g += st.h @ cell.w_h
            g += cell.bias
            new.append(cell._gates_to_state(g, st.c))
            x = new[-1].h
        logits = x @ self.out_k
        logits += self.out_b
        return logits, new

    def _z_proj(self, z):
        return z @ self._w_z + self.dec.cells[0].bias

    def decode_logits(self, z, targets):
        """Teacher-forced logits [B, T, C]: step t reads the class of ``targets`` [B, T] (indices)
        or [B, T, C] (one-hot) at t-1, as magenta's TrainingHelper with ``x_input`` shifted."""
        z = np.asarray(z, dtype=np.float32)
        targets = np.asarray(targets)
        idx = targets.argmax(-1) if targets.ndim == 3 else targets.astype(np.int64)
        states, z_proj = self.initial_state(z), self._z_proj(z)
        out = np.empty((z.shape[0], idx.shape[1], self.output_depth), np.float32)
        for t in range(idx.shape[1]):
            out[:, t], states = self._step(None if t == 0 else idx[:, t - 1], z_proj, states)
        return out

    def sample(self, z, length: int, temperature: float = 1.0, rng: Optional[np.random.Generator] = None,
               return_logits: bool = False):
        """Free-running decode of ``length`` steps from ``z`` [B, z_size]; each step samples from
        softmax(logits / temperature) (argmax when ``temperature`` is 0) and feeds the one-hot back.
        Returns class indices [B, length] (and the logits if asked)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_size:
            raise ValueError(f"expected z [batch, {self.z_size}], got {z.shape}")
        if temperature and rng is None:
            raise ValueError("sampling with a temperature needs an rng")
        states, z_proj = self.initial_state(z), self._z_proj(z)
        classes = np.empty((z.shape[0], length), np.int64)
        all_logits = np.empty((z.shape[0], length, self.output_depth), np.float32) if return_logits else None
        prev = None
        for t in range(length):
            logits, states = self._step(prev, z_proj, states)
            if return_logits:
                all_logits[:, t] = logits
            prev = nn.sample_categorical(logits, temperature, rng)
            classes[:, t] = prev
        return (classes, all_logits) if return_logits else classes
