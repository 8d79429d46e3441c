"""The events RNN of magenta's ``events_rnn_graph`` in NumPy: a stack of BasicLSTMCells (forget bias
1.0), optionally an AttentionCellWrapper, and the ``fully_connected`` output layer.

Two attention layouts exist in published checkpoints: magenta 2.x wraps only the first layer
(``rnn/multi_rnn_cell/cell_0/attention_cell_wrapper/...``); older magenta, whose metagraphs the
published ``.mag`` bundles carry and which Magenta.js reads, wraps the whole stack
(``rnn/attention_cell_wrapper/multi_rnn_cell/...``). Both are one :class:`EventRnn` with
``wrapped`` = how many layers sit inside the wrapper.

State is a tuple of batch-first arrays: ``(c0, h0, c1, h1, ...)`` then, with attention,
``(attns, window, window features)``; :func:`gather_state` picks rows for beam search.

Paths. :meth:`EventRnn.step` on a batch is the reference: the layers on their fused kernels
(``nn.FusedLSTM``), the attention wrapper as magenta computes it (:meth:`.Attention.read`). The
measured fast paths (bench/bench_melody_rnn.py) are the fields of :class:`FastPaths`; which of them
a model takes is decided in :meth:`EventRnn._plan` and :meth:`EventRnn.path_for`, the only places
their thresholds are read, and the ``fast=`` argument of :class:`EventRnn` /
:meth:`EventRnn.from_variables` turns them off one by one (``fast=False``: all).
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from magenta_api import nn
from magenta_api.nn import LSTMCell, RowLSTM, WeightsError, matmul, step_rows

from .attention import Attention, AttentionWeights

__all__ = ["REFERENCE", "EventRnn", "FastPaths", "SingleRow", "WeightsError", "gather_state", "normalize_names"]

logger = logging.getLogger(__name__)

NEW_CELL = "rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/"
NEW_ATTN_CELL = "rnn/multi_rnn_cell/cell_0/attention_cell_wrapper/basic_lstm_cell/"
NEW_ATTN = "rnn/multi_rnn_cell/cell_0/attention_cell_wrapper/"
OLD_ATTN = "rnn/attention_cell_wrapper/"
OLD_CELL = "rnn/attention_cell_wrapper/multi_rnn_cell/cell_{i}/basic_lstm_cell/"


# TensorFlow 0.x scope names (CamelCase, ``Linear/Matrix``) -> the names TF 1.x+ gives the same variables.
_LEGACY = [
    (re.compile(r"(^|/)RNN/"), r"\1rnn/"),
    (re.compile(r"(^|/)MultiRNNCell/"), r"\1multi_rnn_cell/"),
    (re.compile(r"(^|/)Cell(\d+)/"), r"\1cell_\2/"),
    (re.compile(r"(^|/)BasicLSTMCell/"), r"\1basic_lstm_cell/"),
    (re.compile(r"(^|/)AttentionCellWrapper/"), r"\1attention_cell_wrapper/"),
    (re.compile(r"(^|/)Attention(_0)?/"), r"\1attention/"),
    (re.compile(r"(^|/)AttnOutputProjection/"), r"\1attn_output_projection/"),
    (re.compile(r"/AttnW(_0)?$"), "/attention/attn_w"),
    (re.compile(r"/AttnV(_0)?$"), "/attention/attn_v"),
    (re.compile(r"/attention/attention/"), "/attention/"),
    (re.compile(r"/Linear/Matrix$"), "/kernel"),
    (re.compile(r"/Linear/Bias$"), "/bias"),
]


def normalize_names(variables: Mapping) -> dict:
    """Variables under the names this engine looks up: TF 0.x names are mapped onto TF 1.x+ ones
    (names already in the modern form are kept as they are)."""
    out: dict = {}
    for name, value in variables.items():
        new = name
        for pattern, repl in _LEGACY:
            new = pattern.sub(repl, new)
        out.setdefault(new, value)
        out.setdefault(name, value)
    return out


def _has(variables, prefix):
    return any(prefix + leaf in variables for leaf in nn.KERNEL_NAMES)


def sparse_matmul(x, w):
    """``x @ w`` touching only the rows of ``w`` that some row of ``x`` uses: lookback and drum inputs
    are a few one-hots plus counters, so this reads a handful of weight rows instead of all."""
    cols = np.flatnonzero(x.any(axis=0))
    if len(cols) * 4 > w.shape[0]:
        return x @ w
    return x[:, cols] @ w[cols]


@dataclass(frozen=True)
class FastPaths:
    """The measured fast paths an :class:`EventRnn` may take; each is used only where
    :meth:`EventRnn._plan` finds that it applies. All off (:data:`REFERENCE`, or ``fast=False``) leaves
    the reference: every batch size through :meth:`EventRnn.step`, the attention wrapper's own input
    projection, the softmax with its maximum subtracted. All give magenta's numbers up to rounding."""

    single_row: bool = True  # a batch of one steps in place on 1-D buffers (SingleRow)
    composed_input: bool = True  # attention's input projection folded into layer 0, where that reads fewer bytes
    bounded_softmax: bool = True  # SingleRow's attention softmax skips the max, where the scores are bounded
    index_events: bool = True  # n=1 sampling of one-hot inputs runs on class indices (beam.sample_indices)


