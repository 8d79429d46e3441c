"""Several requests' single sequences sampled together, each with exactly the numbers it gets alone.

Dynamic batching (:mod:`magenta_api.batching`) hands an events-RNN family several concurrent requests of
one output each. Alone, such a request samples on the model's single-row path (``beam.sample_single`` /
``beam.sample_indices`` on :class:`~.engine.SingleRow`), whose products are BLAS gemv calls. A batched
gemm would add the same terms in another order, so the log-likelihood in the answer would change in its
last bits (and, rarely, a draw near a class boundary). :class:`RowBatch` therefore does SingleRow's
arithmetic for all rows at once, op for op: each product is NumPy's stacked matmul (``x[:, None] @ W``),
which calls the same gemv per row from C, and the element-wise updates run on [B, ...] arrays. A step
then costs one set of NumPy calls for the batch instead of one per request (the Python overhead that
dominates a single row's step), and every row's numbers are its own.

:func:`generate_rows` is ``beam.generate`` with one output and no beam, for several rows: each row has
its own encoder, primer, length, temperature and rng; its primer runs alone (primers differ in length),
its draws come from its own rng (one uniform per step, as alone), and a row leaves the batch at the step
where its own run ends. :func:`batch_key` and :func:`run_batch` are the family hooks' bodies
(``MelodyRnnFamily``, ``ImprovRnnFamily``).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from magenta_api import InvalidRequest, Unprocessable, deadline

from . import beam, beam_request
from .engine import EventRnn, sparse_matmul

# Below this many rows a batch costs about what its rows cost alone on the index loop (embedded basic_rnn,
# 2 x 128 units, one BLAS thread: 6 rows 1.0x, 8 rows 1.45x, 32 rows 2.2x the throughput of one by one).
MIN_ROWS = 6


def rowdot(x, w):
    """``np.dot(x[b], w)`` for every row b of ``x`` [B, K] (``w`` [K, N], or one matrix per row
    [B, K, N]): the same gemv per row, from one NumPy call."""
    return np.matmul(x[:, None, :], w)[:, 0]


class RowBatch:
    """:class:`~.engine.SingleRow` for B rows: the same operations on the same operands per row (see the
    module doc), so that row b's logits equal what a SingleRow started from row b's state computes.

    State per layer: ``c``, ``h`` [B, units]; with attention, ``attns`` [B, size] and the window of past
    outputs and their features [B, L, ...], oldest first."""

    def __init__(self, model: EventRnn, states: list):
        self.model = model
        n = len(model.layers)
        self.att = model.attention
        map_name, self.in_rows, self.in_beta = model.input_map()
        self.one_hot = model.one_hot_rows()
        self.c = [np.concatenate([s[2 * k] for s in states]) for k in range(n)]
        self.h = [np.concatenate([s[2 * k + 1] for s in states]) for k in range(n)]
        if self.att is not None:
            att = self.att
            self.attns = np.concatenate([s[2 * n] for s in states])
            self.win = np.concatenate([s[2 * n + 1] for s in states])
            self.fts = np.concatenate([s[2 * n + 2] for s in states])
            self.wrapped = model.wrapped
            self.query_kb = np.concatenate([att.query_kernel, np.asarray(att.query_bias, np.float32)[None]])
            self.out_hb = np.concatenate([att.out_h, np.asarray(att.out_bias, np.float32)[None]])
            # SingleRow reads a single wrapped layer's [c | h | 1] against query_kb when that layer takes
            # its input part ready-made (no wrapper projection: it multiplies only h)
            self.fold_query = self.wrapped == 1 and map_name != "wrapper"

    def __len__(self) -> int:
        return len(self.h[0])

    def keep(self, rows) -> None:
        """Keep only ``rows`` (indices into the batch), in that order."""
        self.c = [a[rows] for a in self.c]
        self.h = [a[rows] for a in self.h]
        if self.att is not None:
            self.attns, self.win, self.fts = self.attns[rows], self.win[rows], self.fts[rows]

    # -- the input part (x @ R + beta) of each row, as SingleRow's step_index / step_hots / step_input -----
    def index_part(self, idx):
        return self.one_hot[idx]

    def hots_part(self, hots: list, table, counters):
        """``table[counter] + R[hots[0]] + R[hots[1]] + ...`` per row, added in that order."""
        rows = self.in_rows
        part = table[counters] + rows[[h[0] for h in hots]]
        for j in range(1, max(len(h) for h in hots)):
            sel = [b for b, h in enumerate(hots) if len(h) > j]
            part[sel] += rows[[hots[b][j] for b in sel]]
        return part

    def input_part(self, x):
        """The dense product of narrow inputs, the nonzero rows of wide ones (row by row: which rows
        those are differs per row), then beta."""
        if self.model.narrow_input:
            part = rowdot(x, self.in_rows)
        else:
            part = np.stack([sparse_matmul(row[None], self.in_rows)[0] for row in x])
        part += self.in_beta
        return part

    # -- the step ------------------------------------------------------------------------------------
    def _layer(self, k, x=None, proj=None):
        """Layer k's step on input ``x`` [B, m] (its whole kernel) or on ``proj``, the ready input part
        (its recurrent rows only), as :meth:`~magenta_api.nn.RowLSTM.step`."""
        lay = self.model.layers[k]
        n = lay.units
        if proj is None:
            g = rowdot(np.concatenate([x, self.h[k], np.ones((len(x), 1), np.float32)], axis=1), lay.kernel)
        else:
            g = rowdot(self.h[k], lay.w_h)
            g += proj
        np.tanh(g, out=g)
        sig = g[:, : 3 * n]
        np.multiply(sig, 0.5, out=sig)
        np.add(sig, 0.5, out=sig)
        c = np.multiply(g[:, :n], g[:, 3 * n :])  # i * j
        c += np.multiply(g[:, n : 2 * n], self.c[k])  # + f * c (RowLSTM adds f*c to i*j: the same sum)
        h = np.tanh(c)
        np.multiply(h, g[:, 2 * n : 3 * n], out=h)
        self.c[k], self.h[k] = c, h
        return h

    def _layers(self, lo, hi, x):
        for k in range(lo, hi):
            x = self._layer(k, x)
        return x

    def step(self, part):
        """Logits [B, C] after one step; ``part`` [B, ...] is each row's ``x @ R + beta``."""
        model, att = self.model, self.att
        n = len(model.layers)
        ones = np.ones((len(part), 1), np.float32)
        if att is None:
            top = self._layers(1, n, self._layer(0, proj=part))
            return rowdot(np.concatenate([top, ones], axis=1), model.fc_wb)
        wrapped = self.wrapped
        if model.composed is not None:
            h = self._layer(0, proj=part + rowdot(self.attns, model.composed.attn_rows))
        else:
            h = self._layer(0, x=part + rowdot(self.attns, att.in_a))
        h = self._layers(1, wrapped, h)
        if self.fold_query:
            y = rowdot(np.concatenate([self.c[0], self.h[0], ones], axis=1), self.query_kb)
        else:
            query = np.concatenate([v for k in range(wrapped) for v in (self.c[k], self.h[k])], axis=1)
            y = rowdot(query, att.query_kernel)
            y += att.query_bias
        t = self.fts + y[:, None, :]
        np.tanh(t, out=t)
        sc = np.matmul(t, att.attn_v)  # [B, L]
        if not model.bounded_softmax:
            sc -= sc.max(axis=1, keepdims=True)
        np.exp(sc, out=sc)
        sc /= sc.sum(axis=1, keepdims=True)
        self.attns = rowdot(sc, self.win)
        out = rowdot(np.concatenate([h, ones], axis=1), self.out_hb)
        out += rowdot(self.attns, att.out_a)
        self.win = np.concatenate([self.win[:, 1:], out[:, None]], axis=1)
        self.fts = np.concatenate([self.fts[:, 1:], rowdot(out, att.attn_w)[:, None]], axis=1)
        top = self._layers(wrapped, n, out)
        return rowdot(np.concatenate([top, ones], axis=1), model.fc_wb)


