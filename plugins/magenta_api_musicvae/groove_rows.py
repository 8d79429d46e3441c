"""GrooVAE's decoder stepped in place: the fast sampling path of :class:`~.groove.GrooveModel`.

The reference path (``GrooveModel._run``) is ``GrooveLstmDecoder`` as magenta writes it, and allocates
every array of every step. This path computes the same numbers (up to float rounding) with a fixed
handful of NumPy calls per step on buffers bound once per call:

* One state buffer per row, ``[1 | x | h_0 | ... | h_top | 1]``: ``x`` is the vector fed back (27
  values). Layer 0 reads ``[1 | x | h_0]`` in one product with its kernel rows ``[constant; w_prev;
  w_h]``, every other layer reads ``[h_below | h_own]`` (the top layer ``[h_below | h_top | 1]``, its
  bias folded into the product) and the output projection reads ``[h_top | 1]``. Nothing is copied
  between layers.
* Each layer's gates ``[i f o j | c]`` on the fused kernels (``nn.FusedLSTM``: sigmoids folded into one
  tanh), updated as :func:`magenta_api.nn.fused_lstm_update` does, in seven in-place calls.
* The feedback without a sigmoid per step. A hit is ``u < sigmoid(logit / T)``, that is ``logit > T *
  log(u / (1 - u))``: the thresholds of every draw are computed before the loop (0 at temperature 0,
  magenta.js's ``logit > 0``). A velocity ``sigmoid(v) = (tanh(v / 2) + 1) / 2``: the output
  projection's velocity columns are halved (exact in float) so that one tanh over velocities and
  offsets gives ``[tanh(v / 2) | tanh(offset)]``, and layer 0's velocity rows are halved with their
  other half added to its bias, so the layer reads ``tanh(v / 2)`` for ``sigmoid(v)``.
* The outputs (hits, ``sigmoid`` velocities, ``tanh`` offsets) and the raw logits are made once at the
  end from the projections of all steps, with the reference's formulas.

Layer 0's constant (z's part of its input and the bias) is the first row of a copy of its kernel made
for one z (kept on a free list, so concurrent calls never share one); for a batch, and at every step
when the decoder reads controls (their part added), it is added per step instead. Products go through
``np.dot`` on 1-D views for one row (BLAS gemv), ``nn.matmul`` up to ``STACKED_MAX`` rows (one gemv per
row) and sgemm above.
"""

from __future__ import annotations

import numpy as np

from magenta_api import deadline, nn

__all__ = ["STACKED_MAX", "RowDecoder"]

STACKED_MAX = 6  # rows up to which the products run as one gemv per row (nn.matmul); sgemm above


