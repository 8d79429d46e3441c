"""MusicVAE's flat model (BidirectionalLstmEncoder + CategoricalLstmDecoder) on NumPy.

Reads Magenta's variable names, so TF checkpoints, Magenta.js weights and our own exports all
load alike; every size comes from the weights' shapes. The arithmetic follows magenta 2.1.4:

* encoder: stacked bidirectional ``LSTMBlockCell`` layers (``encoder/cell_<i>/bidirectional_rnn``),
  layer i+1 reads [fw outputs; bw outputs]; the encoding is [final h fw; final h bw] of the top
  layer; ``mu = dense(enc)``, ``sigma = softplus(dense(enc))``.
* decoder: ``tanh(dense(z))`` split into (c, h) per layer (``decoder/z_to_initial_state``); at each
  step the input is [previous output one-hot (zeros first); z]; a ``MultiRNNCell`` of
  ``LSTMBlockCell``; logits = ``decoder/output_projection``. No residual/dropout at inference.

Paths. ``path="reference"`` is that arithmetic as written, on the kit's plain ``nn.LSTMCell`` /
``nn.MultiLSTM``. The others are the measured fast paths (bench/bench_musicvae.py), which
:meth:`MusicVAEEngine.path_for` and :meth:`~MusicVAEEngine.encoder_path_for` pick unless a caller
names one (``path=`` on :meth:`~MusicVAEEngine.sample`, :meth:`~MusicVAEEngine.decode_logits`,
:meth:`~MusicVAEEngine.encode`):

* ``"rows"``: batches on the fused kernels (``nn.FusedLSTM``); layer 0's input projection is a row
  gather plus a per-sequence z constant, so its [classes + z, 4H] product never runs per step.
* ``"feature_major"``: the same with transposed, row-blocked weights, for batches over ``FM_MIN``.
* ``"row"``: sampling one z on ``nn.RowLSTM`` layers stepped in place.
* ``"full"`` (encoder): every row full length, so the input projections of all steps are scaled
  once up front and no masking is needed.

Every path gives magenta's numbers (up to float rounding) and draws the same noise.
"""

import logging
import re
from collections.abc import Mapping

import numpy as np

from magenta_api import deadline, nn
from magenta_api.nn import WeightsError

__all__ = ["DECODER_PATHS", "ENCODER_PATHS", "FM_MIN", "MusicVAEEngine", "WeightsError"]

log = logging.getLogger(__name__)

_ENC = re.compile(r"^encoder/cell_(\d+)/bidirectional_rnn/(fw|bw)/multi_rnn_cell/cell_0/lstm_cell/kernel$")
_DEC = re.compile(r"^decoder/multi_rnn_cell/cell_(\d+)/lstm_cell/kernel$")

DECODER_PATHS = ("reference", "rows", "feature_major", "row")
ENCODER_PATHS = ("reference", "full")
FM_MIN = 8  # batches above this many rows decode feature-major (up to it: nn.matmul's per-row gemv)


def _gumbel(rng, shape):
    """Standard Gumbel noise, float32: -log(-log(u)) (several times faster than ``rng.gumbel``)."""
    u = rng.random(shape, dtype=np.float32)
    np.maximum(u, np.finfo(np.float32).tiny, out=u)
    np.log(u, out=u)
    np.negative(u, out=u)
    np.log(u, out=u)
    np.negative(u, out=u)
    return u