@dataclass
class Row:
    """One request's sequence: what ``beam.generate`` would be given for it with one output, no beam."""

    encoder: Any  # an InputEncoder (or a family's encoder with the same methods)
    primer: list
    num_steps: int
    temperature: float
    rng: Any


def can_batch(model: EventRnn, encoder=None) -> bool:
    """Whether a one-output, beam-less request on ``model`` samples on the single-row path that
    :class:`RowBatch` reproduces: not with the single-row path turned off, nor with events injected
    during generation (PolyphonyRNN's primer injection, which this module does not replay)."""
    return model.path_for(1) == "single_row" and getattr(encoder, "inject", None) is None


def batch_key(model: EventRnn, request, length: int, encoder=None):
    """A family's ``batch_key``: one-output requests without a beam, on a model that :func:`can_batch`,
    share a batch with the others of their length (in steps), whatever their primers, temperatures and
    modes; more outputs (already one batch of their own) and beam searches run alone (None)."""
    if request.num_outputs != 1 or beam_request.params(request)[:2] != (1, 1):
        return None
    if not can_batch(model, encoder):
        return None
    return ("rows", length)


def run_batch(model: EventRnn, requests: list, prepare, answer, generate) -> list:
    """A family's ``generate_batch``: ``prepare(request)`` gives each request's (:class:`Row`, context)
    as it would run alone, :func:`generate_rows` steps all rows together, and ``answer([generated],
    *context)`` makes each result, as the family's ``generate`` makes it from ``beam.generate``'s list.
    A request whose own input fails gets its error, and the others go on. Fewer than :data:`MIN_ROWS`
    requests run one after another (``generate``): alone, a row takes the faster index loop, and a small
    batch saves less Python than it loses there."""
    if len(requests) < MIN_ROWS:
        return [_alone(generate, request) for request in requests]
    results: list = [None] * len(requests)
    jobs, contexts = [], []
    for i, request in enumerate(requests):
        try:
            job, context = prepare(request)
        except (InvalidRequest, Unprocessable) as exc:
            results[i] = exc
            continue
        jobs.append(job)
        contexts.append((i, context))
    for (i, context), result in zip(contexts, generate_rows(model, jobs)):
        results[i] = result if isinstance(result, Exception) else answer([result], *context)
    return results