class RowDecoder:
    """The weights of a GrooVAE ``CoreDecoder`` (fused layers) laid out for :meth:`sample` (built once
    per model: about the size of layer 0's kernel and the output projection)."""

    def __init__(self, core) -> None:
        if not core.fused:
            raise ValueError("the in-place GrooVAE decoder needs the fused layer kernels")
        d = core.depth // 3
        self.core, self.drums, self.depth = core, d, core.depth
        self.units = [lay.units for lay in core.layers]
        vel = slice(d, 2 * d)
        w_prev = core.w_prev.copy()
        w_prev[vel] *= np.float32(0.5)
        # layer 0 reads [1 | x | h_0]: row 0 is one z's constant (in a copy of its own, see sample); the
        # bias takes the velocities' other half (sigmoid(v) = tanh(v / 2) / 2 + 1 / 2)
        self.vel_shift = np.float32(0.5) * core.w_prev[vel].sum(0, dtype=np.float32)
        self.bias0 = core.layers[0].bias + self.vel_shift
        self.k0 = np.concatenate([self.bias0[None], w_prev, core.layers[0].w_h])
        self._free: list[np.ndarray] = []  # copies of k0 for one-row calls, one per call running at a time
        out_kb = np.concatenate([core.out_k, core.out_b[None]])
        out_kb[:, vel] *= np.float32(0.5)  # the velocities' projection halved: tanh of it is tanh(v / 2)
        self.out_kb = out_kb

    def sample(self, z, length, thresholds, controls=None):
        """``(outputs, raw)`` [B, length, depth] for ``z`` [B, Z]: a hit where the hit logit is above
        ``thresholds`` [length, B, drums] (float64); ``controls`` [B, length, control_size] or None."""
        core, d, depth = self.core, self.drums, self.depth
        z = np.asarray(z, np.float32)
        batch = z.shape[0]
        units = self.units
        # state [B, 1 | x | h_0 | ... | h_top | 1]
        at = np.cumsum([1 + depth, *units]).tolist()  # h_k starts at at[k]
        state = np.zeros((batch, at[-1] + 1), np.float32)
        state[:, -1] = 1.0
        state[:, 1 + d : 1 + 2 * d] = -1.0  # no velocities at the first step: tanh(v / 2) = -1 is sigmoid(v) = 0
        const = z @ core.w_z  # layer 0's z part plus its bias [B, 4H]
        const += self.bias0
        init = z @ core.init_k  # the initial (c, h) of every layer, flattened: tanh(dense(z))
        init += core.init_b
        np.tanh(init, out=init)
        gates = [np.empty((batch, 5 * n), np.float32) for n in units]  # [i f o j | c]
        a = 0
        for k, n in enumerate(units):
            gates[k][:, 4 * n :] = init[:, a : a + n]
            state[:, at[k] : at[k] + n] = init[:, a + n : a + 2 * n]
            a += 2 * n
        one = batch == 1
        per_step = None  # what layer 0 adds per step; None: its kernel's first row has it
        if controls is not None and core.control_size:
            part = np.asarray(controls, np.float32) @ core.w_ctl  # [B, T, 4H]
            part += const[:, None]
            per_step = np.ascontiguousarray(part.transpose(1, 0, 2))
        elif not one:
            per_step = [const] * length
        if per_step is None:
            state[:, 0] = 1.0
            try:
                k0 = self._free.pop()  # atomic: concurrent calls never share a copy
            except IndexError:
                k0 = self.k0.copy()
            k0[0] = const[0]
        else:
            k0 = self.k0  # row 0 reads the state's leading 0
        try:
            proj = self._loop(state, gates, at, k0, per_step, length, thresholds)
        finally:
            if per_step is None:
                self._free.append(k0)
        return self._finish(proj, thresholds)

    def _loop(self, state, gates, at, k0, per_step, length, thresholds):
        """The steps, on buffers and views bound once; the output projections [T, B, depth]."""
        core, d, depth, units = self.core, self.drums, self.depth, self.units
        batch = state.shape[0]
        top = len(units) - 1
        one = batch == 1

        def row(a):
            return a[0] if one else a

        if one:
            mm = np.dot
        elif batch <= STACKED_MAX:
            mm = nn.matmul
        else:
            mm = np.matmul
        s = row(state)
        no_adds = [None] * length
        per_step_adds = no_adds if per_step is None else [row(c) for c in per_step]
        layers = []
        for k, n in enumerate(units):
            g = row(gates[k])
            # what each step adds to the layer's product: layer 0's per-step constant, a middle layer's bias
            if k == 0:
                inp, w, adds = s[..., : at[1]], k0, per_step_adds  # [1 | x | h_0]
            elif k == top:
                inp, w, adds = s[..., at[k - 1] :], core.layers[k].kernel, no_adds  # [h_below | h_top | 1]
            else:
                bias = core.layers[k].bias
                inp, w, adds = s[..., at[k - 1] : at[k + 1]], core.layers[k].w_xh, [bias] * length
            tmp = row(np.empty((batch, 2 * n), np.float32))  # [i * j | f * c]
            layers.append(
                (
                    inp,
                    w,
                    adds,
                    g[..., : 4 * n],  # the four gates
                    g[..., : 3 * n],  # sigmoid gates
                    g[..., : 2 * n],  # [i | f]
                    g[..., 3 * n :],  # [j | c]
                    tmp,
                    tmp[..., :n],
                    tmp[..., n:],
                    g[..., 4 * n :],  # c
                    s[..., at[k] : at[k] + n],  # h
                    g[..., 2 * n : 3 * n],  # o
                    np.full(g[..., : 3 * n].shape, 0.5, np.float32),  # an array: a scalar operand costs more per call
                )
            )
        head = s[..., at[top] :]  # [h_top | 1]
        x_hits, x_rest = s[..., 1 : 1 + d], s[..., 1 + d : 1 + depth]
        proj = np.empty((length, batch, depth), np.float32)  # the output projections, velocities halved
        outs = [(row(p), row(p)[..., :d], row(p)[..., d:], row(u)) for p, u in zip(proj, thresholds)]
        add, mul, tanh, greater = np.add, np.multiply, np.tanh, np.greater
        hits = np.empty(x_hits.shape, bool)  # the comparison's own type: casting in the call costs more than after
        check = deadline.check
        for t in range(length):
            check()
            for inp, w, adds, g4, sig, i_f, j_c, tmp, tmp_a, tmp_b, c, h, o, half in layers:
                mm(inp, w, g4)
                extra = adds[t]
                if extra is not None:
                    add(g4, extra, g4)
                tanh(g4, g4)
                mul(sig, half, sig)
                add(sig, half, sig)
                mul(i_f, j_c, tmp)
                add(tmp_a, tmp_b, c)
                tanh(c, h)
                mul(h, o, h)
            p, p_hits, p_rest, u = outs[t]
            mm(head, self.out_kb, p)
            tanh(p_rest, x_rest)
            greater(p_hits, u, hits)
            x_hits[...] = hits
        return proj

    def _finish(self, proj, thresholds):
        """(outputs, raw) [B, T, depth] from the projections [T, B, depth] (velocities halved)."""
        d = self.drums
        raw = np.ascontiguousarray(proj.transpose(1, 0, 2))
        raw[..., d : 2 * d] *= np.float32(2.0)  # exact: the halved columns' products were exact halves
        outputs = np.empty_like(raw)
        outputs[..., :d] = raw[..., :d] > np.asarray(thresholds).transpose(1, 0, 2)
        outputs[..., d : 2 * d] = 1.0 / (1.0 + np.exp(-raw[..., d : 2 * d]))
        outputs[..., 2 * d :] = np.tanh(raw[..., 2 * d :])
        return outputs, raw


def thresholds(draws, temperature):
    """Hit thresholds [T, B, drums] on the logit (float64): ``u < sigmoid(logit / T)`` exactly when
    ``logit > T * log(u / (1 - u))`` (temperature 0 has no draws: its thresholds are zeros, ``logit > 0``)."""
    u = np.asarray(draws, np.float64)
    with np.errstate(divide="ignore"):
        return float(temperature) * (np.log(u) - np.log1p(-u))