REFERENCE = FastPaths(single_row=False, composed_input=False, bounded_softmax=False, index_events=False)
NARROW_INPUT = 128  # SingleRow: vector inputs up to this wide take a dense product, wider ones their nonzero rows


class ComposedInput(NamedTuple):
    """The attention wrapper's input projection folded into layer 0's input kernel: layer 0's input part
    is ``x @ x_rows + attns @ attn_rows + bias``."""

    x_rows: np.ndarray  # [input, 4H]
    attn_rows: np.ndarray  # [attn_size, 4H]
    bias: np.ndarray  # [4H]

    @classmethod
    def fold(cls, att: Attention, first: nn.FusedLSTM) -> "ComposedInput":
        """linear([x; attns]) feeds only layer 0's ``x @ w_x``, so (x in_x + a in_a + b_in) w_x + b =
        x (in_x w_x) + a (in_a w_x) + (b_in w_x + b); products taken in float64 and rounded once
        (drum_kit: [attn 256 -> 518] then [518 -> 4x256] becomes one [256 -> 4x256])."""
        w = first.w_x.astype(np.float64)
        return cls(
            (att.in_x.astype(np.float64) @ w).astype(np.float32),
            (att.in_a.astype(np.float64) @ w).astype(np.float32),
            (att.in_bias.astype(np.float64) @ w + first.bias).astype(np.float32),
        )


