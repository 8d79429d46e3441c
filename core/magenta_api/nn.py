"""NumPy building blocks shared by the engines, written to match TensorFlow's numbers.

Everything is batched on axis 0. LSTM cells follow ``tf.compat.v1.nn.rnn_cell.LSTMCell`` /
``BasicLSTMCell``: one kernel of shape ``[input_size + units, 4 * units]`` applied to
``concat([x, h])``, gates in the order i, j, f, o, and ``forget_bias`` added to f.

The engines' rules that are not about one model live here once: how a batch meets a weight
(:func:`matmul`), how a checkpoint's tensors are looked up (:func:`variable`, :func:`kernel_and_bias`,
:class:`WeightsError`) and the LSTM layouts, from the plain :class:`LSTMCell` (the reference paths)
to the fused :class:`FusedLSTM` and the in-place :class:`RowLSTM` that the fast paths step on.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


class WeightsError(ValueError):
    """The variables do not form the model an engine expects (a tensor is missing or inconsistent)."""


KERNEL_NAMES = ("kernel", "weights")  # TF 1.x+ Dense / fully_connected (TF 1.0 and slim say "weights")
BIAS_NAMES = ("bias", "biases")


def variable(variables: Mapping, *names) -> np.ndarray:
    """The first of ``names`` that ``variables`` holds, as a C-contiguous float32 array (a view when the
    checkpoint's array already is one): checkpoints of different TF versions spell some tensors
    differently. :class:`WeightsError` naming the first name when none is there."""
    for name in names:
        if name in variables:
            return np.ascontiguousarray(variables[name], dtype=np.float32)
    raise WeightsError(f"checkpoint lacks variable {names[0]!r}")


def kernel_and_bias(variables: Mapping, *scopes) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of a dense layer under the first of ``scopes`` (each ending in ``/``) that has
    them, under either spelling of :data:`KERNEL_NAMES` / :data:`BIAS_NAMES`."""
    return (
        variable(variables, *[s + k for s in scopes for k in KERNEL_NAMES]),
        variable(variables, *[s + b for s in scopes for b in BIAS_NAMES]),
    )


def softplus(x):
    """log(1 + exp(x)), as ``tf.nn.softplus``."""
    return np.logaddexp(0.0, x)


SMALL_WEIGHT = 1 << 17  # 512 KB of float32: stays in cache, so BLAS re-packing it costs little
BLOCK_ELEMENTS = 1 << 20  # 4 MB of float32: fits the last-level cache with room to spare


def matmul(x, w, out=None):
    """``x @ w`` for a batch of rows ``x`` [B, n] and a weight ``w`` [n, m], into ``out`` [B, m] when
    given (a step loop's preallocated buffer; ``x`` may be a column slice of a wider buffer).

    OpenBLAS's sgemm re-packs the whole weight on every call, which makes 2..8-row products with a
    weight bigger than :data:`SMALL_WEIGHT` several times slower than one-row ones (where it uses
    gemv). Those go through NumPy's stacked matmul, which calls gemv per row from C; a weight bigger
    than :data:`BLOCK_ELEMENTS` is walked in blocks of rows so that each block is read from memory
    once and served from cache to the other rows. One row, more than 8, or a small weight: plain BLAS.
    Same numbers either way, up to float rounding order.
    """
    rows = x.shape[0] if x.ndim == 2 else 0
    if not 1 < rows <= 8 or w.size <= SMALL_WEIGHT:
        return np.matmul(x, w, out=out)
    xs = x[:, None, :]
    if w.size <= BLOCK_ELEMENTS:
        if out is None:
            return (xs @ w)[:, 0]
        np.matmul(xs, w, out=out[:, None, :])
        return out
    step = max(16, BLOCK_ELEMENTS // w.shape[1])
    first = (xs[:, :, :step] @ w[:step])[:, 0]
    if out is None:
        out = first
    else:
        out[...] = first
    for s in range(step, w.shape[0], step):
        out += (xs[:, :, s : s + step] @ w[s : s + step])[:, 0]
    return out


SMALL_GEMM_MNK = 10**6  # OpenBLAS's AVX-512 cores multiply up to M * N * K = 100**3 without packing


@functools.cache
def small_gemm() -> bool:
    """Whether NumPy's BLAS is OpenBLAS on an AVX-512 core (SkylakeX, Cooperlake, SapphireRapids), whose
    small-matrix sgemm kernels skip the packing for products up to :data:`SMALL_GEMM_MNK`: there a
    batch of 2..8 rows is 2-3x faster as ``W^T @ X^T`` in row blocks of that size than as one gemv per
    row, while the AVX2 cores (Haswell, Zen) have no such kernel and per-row gemv stays faster."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a runtime dependency
        return False
    cores = {"skylakex", "cooperlake", "sapphirerapids"}
    return any(
        i.get("internal_api") == "openblas" and str(i.get("architecture", "")).lower() in cores
        for i in threadpool_info()
    )


def small_gemm_rows(batch: int, inputs: int) -> int:
    """Rows per block of a transposed weight ``W^T`` [out, inputs] so that each block's product with a
    [inputs, batch] operand stays within :data:`SMALL_GEMM_MNK` (a multiple of 16, at least 16)."""
    return max(16, SMALL_GEMM_MNK // (max(1, batch) * inputs) // 16 * 16)


def gate_scale_shift(units: int, forget_bias: float) -> tuple:
    """Per-column factors that fold the sigmoids into one tanh: sigmoid(v) = (tanh(v / 2) + 1) / 2, so
    weights and bias times ``scale`` (i, f, o halved, exact in float), bias plus ``shift`` (half the
    forget bias on f) give pre-activations that :func:`scaled_lstm_update` turns into the TF update."""
    n = units
    scale = np.ones(4 * n, np.float32)
    scale[:n] = scale[2 * n :] = 0.5
    shift = np.zeros(4 * n, np.float32)
    shift[2 * n : 3 * n] = 0.5 * np.float32(forget_bias)
    return scale, shift


def scaled_lstm_update(g, c_prev, n: int) -> tuple:
    """(c, h) of a TF LSTM step from pre-activations ``g`` [..., 4n] made with :func:`gate_scale_shift`
    (g holds i/2, j, (f + forget_bias)/2, o/2; it is overwritten). Works on one row or a batch."""
    np.tanh(g, out=g)
    sig = g * 0.5
    sig += 0.5  # sigmoid of i, f, o (its j quarter is unused)
    c = sig[..., 2 * n : 3 * n] * c_prev
    c += sig[..., :n] * g[..., n : 2 * n]
    h = np.tanh(c)
    h *= sig[..., 3 * n :]
    return c, h


def fused_lstm_kernel(w_x, w_h, bias, forget_bias: float) -> np.ndarray:
    """``[w_x; w_h; bias]`` as one float32 array ``[inputs + units + 1, 4 * units]`` for the fused
    updates below: scaled as :func:`gate_scale_shift` says and with the gate columns reordered from
    TF's i, j, f, o to i, f, o, j. Then the three sigmoid gates are contiguous, [i | f] lines up with
    a [j | c] buffer (one product gives i*j and f*c), and the bias row lets a single-sequence step fold
    the bias into its matmul by appending a 1 to the input. Built block by block in one pass (the
    decoder of cat-mel_2bar_big is 355 MB)."""
    n, m = np.shape(w_h)[0], np.shape(w_x)[0]
    bias = np.asarray(bias, np.float32)
    out = np.empty((m + n + 1, 4 * n), np.float32)
    half = np.float32(0.5)
    for dst, src in ((0, 0), (1, 2), (2, 3), (3, 1)):  # i, f, o, j <- TF's i, j, f, o
        cols, tf_cols = slice(dst * n, (dst + 1) * n), slice(src * n, (src + 1) * n)
        for rows, w in ((slice(0, m), w_x), (slice(m, m + n), w_h)):
            block = np.asarray(w[:, tf_cols], np.float32)
            if src == 1:  # j keeps its scale
                out[rows, cols] = block
            else:
                np.multiply(block, half, out=out[rows, cols])
        out[-1, cols] = bias[tf_cols] if src == 1 else bias[tf_cols] * half
    out[-1, n : 2 * n] += half * np.float32(forget_bias)
    return out


def fused_lstm_update(g, c_prev, n: int) -> tuple:
    """(c, h) of a TF LSTM step from pre-activations ``g`` [..., 4n] in the order and scaling of
    :func:`fused_lstm_kernel` (g is overwritten). Works on one row or a batch."""
    np.tanh(g, out=g)
    sig = g[..., : 3 * n]
    sig *= 0.5
    sig += 0.5  # sigmoid of i, f, o
    c = g[..., n : 2 * n] * c_prev
    c += g[..., :n] * g[..., 3 * n :]
    h = np.tanh(c)
    h *= g[..., 2 * n : 3 * n]
    return c, h


class FusedLSTM:
    """One LSTM layer on a :func:`fused_lstm_kernel` ``[w_x; w_h; bias]``, for the engines' fast paths:
    ``w_x``, ``w_h``, ``w_xh`` (= [w_x; w_h]) and ``bias`` are views of that one array, which a
    :class:`RowLSTM` can also step on (``kernel``, or ``w_h`` alone when the caller projects the input)."""

    def __init__(self, cell: "LSTMCell"):
        n, m = cell.units, cell.input_size
        self.units, self.input_size = n, m
        self.kernel = fused_lstm_kernel(cell.w_x, cell.w_h, cell.bias, cell.forget_bias)
        self.w_x, self.w_h, self.w_xh, self.bias = (
            self.kernel[:m],
            self.kernel[m : m + n],
            self.kernel[: m + n],
            self.kernel[-1],
        )

    def step(self, part, c, h) -> tuple:
        """(c, h) after one batched step, given the input part ``part`` [B, 4n] of the pre-activations
        (bias included)."""
        g = matmul(h, self.w_h)  # [B, 4n]
        g += part
        return fused_lstm_update(g, c, self.units)

    def step_xh(self, x, c, h) -> tuple:
        """(c, h) after one batched step on input ``x`` [B, m]: [x | h] in one product (one BLAS call
        instead of two and an add)."""
        g = matmul(np.concatenate([x, h], axis=1), self.w_xh)  # [B, 4n]
        g += self.bias
        return fused_lstm_update(g, c, self.units)


class RowLSTM:
    """One LSTM layer stepping a single sequence in place, for autoregressive loops at batch size one,
    where a step is a handful of small NumPy calls and their overhead matters as much as the matmul.

    Everything lives in one buffer ``[i f o j | c | x | h | 1]``: the matmul reads ``[x | h | 1]``
    against a :func:`fused_lstm_kernel` (bias folded in), its output lands on the gates, one product of
    ``[i | f]`` with ``[j | c]`` gives both terms of the new c, and h is written where the next step
    reads it. Given only a kernel's recurrent rows (``units`` of them), the layer is input-less: the
    caller adds its own input projection (``step(proj)``) and ``[c | h | 1]`` is contiguous, which is the
    query an attention wrapper reads.
    """

    def __init__(self, kernel, units: int, c, h):
        n = units
        m = 0 if kernel.shape[0] == n else kernel.shape[0] - n - 1  # [x; h; bias] rows, or h rows only
        self.units, self.input_size = n, m
        self.buf = buf = np.zeros(6 * n + m + 1, np.float32)
        buf[-1] = 1.0
        self.gates, self.sig, self.i_f = buf[: 4 * n], buf[: 3 * n], buf[: 2 * n]
        self.o, self.j_c, self.c = buf[2 * n : 3 * n], buf[3 * n : 5 * n], buf[4 * n : 5 * n]
        self.x, self.h = buf[5 * n : 5 * n + m], buf[5 * n + m : 6 * n + m]
        self.h1 = buf[5 * n + m :]  # [h | 1]
        self.c_h1 = buf[4 * n :] if m == 0 else None  # [c | h | 1]
        self.inputs = buf[5 * n :]  # [x | h | 1]
        self.kernel = kernel
        self.tmp = np.empty(2 * n, np.float32)
        self.c[:], self.h[:] = c, h

    def step(self, proj=None):
        """One step: ``proj`` (the input part, bias included) when ``input_size`` is 0, else ``x`` as
        the caller filled it. Updates c and h in place."""
        n, g = self.units, self.gates
        if proj is None:  # np.dot: a little less call overhead than np.matmul for vector x matrix
            np.dot(self.inputs, self.kernel, out=g)
        else:
            np.dot(self.h, self.kernel, out=g)
            g += proj
        np.tanh(g, out=g)
        sig = self.sig
        np.multiply(sig, 0.5, out=sig)
        np.add(sig, 0.5, out=sig)
        tmp = self.tmp
        np.multiply(self.i_f, self.j_c, out=tmp)  # [i*j | f*c]
        np.add(tmp[:n], tmp[n:], out=self.c)
        np.tanh(self.c, out=self.h)
        np.multiply(self.h, self.o, out=self.h)


def step_rows(rows, lo: int, hi: int):
    """Step :class:`RowLSTM` layers ``lo..hi-1`` of a stack, each fed the new h of the layer below."""
    for k in range(lo, hi):
        np.copyto(rows[k].x, rows[k - 1].h)
        rows[k].step()


@dataclass
class LSTMState:
    c: np.ndarray
    h: np.ndarray


class LSTMCell:
    """One LSTM layer; ``kernel`` is [input_size + units, 4 * units], ``bias`` [4 * units].

    Weights are kept as float32, C-contiguous arrays (views of the checkpoint's memory maps when
    they already are) split into the input rows ``w_x`` and the recurrent rows ``w_h``. This is also
    the arithmetic of ``LSTMBlockCell`` (MusicVAE's cell, via magenta's ``lstm_utils.rnn_cell``): same
    layout, gate order and forget bias, no peepholes, no cell clipping. The engines' reference paths
    step on it; ``gate_scale`` and ``gate_shift`` (:func:`gate_scale_shift`) are what a fast path needs
    to apply the same scaling to pre-activations it computes itself.
    """

    def __init__(self, kernel, bias, forget_bias: float = 1.0):
        kernel = np.asarray(kernel)
        self.units = kernel.shape[1] // 4
        self.input_size = kernel.shape[0] - self.units
        self.w_x = np.ascontiguousarray(kernel[: self.input_size], dtype=np.float32)
        self.w_h = np.ascontiguousarray(kernel[self.input_size :], dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.forget_bias = np.float32(forget_bias)
        # sigmoid(x) = (tanh(x / 2) + 1) / 2: scaling i, f, o by 1/2 (and adding half the forget
        # bias to f) lets a single tanh serve all four gates.
        self.gate_scale, self.gate_shift = gate_scale_shift(self.units, self.forget_bias)

    def zero_state(self, batch: int, dtype=np.float32) -> LSTMState:
        z = np.zeros((batch, self.units), dtype)
        return LSTMState(z, z.copy())

    def project_inputs(self, x):
        """Input half of the gate pre-activations, for any leading shape: lets a caller do
        one big matmul over all time steps when the inputs are known in advance."""
        return (matmul(x, self.w_x) if x.ndim == 2 else x @ self.w_x) + self.bias

    def step(self, x, state: LSTMState, x_proj=None) -> LSTMState:
        """One time step; pass ``x_proj`` (from :meth:`project_inputs`) to skip the input matmul."""
        gates = matmul(state.h, self.w_h)
        gates += self.project_inputs(x) if x_proj is None else x_proj
        return self._gates_to_state(gates, state.c)

    def _gates_to_state(self, gates, c_prev) -> LSTMState:
        """The element-wise half of a step, on a freshly allocated ``gates`` array (used in place)."""
        gates *= self.gate_scale
        gates += self.gate_shift
        return LSTMState(*scaled_lstm_update(gates, c_prev, self.units))


class MultiLSTM:
    """A stack of LSTM layers, as ``MultiRNNCell``: the output of layer k feeds layer k+1."""

    def __init__(self, cells: Sequence[LSTMCell]):
        self.cells = list(cells)

    @property
    def units(self):
        return self.cells[-1].units

    def zero_state(self, batch: int, dtype=np.float32):
        return [c.zero_state(batch, dtype) for c in self.cells]

    def step(self, x, states, x_proj=None):
        """Returns (output h of the top layer, new list of states)."""
        new = []
        for k, (cell, st) in enumerate(zip(self.cells, states)):
            st = cell.step(x, st, x_proj if k == 0 else None)
            new.append(st)
            x = st.h
        return x, new

    def run(self, inputs, states=None, lengths: np.ndarray | None = None):
        """Run over ``inputs`` [B, T, D] as ``dynamic_rnn``: outputs past a row's length are
        zero and its state stops changing. Returns (outputs [B, T, H], final states)."""
        batch, steps = inputs.shape[:2]
        if lengths is not None and np.all(np.asarray(lengths) >= steps):
            lengths = None  # every row is full length: no masking needed
        states = states if states is not None else self.zero_state(batch, np.float32)
        inputs = np.asarray(inputs, dtype=np.float32)
        x_proj = self.cells[0].project_inputs(inputs)
        out = np.zeros((batch, steps, self.units), dtype=np.float32)
        for t in range(steps):
            h, new = self.step(inputs[:, t], states, x_proj[:, t])
            if lengths is None:
                states = new
                out[:, t] = h
            else:
                live = (t < lengths)[:, None]
                states = [LSTMState(np.where(live, n.c, o.c), np.where(live, n.h, o.h)) for n, o in zip(new, states)]
                out[:, t] = np.where(live, h, 0.0)
        return out, states


def reverse_sequence(x, lengths):
    """``tf.reverse_sequence`` on axis 1: reverse the first ``lengths[b]`` steps of each row."""
    if all(n >= x.shape[1] for n in lengths):
        return np.ascontiguousarray(x[:, ::-1])
    out = x.copy()
    for b, n in enumerate(lengths):
        out[b, :n] = x[b, :n][::-1]
    return out


def bidirectional(fw: MultiLSTM, bw: MultiLSTM, inputs, lengths=None):
    """``bidirectional_dynamic_rnn``: returns ((out_fw, out_bw), (state_fw, state_bw)); the
    backward outputs are re-reversed so that step t lines up with the forward ones."""
    batch, steps = inputs.shape[:2]
    lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    out_fw, st_fw = fw.run(inputs, lengths=lengths)
    out_bw, st_bw = bw.run(reverse_sequence(inputs, lengths), lengths=lengths)
    return (out_fw, reverse_sequence(out_bw, lengths)), (st_fw, st_bw)


def log_softmax(logits, axis=-1):
    """log(softmax(logits)) along ``axis``, with the maximum subtracted first."""
    m = logits.max(axis=axis, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
