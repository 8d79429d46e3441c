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


def _gumbel(rng, shape):
    """Standard Gumbel noise, float32: -log(-log(u)) (several times faster than ``rng.gumbel``)."""
    u = rng.random(shape, dtype=np.float32)
    np.maximum(u, np.finfo(np.float32).tiny, out=u)
    np.log(u, out=u)
    np.negative(u, out=u)
    np.log(u, out=u)
    np.negative(u, out=u)
    return u


_FM_MIN = 8  # batches above this many rows decode in feature-major layout (below: nn.matmul's gemv path)
_BLOCK_ELEMENTS = 1 << 20  # rows of W^T per matmul: ~4 MB of float32 per block


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
        self._prepare_decoder()

    def _prepare_decoder(self):
        """Decoder weights laid out for the step loop.

        Each layer's kernel is fused (:func:`~magenta_api.nn.fused_lstm_kernel`): [w_x; w_h; bias] in one
        array, i, f, o columns pre-multiplied by 1/2 (exact in floating point) and half the forget bias
        folded into the bias, gates reordered to i, f, o, j, so one tanh per layer yields all four gates
        (sigmoid(x) = (tanh(x/2) + 1) / 2) with the fewest NumPy calls per step. ``w_x``, ``w_h`` and
        ``bias`` are views of it. Layer 0's input is [one-hot(previous); z]: its input projection is a
        row gather plus a per-sequence constant, so the [output_depth + z, 4H] matmul never runs per step.
        """
        self._layers = []
        for k, cell in enumerate(self.dec.cells):
            m, n = cell.input_size, cell.units
            kernel = nn.fused_lstm_kernel(cell.w_x, cell.w_h, cell.bias, cell.forget_bias)
            self._layers.append({"units": n, "kernel": kernel, "w_x": None if k == 0 else kernel[:m],
                                 "w_h": kernel[m:m + n], "bias": kernel[-1]})
        first = self._layers[0]["kernel"]
        self._onehot_s = first[:self.output_depth]
        self._w_z_s = first[self.output_depth:self.dec.cells[0].input_size]
        self._bias0_s = first[-1]
        self._fm = None  # feature-major copies, built on the first batch of more than _FM_MIN rows

    # --- feature-major (transposed) decoder for batches --------------------------------------

    def _feature_major(self):
        """Decoder weights transposed ([4H, in], C-contiguous) and cut into blocks of rows.

        For a batch of B rows OpenBLAS computes ``W^T @ X^T`` ([4H, in] @ [in, B]) block by block
        about 25% faster than ``X @ W`` when each block of W^T is a few MB (measured single-threaded
        on [32, 2048] x [2048, 8192]: 14.4 ms vs 19 ms), and the gates of a layer then lie in
        contiguous rows. Built lazily: a service that only ever decodes one z never pays the memory.
        """
        if self._fm is None:
            layers = []
            for lay in self._layers:
                mats = [np.ascontiguousarray(w.T) for w in (lay["w_x"], lay["w_h"]) if w is not None]
                rows = max(64, _BLOCK_ELEMENTS // mats[0].shape[1])
                cuts = list(range(0, mats[0].shape[0], rows))
                blocks = [tuple(m[a:a + rows] for m in mats) for a in cuts]
                layers.append((lay["units"], cuts, rows, blocks, lay["bias"][:, None].copy()))
            self._fm = {"layers": layers, "onehot": self._onehot_s, "out_kT": np.ascontiguousarray(self.out_k.T)}
        return self._fm

    @staticmethod
    def _gates_fm(blocks, cuts, rows, inputs, batch):
        """sum_k W_k^T @ inputs_k into a fresh [4H, B] array, one block of W^T rows at a time."""
        g = np.empty((cuts[-1] + len(blocks[-1][0]), batch), np.float32)
        tmp = np.empty((rows, batch), np.float32) if len(inputs) > 1 else None
        mm = np.matmul
        for a, ws in zip(cuts, blocks):
            o = g[a:a + len(ws[0])]
            mm(ws[0], inputs[0], out=o)
            for w, x in zip(ws[1:], inputs[1:]):
                t = tmp[:len(w)]
                mm(w, x, out=t)
                o += t
        return g

    @staticmethod
    def _cell_fm(g, c_prev, n):
        """:meth:`_cell` on feature-major gates [4H, B] (each gate is a block of whole rows)."""
        c, h = nn.fused_lstm_update(g.T, c_prev.T, n)
        return c.T, h.T

    def _step_fm(self, prev, const0, states, out_k, out_b):
        """:meth:`_step` in feature-major layout: ``const0`` is [4H, B], ``states`` (c, h) are
        [H, B]; ``out_k`` [C, H] (transposed). Returns (logits [B, C], new states)."""
        fm = self._fm
        batch = const0.shape[1]
        new, x = [], None
        for k, ((n, cuts, rows, blocks, bias), (c_prev, h_prev)) in enumerate(zip(fm["layers"], states)):
            if k == 0:
                g = self._gates_fm(blocks, cuts, rows, (h_prev,), batch)
                g += const0
                if prev is not None:
                    g += fm["onehot"][prev].T
            else:
                g = self._gates_fm(blocks, cuts, rows, (x, h_prev), batch)
                g += bias
            st = self._cell_fm(g, c_prev, n)
            new.append(st)
            x = st[1]
        logits = (out_k @ x).T
        logits += out_b
        return logits, new

    def _start_fm(self, z):
        """:meth:`_start` in feature-major layout."""
        self._feature_major()
        const0, states = self._start(z)
        return np.ascontiguousarray(const0.T), [(np.ascontiguousarray(c.T), np.ascontiguousarray(h.T))
                                                for c, h in states]

    # --- encoder ---------------------------------------------------------------------------

    def encode(self, inputs, lengths=None):
        """(mu, sigma) for ``inputs`` [B, T, input_depth] with optional per-row ``lengths``."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.input_depth:
            raise ValueError(f"expected inputs [batch, steps, {self.input_depth}], got {x.shape}")
        batch, steps = x.shape[:2]
        lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
        if np.all(lengths >= steps):
            enc = self._encode_full(x)
        else:
            enc = self._encode_masked(x, lengths)
        mu = enc @ self.mu_k + self.mu_b
        sigma = nn.softplus(enc @ self.sigma_k + self.sigma_b).astype(np.float32)
        return mu, sigma

    def _encode_masked(self, x, lengths):
        """Final [h fw; h bw] of the top layer, rows of different lengths (``dynamic_rnn`` masking)."""
        for fw, bw in self.enc:
            (out_fw, out_bw), (st_fw, st_bw) = nn.bidirectional(fw, bw, x, lengths)
            x = np.concatenate([out_fw, out_bw], axis=-1)
        return np.concatenate([st_fw[-1].h, st_bw[-1].h], axis=-1)

    def _encode_full(self, x):
        """:meth:`_encode_masked` when every row is full length (what the service sends): the input
        projections of all steps are scaled once up front, leaving ~10 NumPy calls per step."""
        mm = nn.matmul
        batch, steps = x.shape[:2]
        for fw, bw in self.enc:
            outs, finals = [], []
            for backward, multi in ((False, fw), (True, bw)):
                cell = multi.cells[0]
                n, scale = cell.units, cell._scale
                xp = cell.project_inputs(x[:, ::-1] if backward else x)  # [B, T, 4H]
                xp *= scale
                xp += cell._shift
                h = np.zeros((batch, n), np.float32)
                c = np.zeros((batch, n), np.float32)
                out = np.empty((batch, steps, n), np.float32)
                for t in range(steps):
                    g = mm(h, cell.w_h)
                    g *= scale
                    g += xp[:, t]
                    c, h = nn.scaled_lstm_update(g, c, n)
                    out[:, t] = h
                outs.append(out[:, ::-1] if backward else out)
                finals.append(h)
            x = np.concatenate(outs, axis=-1)
        return np.concatenate(finals, axis=-1)

    # --- decoder ---------------------------------------------------------------------------

    def initial_state(self, z):
        """The decoder's starting (c, h) per layer: ``tanh(dense(z))`` split in flatten order."""
        flat = np.tanh(z @ self.init_k + self.init_b)
        states, at = [], 0
        for c in self.dec.cells:
            states.append(nn.LSTMState(flat[:, at:at + c.units].copy(), flat[:, at + c.units:at + 2 * c.units].copy()))
            at += 2 * c.units
        return states

    @staticmethod
    def _cell(g, c_prev, n):
        """Fused gates (i/2, (f + forget_bias)/2, o/2, j) -> (c, h); g is used in place."""
        return nn.fused_lstm_update(g, c_prev, n)

    def _step(self, prev, const0, states, out_k, out_b):
        """One decoder step. ``prev`` is the previous class: None (zero input), an int (batch of
        one) or an index array [B]; ``const0`` is layer 0's per-sequence z projection (+bias);
        ``states`` a list of (c, h). Returns (logits, new states)."""
        mm, layers = nn.matmul, self._layers
        lay = layers[0]
        g = mm(states[0][1], lay["w_h"])
        g += const0
        if prev is not None:
            g += self._onehot_s[prev]
        x = self._cell(g, states[0][0], lay["units"])
        new = [x]
        x = x[1]
        for lay, (c_prev, h_prev) in zip(layers[1:], states[1:]):
            g = mm(x, lay["w_x"])
            g += mm(h_prev, lay["w_h"])
            g += lay["bias"]
            st = self._cell(g, c_prev, lay["units"])
            new.append(st)
            x = st[1]
        logits = mm(x, out_k)
        logits += out_b
        return logits, new

    def _start(self, z):
        """(layer-0 constant, initial (c, h) states) for a batch of z."""
        states = [(s.c, s.h) for s in self.initial_state(z)]
        return z @ self._w_z_s + self._bias0_s, states

    def decode_logits(self, z, targets):
        """Teacher-forced logits [B, T, C]: step t reads the class of ``targets`` [B, T] (indices)
        or [B, T, C] (one-hot) at t-1, as magenta's TrainingHelper with ``x_input`` shifted."""
        z = np.asarray(z, dtype=np.float32)
        targets = np.asarray(targets)
        idx = targets.argmax(-1) if targets.ndim == 3 else targets.astype(np.int64)
        if z.shape[0] > _FM_MIN:
            const0, states = self._start_fm(z)
            step, out_k = self._step_fm, self._fm["out_kT"]
        else:
            const0, states = self._start(z)
            step, out_k = self._step, self.out_k
        out = np.empty((z.shape[0], idx.shape[1], self.output_depth), np.float32)
        for t in range(idx.shape[1]):
            out[:, t], states = step(None if t == 0 else idx[:, t - 1], const0, states, out_k, self.out_b)
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
        if z.shape[0] == 1 and not return_logits:
            return self._sample_one(z, length, temperature, rng)
        batch = z.shape[0]
        fm = batch > _FM_MIN
        const0, states = self._start_fm(z) if fm else self._start(z)
        classes = np.empty((batch, length), np.int64)
        all_logits = np.empty((batch, length, self.output_depth), np.float32) if return_logits else None
        # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T); all the
        # noise comes from one call, so a seeded rng gives the same samples for the same request.
        # Without logits to return, 1/T is folded into the (small) output projection.
        noise = _gumbel(rng, (length, batch, self.output_depth)) if temperature else None
        scale = 1.0 / temperature if (temperature and not return_logits) else 1.0
        out_k, out_b = (self.out_k * np.float32(scale), self.out_b * np.float32(scale)) if scale != 1.0 \
            else (self.out_k, self.out_b)
        step = self._step
        if fm:
            out_k, step = np.ascontiguousarray(out_k.T), self._step_fm
        single = batch == 1
        prev = None
        for t in range(length):
            logits, states = step(prev, const0, states, out_k, out_b)
            if return_logits:
                all_logits[:, t] = logits
                if noise is not None:
                    logits = logits * np.float32(1.0 / temperature)
            if noise is not None:
                logits += noise[t]
            if single:
                prev = int(logits[0].argmax())
                classes[0, t] = prev
            else:
                prev = logits.argmax(axis=-1)
                classes[:, t] = prev
        return (classes, all_logits) if return_logits else classes

    def _sample_one(self, z, length, temperature, rng):
        """:meth:`sample` for a single z, stepping :class:`~magenta_api.nn.RowLSTM` layers in place (at
        this size a step is bound by reading the weights and by per-call overhead, not arithmetic).
        Same numbers and the same random draws as the batched path."""
        const0, states = self._start(z)
        table = self._onehot_s + const0  # layer 0's whole input projection for each previous class
        rows = [nn.RowLSTM(lay["w_h"] if k == 0 else lay["kernel"], lay["units"], c[0], h[0])
                for k, (lay, (c, h)) in enumerate(zip(self._layers, states))]
        scale = np.float32(1.0 / temperature) if temperature else np.float32(1.0)
        out_kb = np.concatenate([self.out_k, self.out_b[None]]) * scale
        noise = _gumbel(rng, (length, 1, self.output_depth))[:, 0] if temperature else None
        logits = np.empty(self.output_depth, np.float32)
        top = rows[-1].h1
        classes = np.empty((1, length), np.int64)
        row = const0[0]
        for t in range(length):
            rows[0].step(row)
            nn.step_rows(rows, 1, len(rows))
            np.dot(top, out_kb, out=logits)
            if noise is not None:
                logits += noise[t]
            prev = int(logits.argmax())
            classes[0, t] = prev
            row = table[prev]
        return classes