class EventRnn:
    """LSTM stack (+ attention) + output layer; ``step`` maps inputs [B, D] to logits [B, C]."""

    def __init__(
        self,
        cells,
        fc_w,
        fc_b,
        attention: Attention | None = None,
        wrapped: int = 0,
        fast: bool | FastPaths = True,
    ):
        self.cells = list(cells)
        self.layers = [nn.FusedLSTM(c) for c in self.cells]
        self.fc_w = fc_w
        self.fc_b = fc_b
        self.attention = attention
        self.wrapped = wrapped if attention is not None else 0
        self.input_size = attention.input_size if attention is not None else self.cells[0].input_size
        self.num_classes = fc_w.shape[1]
        self.layer_sizes = [c.units for c in self.cells]
        self.fc_wb = np.ascontiguousarray(np.concatenate([fc_w, np.asarray(fc_b, np.float32)[None]]))
        self.fast = fast if isinstance(fast, FastPaths) else FastPaths() if fast else REFERENCE
        self._tables: dict = {}  # input-map lookup tables, built on first use
        self._plan()

    # -- where the fast paths are chosen ----------------------------------------------------------
    def _plan(self):
        """Settle, from :attr:`fast` and the weights, what every step of this model does: ``composed``
        (a :class:`ComposedInput` or None), ``bounded_softmax`` and ``narrow_input`` (SingleRow's)."""
        att, first, fast = self.attention, self.layers[0], self.fast
        self.composed = None
        # composing pays when [attn -> input] and [input -> 4H] read more bytes than [attn -> 4H] would
        if (
            att is not None
            and fast.composed_input
            and att.in_a.size + first.w_x.size > 1.5 * att.in_a.shape[0] * first.w_x.shape[1]
        ):
            self.composed = ComposedInput.fold(att, first)
        self.bounded_softmax = bool(att is not None and fast.bounded_softmax and att.scores_bounded)
        self.narrow_input = self.input_map()[1].shape[0] <= NARROW_INPUT

    def path_for(self, batch: int, one_hot: bool = False) -> str:
        """How a batch of ``batch`` sequences steps: "single_row" (:class:`SingleRow`) or "batched"
        (:meth:`step`). :meth:`run` and the beam search both ask here. The beam search also says whether
        the inputs are one-hot of the class just sampled: a single row of those is "indices" (sampled,
        stepped and injected on class indices, the events made once at the end: ``beam.sample_indices``)."""
        if batch != 1 or not self.fast.single_row:
            return "batched"
        return "indices" if one_hot and self.fast.index_events else "single_row"

    # -- the first linear map the inputs meet -----------------------------------------------------
    def input_map(self) -> tuple:
        """(name, rows R, bias beta): the inputs enter the model as ``x @ R + beta``. That is layer 0's
        input kernel without attention, the composed [inputs -> layer 0] map, or else the attention
        wrapper's own input projection (whose output layer 0 then reads with the wrapper's state)."""
        if self.attention is None:
            first = self.layers[0]
            return "layer0", first.w_x, first.bias
        if self.composed is not None:
            return "composed", self.composed.x_rows, self.composed.bias
        return "wrapper", self.attention.in_x, self.attention.in_bias

    def one_hot_rows(self):
        """``R + beta`` per input index: the whole input map of a one-hot input is one row lookup."""
        name, rows, beta = self.input_map()
        key = (name, "one-hot")
        if key not in self._tables:
            self._tables[key] = rows + beta
        return self._tables[key]

    def counter_rows(self, offset: int, bits: int):
        """For each value v of a ``bits``-bit counter at input ``offset`` (magenta's lookback encodings:
        +1 for a set bit, -1 for a clear one), the counter's part of the input map plus beta, so that a
        lookback input costs one lookup per hot index and one for the counter."""
        name, rows, beta = self.input_map()
        key = (name, "counter", offset, bits)
        if key not in self._tables:
            values = np.arange(1 << bits)[:, None] >> np.arange(bits) & 1
            signs = np.where(values, 1.0, -1.0)
            self._tables[key] = (signs @ rows[offset : offset + bits].astype(np.float64) + beta).astype(np.float32)
        return self._tables[key]

    @classmethod
    def from_variables(cls, variables: Mapping, attn_length: int = 0, fast: bool | FastPaths = True) -> "EventRnn":
        """Build from Magenta variable names (``kernel``/``bias``, TF 1.0's ``weights``/``biases`` or TF 0.x's
        ``Linear/Matrix``); ``fast`` as for :class:`EventRnn`."""
        variables = normalize_names(variables)
        if _has(variables, OLD_ATTN):
            cell_fmt, attn_prefix, layout = OLD_CELL, OLD_ATTN, "stack"
        elif _has(variables, NEW_ATTN):
            cell_fmt, attn_prefix, layout = NEW_CELL, NEW_ATTN, "first"
        else:
            cell_fmt, attn_prefix, layout = NEW_CELL, None, None
        cells = []
        i = 0
        while True:
            prefix = cell_fmt.format(i=i)
            if i == 0 and layout == "first":
                prefix = NEW_ATTN_CELL
            if not _has(variables, prefix):
                break
            cells.append(LSTMCell(*nn.kernel_and_bias(variables, prefix), forget_bias=1.0))
            i += 1
        if not cells:
            raise WeightsError("checkpoint has no rnn/multi_rnn_cell/cell_0 LSTM weights")
        fc_w, fc_b = nn.kernel_and_bias(variables, "fully_connected/")
        attention = None
        if attn_prefix:
            ik, ib = nn.kernel_and_bias(variables, attn_prefix)
            qk, qb = nn.kernel_and_bias(variables, attn_prefix + "attention/")
            # Magenta.js names the output projection attention_output_projection
            ok, ob = nn.kernel_and_bias(
                variables, attn_prefix + "attn_output_projection/", attn_prefix + "attention_output_projection/"
            )
            attn_w = nn.variable(variables, attn_prefix + "attention/attn_w")
            attn_w = attn_w.reshape(attn_w.shape[-2], attn_w.shape[-1])
            w = AttentionWeights(
                ik, ib, attn_w, nn.variable(variables, attn_prefix + "attention/attn_v").reshape(-1), qk, qb, ok, ob
            )
            attention = Attention(w, attn_length)
        wrapped = (len(cells) if layout == "stack" else 1) if attention else 0
        model = cls(cells, fc_w, fc_b, attention, wrapped, fast)
        logger.debug(
            "events rnn: layers %s, attention %s (%s), input %d, classes %d",
            model.layer_sizes,
            attn_length if attention else 0,
            layout,
            model.input_size,
            model.num_classes,
        )
        return model

    # -- state ------------------------------------------------------------------------------------
    def zero_state(self, batch: int) -> tuple:
        parts = []
        for cell in self.cells:
            z = np.zeros((batch, cell.units), np.float32)
            parts += [z, z.copy()]
        if self.attention is not None:
            parts += list(self.attention.zero_state(batch))
        return tuple(parts)

    # -- compute ----------------------------------------------------------------------------------
    def _run_layers(self, lo, hi, x, new, proj=None):
        """Layers lo..hi-1 on input ``x`` (or the first layer's ready ``proj``), updating ``new``."""
        for k in range(lo, hi):
            layer = self.layers[k]
            if k == lo and proj is not None:
                new[2 * k], new[2 * k + 1] = layer.step(proj, new[2 * k], new[2 * k + 1])
            else:
                new[2 * k], new[2 * k + 1] = layer.step_xh(x, new[2 * k], new[2 * k + 1])
            x = new[2 * k + 1]
        return x

    def _input_part(self, x, index):
        """``x @ R + beta`` of :meth:`input_map` for a batch; ``index`` [B] for one-hot inputs."""
        if index is not None:
            return self.one_hot_rows()[index]
        _, rows, beta = self.input_map()
        return sparse_matmul(x, rows) + beta

    def step(self, x, state, index=None):
        """One step for a batch: returns (logits [B, C], new state). For one-hot inputs pass the hot
        ``index`` [B] instead of ``x``: the input projection is then a row lookup, not a matmul."""
        new = list(state)
        n = len(self.layers)
        part = self._input_part(x, index)
        if self.attention is None:
            out = self._run_layers(0, n, None, new, part)
        else:
            att = self.attention
            attns, window, feats = state[2 * n :]
            if self.composed is not None:  # layer 0's input part straight from [x; attns]
                h = self._run_layers(0, self.wrapped, None, new, part + matmul(attns, self.composed.attn_rows))
            else:
                h = self._run_layers(0, self.wrapped, part + matmul(attns, att.in_a), new)
            query = np.concatenate(new[: 2 * self.wrapped], axis=1)
            out, attns, window, feats = att.read(query, h, window, feats)
            new[2 * n :] = [attns, window, feats]
            out = self._run_layers(self.wrapped, n, out, new)
        return matmul(out, self.fc_w) + self.fc_b, tuple(new)

    def single(self, state) -> "SingleRow":
        """A 1-row stepper on 1-D vectors, from a batch-of-one ``state``."""
        return SingleRow(self, state)

    def run(self, inputs, state=None):
        """Teacher-forced over ``inputs`` [B, T, D]: returns (logits [B, T, C], final state)."""
        batch, steps = inputs.shape[:2]
        state = self.zero_state(batch) if state is None else state
        if self.path_for(batch) == "single_row":
            runner = self.single(state)
            logits = np.empty((1, steps, self.num_classes), np.float32)
            for t in range(steps):
                logits[0, t] = runner.step_input(inputs[0, t])
            return logits, runner.state()
        logits = np.zeros((batch, steps, self.num_classes), np.float32)
        for t in range(steps):
            logits[:, t], state = self.step(inputs[:, t], state)
        return logits, state


