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

* ``"rows"``: batches on the fused kernels (``nn.FusedLSTM``), stepped in preallocated buffers; layer
  0's input projection is a row gather plus a per-sequence z constant, so its [classes + z, 4H]
  product never runs per step.
* ``"feature_major"``: the same with transposed weights [4H, in] multiplied in row blocks, for batches
  over ``FM_MIN`` (padded to a multiple of ``PAD`` columns), and for 2..``SMALL_BATCH`` rows when
  NumPy's OpenBLAS runs an AVX-512 core
  (``nn.small_gemm``): blocks within its small-matrix kernels' size skip sgemm's packing, 2-3x faster
  there than one gemv per row, which stays the faster choice on the AVX2 cores.
* ``"row"``: sampling one z on ``nn.RowLSTM`` layers stepped in place.
* ``"full"`` (encoder): every row full length, so the input projections of all steps are computed
  once up front (a gather of table rows for one-hot inputs), both directions step together and no
  masking is needed; ``"feature_major"`` (encoder) is that in the transposed layout, for
  2..``SMALL_BATCH`` rows on an AVX-512 OpenBLAS core.

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
ENCODER_PATHS = ("reference", "full", "feature_major")
FM_MIN = 6  # batches above this many rows decode feature-major (up to it: nn.matmul's per-row gemv)
SMALL_BATCH = 8  # on small-matrix kernels (nn.small_gemm) batches of 2..this many rows go feature-major too
PAD = 8  # feature-major columns, a multiple of this: OpenBLAS's AVX2 sgemm is 1.5-2x slower on ragged widths


def _columns(rows, cols):
    """``rows`` [B, n] transposed into a C-contiguous [n, cols] array, zero past column B."""
    out = np.zeros((rows.shape[1], cols), np.float32)
    out[:, : rows.shape[0]] = rows.T
    return out


def _sigmoid_gates(n):
    """Per-gate factors (TF order i, j, f, o) that turn tanh(v / 2) into sigmoid(v) on i, f, o
    (times 1/2 plus 1/2) and leave j's tanh (times 1 plus 0: exact)."""
    scale, shift = np.full(4 * n, 0.5, np.float32), np.full(4 * n, 0.5, np.float32)
    scale[n : 2 * n], shift[n : 2 * n] = 1.0, 0.0
    return scale, shift


class _Cell:
    """One LSTM layer's in-place update on preallocated buffers: gates ``g`` [..., 4n along ``axis``],
    ``c``, and ``h`` (a view into the caller's state buffer). Every slice the update reads is taken
    once here, so a step is its element-wise calls only. ``order="fused"`` is
    :func:`magenta_api.nn.fused_lstm_update`'s (i, f, o, j), ``"tf"`` is
    :func:`magenta_api.nn.scaled_lstm_update`'s (i, j, f, o); the same operations in the same order."""

    def __init__(self, g, c, h, n, axis, order):
        def gate(a, b):
            index = [slice(None)] * g.ndim
            index[axis] = slice(a * n, b * n)
            return g[tuple(index)]

        self.g, self.c, self.h, self.tmp = g, c, h, np.empty_like(c)
        self.fused = order == "fused"
        if self.fused:
            self.sig, self.i, self.f, self.o, self.j = gate(0, 3), gate(0, 1), gate(1, 2), gate(2, 3), gate(3, 4)
        else:  # tanh(v/2)*0.5 + 0.5 = sigmoid(v) on i, f, o; j keeps its tanh (times 1, plus 0: exact)
            self.i, self.j, self.f, self.o = gate(0, 1), gate(1, 2), gate(2, 3), gate(3, 4)
            shape = [1] * g.ndim
            shape[axis] = 4 * n
            self.scale, self.shift = (v.reshape(shape) for v in _sigmoid_gates(n))

    def update(self):
        g, c, tmp = self.g, self.c, self.tmp
        np.tanh(g, out=g)
        if self.fused:
            self.sig *= 0.5
            self.sig += 0.5  # sigmoid of i, f, o
        else:
            g *= self.scale
            g += self.shift
        c *= self.f
        np.multiply(self.i, self.j, out=tmp)
        c += tmp
        np.tanh(c, out=self.h)
        self.h *= self.o