def _alone(generate, request):
    try:
        return generate(request)
    except (InvalidRequest, Unprocessable) as exc:
        return exc


class _Seq:
    """A row's running sequence: events, tracker, score, the steps left."""

    def __init__(self, job: Row, base, steps: int, index: int):
        self.job, self.enc, self.index = job, job.encoder, index
        self.seq = list(job.primer)
        self.tracker = self.enc.tracker(self.seq)
        self.score, self.left = base, steps
        self.vector = None

    def take(self, i, p) -> None:
        """Record the class drawn (``i``, probability ``p``), as ``beam.sample_single``."""
        self.score = self.score + np.log(p)
        seq = self.seq
        seq.append(self.enc.to_event(i, seq))
        self.vector = self.tracker.push(seq[-1]) if self.tracker is not None else None
        self.left -= 1


def generate_rows(model: EventRnn, jobs: list) -> list:
    """Each :class:`Row` extended to its ``num_steps`` events: a ``beam.Generated``, or the ValueError its
    own ``beam.generate`` would raise (a primer not shorter than its length). The same events and score
    as ``beam.generate(model, encoder, primer, num_steps, 1, temperature, rng)`` gives each alone."""
    results: list = [None] * len(jobs)
    live, states, first = [], [], []
    for j, job in enumerate(jobs):
        enc, primer = job.encoder, job.primer
        total = job.num_steps - len(primer)
        if total <= 0:
            results[j] = ValueError("primer must be shorter than num_steps")
            continue
        logits, state = beam.primer_pass(model, enc, primer)
        base = beam.primer_loglik(logits[0], enc.labels(primer), job.temperature)
        live.append(_Seq(job, base, total, j))
        states.append(state)
        first.append(logits[0, -1])
    if not live:
        return results
    batch = RowBatch(model, states)
    logits = np.stack(first)
    lookback: dict = {}
    while live:
        deadline.check()
        idx = np.empty(len(live), np.intp)
        p = np.empty(len(live), np.float32)
        temps = [r.job.temperature for r in live]
        for t in dict.fromkeys(temps):  # rows of one temperature drawn together, each from its own rng
            sel = [b for b, x in enumerate(temps) if x == t]
            i, q = beam.sample(logits[sel], t, _Streams([live[b].job.rng for b in sel]))
            idx[sel], p[sel] = i, q
        for r, i, q in zip(live, idx, p):
            r.take(int(i), q)
        going = [b for b, r in enumerate(live) if r.left > 0]
        for r in live:
            if r.left == 0:
                results[r.index] = beam.Generated(r.seq, float(r.score))
        if not going:
            break
        if len(going) < len(live):
            live, idx = [live[b] for b in going], idx[going]
            batch.keep(np.asarray(going, np.intp))
        logits = batch.step(_parts(model, batch, live, idx, lookback))
    return results


class _Streams:
    """``rng.random(n)`` for a group of rows: one uniform from each row's own generator."""

    def __init__(self, rngs):
        self.rngs = rngs

    def random(self, n):
        return np.array([rng.random() for rng in self.rngs])


def _parts(model, batch: RowBatch, live: list, idx, lookback: dict):
    """Each row's input part for its next step, by its encoder's kind (one-hot class, lookback lookups,
    a vector), as ``beam.sample_single`` steps it."""
    kinds = []
    for r in live:
        enc = r.enc
        kinds.append("index" if enc.one_hot else "lookback" if enc.lookback else "vector")
    part = None
    for kind in dict.fromkeys(kinds):
        sel = [b for b, k in enumerate(kinds) if k == kind]
        if kind == "index":
            got = batch.index_part(idx[sel])
        elif kind == "lookback":
            offset, bits = live[sel[0]].enc.counter_layout
            if (offset, bits) not in lookback:
                lookback[offset, bits] = model.counter_rows(offset, bits)
            ats = [len(live[b].seq) - 1 for b in sel]
            hots = [live[b].enc.lookback_hots(live[b].seq, at) for b, at in zip(sel, ats)]
            got = batch.hots_part(hots, lookback[offset, bits], np.array([(at + 1) % (1 << bits) for at in ats]))
        else:
            x = [r.vector if r.vector is not None else r.enc.last([r.seq])[0] for r in (live[b] for b in sel)]
            got = batch.input_part(np.stack(x))  # its own dtype: SingleRow takes the vector as it comes
        if part is None:
            if len(sel) == len(live):
                return got
            part = np.empty((len(live), got.shape[1]), np.float32)
        part[sel] = got
    return part