def gather_state(state: tuple, rows) -> tuple:
    return tuple(a[rows] for a in state)


class SingleRow:
    """:meth:`EventRnn.step` for one sequence, in place on preallocated 1-D buffers
    (:class:`~magenta_api.nn.RowLSTM` per layer): at n=1 a step is a few dozen small NumPy calls, so
    biases ride in the matmuls (a trailing 1 in each input buffer) and results are written straight
    where the next call reads them. With attention, the window of past outputs sits in a buffer twice
    its length, so shifting it copies nothing.

    Layer 0 takes its input part from the caller (a one-hot row, lookback lookups or a dense vector
    through :meth:`EventRnn.input_map`), except behind an attention wrapper whose input projection is
    not composed into it: then the wrapper's output is layer 0's ``x``.
    """

    def __init__(self, model: EventRnn, state):
        self.model = model
        n = len(model.layers)
        self.att = att = model.attention
        self.map_name, self.in_rows, self.in_beta = model.input_map()
        self.one_hot = model.one_hot_rows()
        self.composed, self.bounded, self.narrow = model.composed, model.bounded_softmax, model.narrow_input
        self.rows = []
        for k, lay in enumerate(model.layers):
            own_input = k > 0 or self.map_name == "wrapper"
            self.rows.append(
                RowLSTM(lay.kernel if own_input else lay.w_h, lay.units, state[2 * k][0], state[2 * k + 1][0])
            )
        top = self.rows[-1]
        self.fc_in = top.h1
        if att is not None:
            attns, window, feats = state[2 * n :]
            length = window.shape[1]
            self.wrapped = model.wrapped
            inner = self.rows[self.wrapped - 1]
            self.attns = attns[0].copy()
            self.win = np.empty((2 * length, window.shape[2]), np.float32)
            self.fts = np.empty((2 * length, feats.shape[2]), np.float32)
            self.win[:length], self.fts[:length] = window[0], feats[0]
            self.at, self.length = 0, length
            self.query_kb = np.concatenate([att.query_kernel, np.asarray(att.query_bias, np.float32)[None]])
            self.out_hb = np.concatenate([att.out_h, np.asarray(att.out_bias, np.float32)[None]])
            self.inner_h1 = inner.h1
            # the query [c | h | 1] of a single wrapped input-less layer is one slice of its buffer
            self.query = self.rows[0].c_h1 if self.wrapped == 1 else None
            self.y = np.empty(att.vec, np.float32)
            self.t = np.empty((length, att.vec), np.float32)
            if self.wrapped < n:
                self.out = self.rows[self.wrapped].x
            else:
                buf = np.ones(att.size + 1, np.float32)
                self.out, self.fc_in = buf[:-1], buf
            self.wrapper_x = self.rows[0].x if self.map_name == "wrapper" else None
        self.proj = np.empty(self.in_rows.shape[1], np.float32)
        self.logits = np.empty(model.num_classes, np.float32)
        self._plain = _plain_stack(self.rows, model.fc_wb, self.logits) if att is None else None
        self._one_hot_rows: list | None = None  # the rows of ``one_hot`` as views, made on first use

    # -- inputs ------------------------------------------------------------------------------------
    def step_index(self, i):
        """Logits [C] after one step on the one-hot input of class ``i`` (the runner's own buffer, as
        every step's logits: valid until its next step)."""
        if self._plain is None:
            return self.step(self.one_hot[i])
        if self._one_hot_rows is None:  # a list lookup is cheaper than making a view at each step
            self._one_hot_rows = list(self.one_hot)
        return self._plain(self._one_hot_rows[i])

    def step_hots(self, hots, counter_rows, counter):
        """Logits [C] after one step on a lookback input: ones at ``hots``, and the counter's value
        ``counter`` looked up in ``counter_rows`` (:meth:`EventRnn.counter_rows`, beta included)."""
        rows = self.in_rows
        part = np.add(counter_rows[counter], rows[hots[0]], out=self.proj)
        for k in hots[1:]:
            part += rows[k]
        return self.step(part)

    def step_input(self, x):
        """Logits [C] after one step on the input vector ``x`` [D] (narrow inputs such as the key-melody
        encoding's 74 take the dense product; wide one-hot-like ones only read their nonzero rows:
        ``EventRnn.narrow_input``)."""
        if self.narrow:
            part = np.dot(x, self.in_rows)
        else:
            part = sparse_matmul(x[None], self.in_rows)[0]
        part += self.in_beta
        return self.step(part)

    # -- the step ------------------------------------------------------------------------------------
    def step(self, part):
        """Logits [C] after one step (the runner's buffer, valid until its next step); ``part`` is
        ``x @ R + beta`` of :meth:`EventRnn.input_map`."""
        rows, att = self.rows, self.att
        if att is None:
            assert self._plain is not None
            return self._plain(part)
        wrapped = self.wrapped
        if self.composed is not None:
            rows[0].step(np.add(part, np.dot(self.attns, self.composed.attn_rows), out=self.proj))
        else:
            np.add(part, np.dot(self.attns, att.in_a), out=self.wrapper_x)
            rows[0].step()
        step_rows(rows, 1, wrapped)
        # attention read over the window, against the wrapped layers' new state
        if self.query is not None:
            np.dot(self.query, self.query_kb, out=self.y)
        else:
            q = np.concatenate([v for r in rows[:wrapped] for v in (r.c, r.h)])
            np.dot(q, att.query_kernel, out=self.y)
            self.y += att.query_bias
        at, length = self.at, self.length
        t = np.add(self.fts[at : at + length], self.y, out=self.t)
        np.tanh(t, out=t)
        sc = np.dot(t, att.attn_v)  # [L] scores
        if not self.bounded:  # EventRnn.bounded_softmax: exp cannot overflow, the max changes only rounding
            sc -= sc.max()
        np.exp(sc, out=sc)
        sc /= sc.sum()
        self.attns = np.dot(sc, self.win[at : at + length])
        out = self.out
        np.dot(self.inner_h1, self.out_hb, out=out)
        out += np.dot(self.attns, att.out_a)
        if at + length == len(self.win):  # buffer end: move the newest length-1 rows to the front
            self.win[: length - 1] = self.win[at + 1 :]
            self.fts[: length - 1] = self.fts[at + 1 :]
            at = -1
        self.win[at + length] = out
        np.dot(out, att.attn_w, out=self.fts[at + length])
        self.at = at + 1
        if wrapped < len(rows):  # the attention output is already in the next layer's x
            rows[wrapped].step()
            step_rows(rows, wrapped + 1, len(rows))
        return np.dot(self.fc_in, self.model.fc_wb, out=self.logits)

    def state(self) -> tuple:
        """The batch-of-one state tuple (c0, h0, c1, h1, ..., [attns, window, features])."""
        out = []
        for r in self.rows:
            out += [r.c[None].copy(), r.h[None].copy()]
        if self.att is not None:
            at, length = self.at, self.length
            out += [self.attns[None], self.win[None, at : at + length].copy(), self.fts[None, at : at + length].copy()]
        return tuple(out)