def _one_hot_classes(x):
    """The class of each step [B, T] when every step of ``x`` [B, T, D] is exactly one-hot (a melody's
    encoder input), else None (drum rolls, anything else)."""
    classes = x.argmax(-1)
    hot = np.take_along_axis(x, classes[..., None], -1)
    if not np.all(hot == 1.0) or np.count_nonzero(x) != classes.size:
        return None
    return classes


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
        self._fm_onehot = None
        self._tables: dict = {}  # encoder input tables of one-hot inputs (_input_table)

    def warm(self) -> None:
        """Build what the batched paths build on first use (the feature-major decoder weights, and on a
        BLAS with small-matrix kernels the feature-major encoder weights and one-hot input tables), so
        that a process that forks after this shares them with its children."""
        self._feature_major()
        self._onehot_t()
        for layer in range(len(self.enc)):
            if layer == 0:
                for d in (0, 1):
                    self._input_table(0, d)
            if nn.small_gemm():
                self._encoder_weights_t(layer)

    # --- where a path is chosen ----------------------------------------------------------------

    def path_for(self, batch: int, logits: bool = False) -> str:
        """The decoder path of a batch of ``batch`` z (``logits``: the caller wants them back) when the
        caller names none: one z samples in place ("row"), batches up to ``FM_MIN`` rows go row-major
        ("rows"), larger ones feature-major; on a BLAS with small-matrix kernels
        (:func:`~magenta_api.nn.small_gemm`) every batch of 2 or more goes feature-major."""
        if batch == 1 and not logits:
            return "row"
        if batch > FM_MIN or (1 < batch <= SMALL_BATCH and nn.small_gemm()):
            return "feature_major"
        return "rows"

    @staticmethod
    def encoder_path_for(full_length: bool, batch: int = 1) -> str:
        """The encoder path when the caller names none: for full-length rows (what the service sends)
        "full", or "feature_major" for 2..``SMALL_BATCH`` rows on a BLAS with small-matrix kernels
        (:func:`~magenta_api.nn.small_gemm`); else the masked reference."""
        if not full_length:
            return "reference"
        return "feature_major" if 1 < batch <= SMALL_BATCH and nn.small_gemm() else "full"

    # --- encoder ---------------------------------------------------------------------------------

    def encode(self, inputs, lengths=None, path: str | None = None):
        """(mu, sigma) for ``inputs`` [B, T, input_depth] with optional per-row ``lengths``."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.input_depth:
            raise ValueError(f"expected inputs [batch, steps, {self.input_depth}], got {x.shape}")
        batch, steps = x.shape[:2]
        lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
        full = bool(np.all(lengths >= steps))
        path = path or self.encoder_path_for(full, batch)
        if path not in ENCODER_PATHS or (path != "reference" and not full):
            raise ValueError(
                f"encoder path {path!r}: expected one of {ENCODER_PATHS} ('full' only when every row is full length, "
                "as 'feature_major')"
            )
        if path == "reference":
            enc = self._encode_reference(x, lengths)  # [B, 2H]
        else:
            enc = self._encode_full(x) if path == "full" else self._encode_feature_major(x)
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
        are scaled once up front, both directions step together on [2, B, ...] buffers updated in place
        (one set of element-wise calls per step for the pair), and the first step, whose h is zero,
        skips its recurrent product."""
        batch, steps = x.shape[:2]
        h = np.empty(0, np.float32)
        for layer, (fw, bw) in enumerate(self.enc):
            cells = (fw.cells[0], bw.cells[0])
            n = cells[0].units
            xp = self._encoder_inputs(layer, x)  # [direction, B, T, 4H], the backward reversed
            scale = np.stack([c.gate_scale for c in cells])[:, None]  # [2, 1, 4H]
            g = np.empty((2, batch, 4 * n), np.float32)
            h = np.zeros((2, batch, n), np.float32)
            cell = _Cell(g, np.zeros((2, batch, n), np.float32), h, n, axis=2, order="tf")
            out = np.empty((2, batch, steps, n), np.float32) if layer + 1 < len(self.enc) else None
            for t in range(steps):
                if t == 0:
                    g[...] = xp[:, :, 0]
                else:
                    for d, lstm in enumerate(cells):
                        nn.matmul(h[d], lstm.w_h, out=g[d])
                    g *= scale
                    g += xp[:, :, t]
                cell.update()
                if out is not None:
                    out[:, :, t] = h
            if out is not None:
                x = np.concatenate([out[0], out[1][:, ::-1]], axis=-1)
        return np.concatenate([h[0], h[1]], axis=-1)

    def _encode_feature_major(self, x):
        """:meth:`_encode_full` in feature-major layout, for small batches on a BLAS with small-matrix
        kernels: states [2, H, B], gates [2, 4H, B], each direction's scaled recurrent weights transposed
        (``_encoder_weights_t``) and multiplied in row blocks of ``nn.small_gemm_rows`` rows."""
        batch, steps = x.shape[:2]
        h = np.empty(0, np.float32)
        for layer, (fw, _) in enumerate(self.enc):
            n = fw.cells[0].units
            xp = np.ascontiguousarray(self._encoder_inputs(layer, x).transpose(0, 2, 3, 1))  # [2, T, 4H, B]
            weights = self._encoder_weights_t(layer)  # per direction [4H, H]
            rows = nn.small_gemm_rows(batch, n)
            g = np.empty((2, 4 * n, batch), np.float32)
            h = np.zeros((2, n, batch), np.float32)
            cell = _Cell(g, np.zeros((2, n, batch), np.float32), h, n, axis=1, order="tf")
            out = np.empty((2, steps, n, batch), np.float32) if layer + 1 < len(self.enc) else None
            for t in range(steps):
                if t == 0:
                    g[...] = xp[:, 0]
                else:
                    for d in (0, 1):
                        for a in range(0, 4 * n, rows):
                            np.matmul(weights[d][a : a + rows], h[d], out=g[d, a : a + rows])
                    g += xp[:, t]
                cell.update()
                if out is not None:
                    out[:, t] = h
            if out is not None:
                x = np.concatenate([out[0].transpose(2, 0, 1), out[1][::-1].transpose(2, 0, 1)], axis=-1)
        return np.concatenate([h[0].T, h[1].T], axis=-1)

    def _encoder_inputs(self, layer, x):
        """The scaled input projections [2, B, T, 4H] of both directions of an encoder layer (the
        backward one over the reversed steps): a gather of :meth:`_input_table` rows when ``x`` is one-hot
        (exactly what the product gives), else the product."""
        batch, steps = x.shape[:2]
        cells = [m.cells[0] for m in self.enc[layer]]
        xp = np.empty((2, batch, steps, 4 * cells[0].units), np.float32)
        classes = _one_hot_classes(x) if layer == 0 else None
        for d, cell in enumerate(cells):
            if classes is not None:
                np.take(self._input_table(layer, d), classes[:, ::-1] if d else classes, axis=0, out=xp[d])
            else:
                np.add(cell.project_inputs(x[:, ::-1] if d else x) * cell.gate_scale, cell.gate_shift, out=xp[d])
        return xp

    def _encoder_weights_t(self, layer):
        """Both directions' recurrent weights of an encoder layer times their gate scale, transposed
        ([4H, H], C-contiguous), built on first use (scaling by 1/2 is exact, so the products are those
        of :meth:`_encode_full`)."""
        key = ("wt", layer)
        if key not in self._tables:
            self._tables[key] = [
                np.ascontiguousarray((m.cells[0].w_h * m.cells[0].gate_scale).T) for m in self.enc[layer]
            ]
        return self._tables[key]

    def _input_table(self, layer, direction):
        """The scaled input projection of every one-hot input [input_depth, 4H] of an encoder cell,
        ((w_x + bias) * gate_scale + gate_shift, what a one-hot row gives), built on first use."""
        key = (layer, direction)
        if key not in self._tables:
            cell = self.enc[layer][direction].cells[0]
            self._tables[key] = (cell.w_x + cell.bias) * cell.gate_scale + cell.gate_shift
        return self._tables[key]

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
        """Decoder weights transposed ([4H, in], C-contiguous: layer 0's recurrent rows, the other
        layers' [w_x; w_h]), per layer (units, W^T, bias column); :meth:`_fm_blocks` cuts them per batch.
        Built on first use: a service that only ever decodes one z never pays the memory."""
        if self._fm is None:
            self._fm = [
                (lay.units, np.ascontiguousarray((lay.w_h if k == 0 else lay.w_xh).T), lay.bias[:, None].copy())
                for k, lay in enumerate(self.layers)
            ]
        return self._fm

    def _fm_blocks(self, wt, batch):
        """Row blocks of a transposed weight [4H, in] for a batch: within the small-matrix kernels' size
        up to ``SMALL_BATCH`` rows, else about ``block_elements`` (a few MB, served from cache)."""
        inputs = wt.shape[1]
        rows = nn.small_gemm_rows(batch, inputs) if batch <= SMALL_BATCH else max(64, self.block_elements // inputs)
        rows = min(rows, max(64, self.block_elements // inputs))
        return [(a, wt[a : a + rows]) for a in range(0, wt.shape[0], rows)]

    def _onehot_t(self):
        """Layer 0's one-hot input rows transposed, [4H, C], for the feature-major gather (built once)."""
        if self._fm_onehot is None:
            self._fm_onehot = np.ascontiguousarray(self.layers[0].w_x[: self.output_depth].T)
        return self._fm_onehot


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
    """Batched steps on the fused kernels, gates [B, 4H], in place: every layer's h lives in one
    buffer [h0 | h1 | ...] (layer k + 1 reads h_k and its own h as column slices of it); layer 0's
    input part is the one-hot row of the previous class plus the per-sequence z constant."""

    def __init__(self, engine, z, out_k, out_b):
        self.layers, self.out_k, self.out_b = engine.layers, out_k, out_b
        self.onehot = engine.layers[0].w_x[: engine.output_depth]  # [C, 4H]
        self.const0, states = engine._start(z)
        batch = z.shape[0]
        units = [lay.units for lay in self.layers]
        self.at = np.cumsum([0, *units]).tolist()  # where each layer's h starts in the buffer
        self.h = np.empty((batch, self.at[-1]), np.float32)
        for (_, h), a, n in zip(states, self.at, units):
            self.h[:, a : a + n] = h
        self.g = [np.empty((batch, 4 * n), np.float32) for n in units]
        self.part = [np.empty((batch, 4 * n), np.float32) for n in units]
        self.cells = [
            _Cell(g, np.array(c, np.float32), self.h[:, a : a + n], n, axis=1, order="fused")
            for g, (c, _), a, n in zip(self.g, states, self.at, units)
        ]
        self.logits = np.empty((batch, engine.output_depth), np.float32)

    def __call__(self, prev):
        at, hs = self.at, self.h
        for k, lay in enumerate(self.layers):
            n, g = lay.units, self.g[k]
            if k == 0:
                nn.matmul(hs[:, :n], lay.w_h, out=g)
                g += self.const0
                if prev is not None:
                    g += self.onehot[prev]
            else:  # two products, not one with [w_x; w_h]: each weight then stays in the core's L2 for the other rows
                nn.matmul(hs[:, at[k - 1] : at[k]], lay.w_x, out=g)
                g += lay.bias
                g += nn.matmul(hs[:, at[k] : at[k] + n], lay.w_h, out=self.part[k])
            self.cells[k].update()
        nn.matmul(hs[:, at[-2] :], self.out_k, out=self.logits)
        self.logits += self.out_b
        return self.logits


class _FeatureMajor:
    """:class:`_RowMajor` in feature-major layout: h of every layer stacked [sum H, B], gates [4H, B]
    (each gate a block of whole rows, so the element-wise update runs on contiguous memory), weights
    [w_x; w_h]^T [4H, in + H] in blocks of rows (``MusicVAEEngine._feature_major``). For a batch,
    OpenBLAS computes ``W^T @ X^T`` block by block about 25% faster than ``X @ W`` when each block of
    W^T is a few MB (single-threaded, [32, 2048] x [2048, 8192]: 14.4 ms vs 19 ms)."""

    def __init__(self, engine, z, out_k, out_b):
        batch = self.batch = z.shape[0]
        # columns: the batch padded with zero rows to a multiple of PAD (the small-matrix kernels take any width)
        cols = batch if batch <= SMALL_BATCH and nn.small_gemm() else -(-batch // PAD) * PAD
        self.layers = [(n, engine._fm_blocks(wt, cols), bias) for n, wt, bias in engine._feature_major()]
        self.onehot_t = engine._onehot_t()  # [4H, C]
        self.out_kt, self.out_b = np.ascontiguousarray(out_k.T), out_b  # [C, H]
        const0, states = engine._start(z)
        self.const0 = _columns(const0, cols)  # [4H, cols]
        units = [n for n, *_ in self.layers]
        self.at = np.cumsum([0, *units]).tolist()
        self.h = np.zeros((self.at[-1], cols), np.float32)
        for (_, h), a, n in zip(states, self.at, units):
            self.h[a : a + n, :batch] = h.T
        self.g = [np.empty((4 * n, cols), np.float32) for n in units]
        self.cells = [
            _Cell(g, _columns(c, cols), self.h[a : a + n], n, axis=0, order="fused")
            for g, (c, _), a, n in zip(self.g, states, self.at, units)
        ]
        self.prev = np.zeros(cols, np.int64)  # the padding columns read class 0
        self.gather = np.empty_like(self.const0)
        self.logits_t = np.empty((engine.output_depth, cols), np.float32)
        self.logits = np.empty((batch, engine.output_depth), np.float32)
        # each layer's products as (W^T block, input rows of the state buffer, output rows of the gates)
        inputs = [self.h[: units[0]]] + [self.h[self.at[k - 1] : self.at[k] + n] for k, n in enumerate(units) if k]
        self.products = [
            [(w, x, g[a : a + len(w)]) for a, w in blocks] for (_, blocks, _), x, g in zip(self.layers, inputs, self.g)
        ]
        self.top = self.h[self.at[-2] :]

    def __call__(self, prev):
        mm = np.matmul
        for k, (_, _, bias) in enumerate(self.layers):
            g = self.g[k]
            for w, x, o in self.products[k]:
                mm(w, x, out=o)
            if k == 0:
                g += self.const0
                if prev is not None:
                    self.prev[: self.batch] = prev
                    np.take(self.onehot_t, self.prev, axis=1, out=self.gather)
                    g += self.gather
            else:
                g += bias
            self.cells[k].update()
        mm(self.out_kt, self.top, out=self.logits_t)
        np.add(self.logits_t[:, : self.batch].T, self.out_b, out=self.logits)
        return self.logits