class MusicVAEEngine:
    """Encoder and decoder of one flat MusicVAE; everything is batched on axis 0.

    ``block_elements`` sizes the row blocks of the feature-major path's transposed weights (about
    4 MB of float32 by default; a small value gives many blocks).
    """

    def __init__(self, variables: Mapping[str, np.ndarray], block_elements: int = nn.BLOCK_ELEMENTS):
        enc_layers = sorted({int(m.group(1)) for k in variables if (m := _ENC.match(k))})
        dec_layers = sorted({int(m.group(1)) for k in variables if (m := _DEC.match(k))})
        if not enc_layers or not dec_layers:
            raise WeightsError("not a flat MusicVAE checkpoint (no encoder/decoder LSTM variables)")
        if enc_layers != list(range(len(enc_layers))) or dec_layers != list(range(len(dec_layers))):
            raise WeightsError("LSTM layers are not numbered 0..n-1")

        def cell(scope):
            return nn.LSTMCell(*nn.kernel_and_bias(variables, scope + "/lstm_cell/"))

        self.enc = [
            (
                nn.MultiLSTM([cell(f"encoder/cell_{i}/bidirectional_rnn/fw/multi_rnn_cell/cell_0")]),
                nn.MultiLSTM([cell(f"encoder/cell_{i}/bidirectional_rnn/bw/multi_rnn_cell/cell_0")]),
            )
            for i in enc_layers
        ]
        self.mu_k, self.mu_b = nn.kernel_and_bias(variables, "encoder/mu/")
        self.sigma_k, self.sigma_b = nn.kernel_and_bias(variables, "encoder/sigma/")
        self.dec = nn.MultiLSTM([cell(f"decoder/multi_rnn_cell/cell_{k}") for k in dec_layers])
        self.init_k, self.init_b = nn.kernel_and_bias(variables, "decoder/z_to_initial_state/")
        self.out_k, self.out_b = nn.kernel_and_bias(variables, "decoder/output_projection/")

        self.input_depth = self.enc[0][0].cells[0].input_size
        self.z_size = self.mu_k.shape[1]
        self.output_depth = self.out_k.shape[1]
        first = self.dec.cells[0]
        if first.input_size != self.output_depth + self.z_size:
            raise WeightsError(
                f"decoder input size {first.input_size} != output depth {self.output_depth} + z size {self.z_size}"
            )
        if self.init_k.shape != (self.z_size, 2 * sum(c.units for c in self.dec.cells)):
            raise WeightsError("decoder/z_to_initial_state does not match the decoder layers")
        # The fast paths' decoder: fused [w_x; w_h; bias] kernels (gates i, f, o, j, sigmoids folded into
        # one tanh). Layer 0's input rows are [one-hot part; z part].
        self.layers = [nn.FusedLSTM(c) for c in self.dec.cells]
        self.block_elements = block_elements
        self._fm = None  # feature-major weights, built on the first batch that takes that path

    # --- where a path is chosen ----------------------------------------------------------------

    def path_for(self, batch: int, logits: bool = False) -> str:
        """The decoder path of a batch of ``batch`` z (``logits``: the caller wants them back) when the
        caller names none: one z samples in place ("row"), batches up to ``FM_MIN`` rows go row-major
        ("rows"), larger ones feature-major."""
        if batch == 1 and not logits:
            return "row"
        return "feature_major" if batch > FM_MIN else "rows"

    @staticmethod
    def encoder_path_for(full_length: bool) -> str:
        """The encoder path when the caller names none: "full" when every row is full length (what the
        service sends), else the masked reference."""
        return "full" if full_length else "reference"

    # --- encoder ---------------------------------------------------------------------------------

    def encode(self, inputs, lengths=None, path: str | None = None):
        """(mu, sigma) for ``inputs`` [B, T, input_depth] with optional per-row ``lengths``."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.input_depth:
            raise ValueError(f"expected inputs [batch, steps, {self.input_depth}], got {x.shape}")
        batch, steps = x.shape[:2]
        lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
        full = bool(np.all(lengths >= steps))
        path = path or self.encoder_path_for(full)
        if path not in ENCODER_PATHS or (path == "full" and not full):
            raise ValueError(
                f"encoder path {path!r}: expected one of {ENCODER_PATHS} ('full' only when every row is full length)"
            )
        enc = self._encode_full(x) if path == "full" else self._encode_reference(x, lengths)  # [B, 2H]
        mu = enc @ self.mu_k + self.mu_b
        sigma = nn.softplus(enc @ self.sigma_k + self.sigma_b).astype(np.float32)
        return mu, sigma

    def _encode_reference(self, x, lengths):
        """Final [h fw; h bw] of the top layer, rows of different lengths (``dynamic_rnn`` masking)."""
        for fw, bw in self.enc:
            (out_fw, out_bw), (st_fw, st_bw) = nn.bidirectional(fw, bw, x, lengths)
            x = np.concatenate([out_fw, out_bw], axis=-1)  # [B, T, 2H]
        return np.concatenate([st_fw[-1].h, st_bw[-1].h], axis=-1)

    def _encode_full(self, x):
        """:meth:`_encode_reference` when every row is full length: the input projections of all steps
        are scaled once up front, leaving ~10 NumPy calls per step."""
        mm = nn.matmul
        batch, steps = x.shape[:2]
        for fw, bw in self.enc:
            outs, finals = [], []
            for backward, multi in ((False, fw), (True, bw)):
                cell = multi.cells[0]
                n, scale = cell.units, cell.gate_scale
                xp = cell.project_inputs(x[:, ::-1] if backward else x)  # [B, T, 4H]
                xp *= scale
                xp += cell.gate_shift
                h = np.zeros((batch, n), np.float32)
                c = np.zeros((batch, n), np.float32)
                out = np.empty((batch, steps, n), np.float32)
                for t in range(steps):
                    g = mm(h, cell.w_h)  # [B, 4H]
                    g *= scale
                    g += xp[:, t]
                    c, h = nn.scaled_lstm_update(g, c, n)
                    out[:, t] = h
                outs.append(out[:, ::-1] if backward else out)
                finals.append(h)
            x = np.concatenate(outs, axis=-1)
        return np.concatenate(finals, axis=-1)

    # --- decoder ---------------------------------------------------------------------------------

    def initial_state(self, z):
        """The decoder's starting (c, h) per layer: ``tanh(dense(z))`` split in flatten order."""
        flat = np.tanh(z @ self.init_k + self.init_b)  # [B, 2 * sum(H)]
        states, at = [], 0
        for c in self.dec.cells:
            states.append(
                nn.LSTMState(flat[:, at : at + c.units].copy(), flat[:, at + c.units : at + 2 * c.units].copy())
            )
            at += 2 * c.units
        return states

    def decode_logits(self, z, targets, path: str | None = None):
        """Teacher-forced logits [B, T, C]: step t reads the class of ``targets`` [B, T] (indices)
        or [B, T, C] (one-hot) at t-1, as magenta's TrainingHelper with ``x_input`` shifted."""
        z = np.asarray(z, dtype=np.float32)
        targets = np.asarray(targets)
        idx = targets.argmax(-1) if targets.ndim == 3 else targets.astype(np.int64)  # [B, T]
        step = self._stepper(self._decoder_path(path, z.shape[0], True), z)
        out = np.empty((z.shape[0], idx.shape[1], self.output_depth), np.float32)
        for t in range(idx.shape[1]):
            out[:, t] = step(None if t == 0 else idx[:, t - 1])
        return out

    def sample(
        self,
        z,
        length: int,
        temperature: float = 1.0,
        rng: np.random.Generator | None = None,
        return_logits: bool = False,
        path: str | None = None,
        on_step=None,
    ):
        """Free-running decode of ``length`` steps from ``z`` [B, z_size]; each step samples from
        softmax(logits / temperature) (argmax when ``temperature`` is 0) and feeds the one-hot back.
        Returns class indices [B, length] (and the logits if asked). ``on_step(done, classes)`` hears
        each decided step (streaming clients: bar by bar)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_size:
            raise ValueError(f"expected z [batch, {self.z_size}], got {z.shape}")
        if temperature and rng is None:
            raise ValueError("sampling with a temperature needs an rng")
        batch = z.shape[0]
        path = self._decoder_path(path, batch, return_logits)
        # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T); all the
        # noise comes from one call, so a seeded rng gives the same samples for the same request on
        # every path. Without logits to return, 1/T is folded into the (small) output projection.
        noise = _gumbel(rng, (length, batch, self.output_depth)) if temperature else None
        scale = np.float32(1.0 / temperature) if temperature and not return_logits else None
        if path == "row":
            return self._sample_row(z, length, noise, scale, on_step)
        step = self._stepper(path, z, scale)
        classes = np.empty((batch, length), np.int64)
        all_logits = np.empty((batch, length if return_logits else 0, self.output_depth), np.float32)
        prev = None
        for t in range(length):
            deadline.check()
            logits = step(prev)  # [B, C]
            if return_logits:
                all_logits[:, t] = logits
                if noise is not None:
                    logits = logits * np.float32(1.0 / temperature)
            if noise is not None:
                logits += noise[t]
            prev = logits.argmax(axis=-1)
            classes[:, t] = prev
            if on_step is not None:
                on_step(t + 1, classes)
        return (classes, all_logits) if return_logits else classes

    def _decoder_path(self, path, batch, logits):
        path = path or self.path_for(batch, logits)
        if path not in DECODER_PATHS or (path == "row" and (batch != 1 or logits)):
            raise ValueError(
                f"decoder path {path!r}: expected one of {DECODER_PATHS} ('row' samples one z and returns no logits)"
            )
        return path

    def _stepper(self, path, z, scale=None):
        """``step(prev) -> logits [B, C]`` of a batched path; ``prev`` is None at the first step, else the
        previous classes [B]. ``scale`` multiplies the output projection."""
        out_k, out_b = (self.out_k, self.out_b) if scale is None else (self.out_k * scale, self.out_b * scale)
        return {"reference": _Reference, "rows": _RowMajor, "feature_major": _FeatureMajor}[path](self, z, out_k, out_b)

    def _start(self, z):
        """(layer 0's per-sequence input part from z, bias included [B, 4H], the initial (c, h) per
        layer) for the fused kernels."""
        first = self.layers[0]
        return z @ first.w_x[self.output_depth :] + first.bias, [(s.c, s.h) for s in self.initial_state(z)]

    def _sample_row(self, z, length, noise, scale, on_step=None):
        """Sampling for a single z on :class:`~magenta_api.nn.RowLSTM` layers stepped in place (at this
        size a step is bound by reading the weights and by per-call overhead, not arithmetic)."""
        const0, states = self._start(z)
        table = self.layers[0].w_x[: self.output_depth] + const0  # [C, 4H]: layer 0's input part per previous class
        rows = [
            nn.RowLSTM(lay.w_h if k == 0 else lay.kernel, lay.units, c[0], h[0])
            for k, (lay, (c, h)) in enumerate(zip(self.layers, states))
        ]
        out_kb = np.concatenate([self.out_k, self.out_b[None]])  # [H + 1, C]: the top layer's [h | 1] reads it
        if scale is not None:
            out_kb *= scale
        noise = noise[:, 0] if noise is not None else None  # [T, C]
        logits = np.empty(self.output_depth, np.float32)
        top = rows[-1].h1
        classes = np.empty((1, length), np.int64)
        row = const0[0]
        for t in range(length):
            deadline.check()
            rows[0].step(row)
            nn.step_rows(rows, 1, len(rows))
            np.dot(top, out_kb, out=logits)
            if noise is not None:
                logits += noise[t]
            prev = int(logits.argmax())
            classes[0, t] = prev
            row = table[prev]
            if on_step is not None:
                on_step(t + 1, classes)
        return classes

    def _feature_major(self):
        """Decoder weights transposed ([4H, in], C-contiguous) and cut into blocks of rows, per layer
        (units, block starts, rows per block, blocks, bias column). Built on first use: a service that
        only ever decodes one z never pays the memory."""
        if self._fm is None:
            layers = []
            for k, lay in enumerate(self.layers):
                mats = [np.ascontiguousarray(w.T) for w in ((lay.w_h,) if k == 0 else (lay.w_x, lay.w_h))]
                rows = max(64, self.block_elements // mats[0].shape[1])
                cuts = list(range(0, mats[0].shape[0], rows))
                blocks = [tuple(m[a : a + rows] for m in mats) for a in cuts]
                layers.append((lay.units, cuts, rows, blocks, lay.bias[:, None].copy()))
            self._fm = layers
        return self._fm


class _Reference:
    """The decoder as magenta writes it: a MultiRNNCell (``nn.MultiLSTM`` of ``nn.LSTMCell``) reading
    [one-hot(previous class); z], logits = h @ output_projection."""

    def __init__(self, engine, z, out_k, out_b):
        self.dec, self.depth, self.out_k, self.out_b = engine.dec, engine.output_depth, out_k, out_b
        self.states = engine.initial_state(z)
        self.x = np.zeros((z.shape[0], engine.output_depth + engine.z_size), np.float32)  # [B, C + Z]
        self.x[:, engine.output_depth :] = z

    def __call__(self, prev):
        if prev is not None:
            self.x[:, : self.depth] = 0.0
            self.x[np.arange(len(prev)), prev] = 1.0
        h, self.states = self.dec.step(self.x, self.states)  # [B, H]
        return h @ self.out_k + self.out_b  # [B, C]


class _RowMajor:
    """Batched steps on the fused kernels, gates [B, 4H]; layer 0's input part is the one-hot row of
    the previous class plus the per-sequence z constant."""

    def __init__(self, engine, z, out_k, out_b):
        self.layers, self.out_k, self.out_b = engine.layers, out_k, out_b
        self.onehot = engine.layers[0].w_x[: engine.output_depth]  # [C, 4H]
        self.const0, self.states = engine._start(z)

    def __call__(self, prev):
        new, x = [], None
        for k, (lay, (c, h)) in enumerate(zip(self.layers, self.states)):
            if k == 0:
                part = self.const0 if prev is None else self.const0 + self.onehot[prev]  # [B, 4H]
            else:
                part = nn.matmul(x, lay.w_x)
                part += lay.bias
            c, x = lay.step(part, c, h)
            new.append((c, x))
        self.states = new
        logits = nn.matmul(x, self.out_k)  # [B, C]
        logits += self.out_b
        return logits


class _FeatureMajor:
    """:class:`_RowMajor` in feature-major layout: states [H, B], gates [4H, B] (each gate a block of
    whole rows), weights W^T [4H, in] in blocks of rows (``MusicVAEEngine._feature_major``). For a batch,
    OpenBLAS computes ``W^T @ X^T`` block by block about 25% faster than ``X @ W`` when each block of
    W^T is a few MB (single-threaded, [32, 2048] x [2048, 8192]: 14.4 ms vs 19 ms)."""

    def __init__(self, engine, z, out_k, out_b):
        self.layers = engine._feature_major()
        self.onehot = engine.layers[0].w_x[: engine.output_depth]  # [C, 4H]
        self.out_kT, self.out_b = np.ascontiguousarray(out_k.T), out_b  # [C, H]
        const0, states = engine._start(z)
        self.const0 = np.ascontiguousarray(const0.T)  # [4H, B]
        self.states = [(np.ascontiguousarray(c.T), np.ascontiguousarray(h.T)) for c, h in states]

    def __call__(self, prev):
        batch = self.const0.shape[1]
        new, x = [], None
        for k, ((n, cuts, rows, blocks, bias), (c_prev, h_prev)) in enumerate(zip(self.layers, self.states)):
            if k == 0:
                g = _gates_fm(blocks, cuts, rows, (h_prev,), batch)  # [4H, B]
                g += self.const0
                if prev is not None:
                    g += self.onehot[prev].T
            else:
                g = _gates_fm(blocks, cuts, rows, (x, h_prev), batch)
                g += bias
            c, h = nn.fused_lstm_update(g.T, c_prev.T, n)
            new.append((c.T, h.T))
            x = h.T
        self.states = new
        logits = (self.out_kT @ x).T  # [B, C]
        logits += self.out_b
        return logits


def _gates_fm(blocks, cuts, rows, inputs, batch):
    """sum_k W_k^T @ inputs_k into a fresh [4H, B] array, one block of W^T rows at a time."""
    g = np.empty((cuts[-1] + len(blocks[-1][0]), batch), np.float32)
    tmp = np.empty((rows, batch), np.float32) if len(inputs) > 1 else None
    mm = np.matmul
    for a, ws in zip(cuts, blocks):
        o = g[a : a + len(ws[0])]
        mm(ws[0], inputs[0], out=o)
        for w, x in zip(ws[1:], inputs[1:]):
            t = tmp[: len(w)]
            mm(w, x, out=t)
            o += t
    return g