def _plain_stack(rows, fc_wb, logits):
    """``step(part) -> logits`` for a stack without attention: :meth:`RowLSTM.step` of every layer, the
    copies between them (:func:`~magenta_api.nn.step_rows`) and the output layer, the same NumPy calls on
    the same buffers in the same order (so the same numbers), written out in one function over
    prebound buffers: at n=1 a layer's element-wise update costs about as much in Python calls as in
    arithmetic, so the loop does no attribute look-ups or method calls, and its ufuncs take ``out``
    positionally (parsing the keyword is a tenth of such a call)."""
    dot, tanh, mul, add, copyto = np.dot, np.tanh, np.multiply, np.add, np.copyto
    half = np.float32(0.5)

    def views(r):
        n = r.units
        return (r.gates, r.sig, r.i_f, r.j_c, r.tmp, r.tmp[:n], r.tmp[n:], r.c, r.h, r.o)

    first = rows[0]
    assert first.input_size == 0  # layer 0 takes its input part from the caller
    h0, k0, v0 = first.h, first.kernel, views(first)
    upper = [(rows[k - 1].h, r.x, r.inputs, r.kernel, views(r)) for k, r in enumerate(rows) if k > 0]
    fc_in = rows[-1].h1

    def step(part):
        g, sig, i_f, j_c, tmp, ta, tb, c, h, o = v0
        dot(h0, k0, out=g)
        add(g, part, g)
        tanh(g, g)
        mul(sig, half, sig)
        add(sig, half, sig)
        mul(i_f, j_c, tmp)
        add(ta, tb, c)
        tanh(c, h)
        mul(h, o, h)
        for below, x, inputs, kernel, (g, sig, i_f, j_c, tmp, ta, tb, c, h, o) in upper:
            copyto(x, below)
            dot(inputs, kernel, out=g)
            tanh(g, g)
            mul(sig, half, sig)
            add(sig, half, sig)
            mul(i_f, j_c, tmp)
            add(ta, tb, c)
            tanh(c, h)
            mul(h, o, h)
        return dot(fc_in, fc_wb, out=logits)

    return step
