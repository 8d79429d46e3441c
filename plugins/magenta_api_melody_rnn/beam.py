"""Event generation as magenta's ``EventSequenceRnnModel._generate_events`` + ``beam_search``, batched.

Magenta keeps a beam of ``beam_size`` sequences per output; each iteration every entry is copied
``branch_factor`` times, each copy is extended ``steps_per_iteration`` steps by *sampling* (temperature
softmax), and the ``beam_size`` best by log-likelihood survive; the first iteration takes
``(num_steps - 1) % steps_per_iteration + 1`` steps. ``beam_size = branch_factor = 1`` is plain
sampling. Here all outputs' entries run as one batch through the NumPy engine (:class:`Beam`); one
sequence on the model's single-row path (``EventRnn.path_for``) skips the batch bookkeeping
(:func:`sample_single`). Both draw with the one :func:`sample`.

Sampling consumes one uniform double per sequence per step, in entry order, and picks the class as
``numpy.random.choice`` does (normalised float64 CDF, ``searchsorted(..., side='right')``), so a
``numpy.random.RandomState`` seeded like magenta's global generator reproduces magenta's draws.
Scores are float32 sums of log softmax-with-temperature probabilities, as magenta's.
"""

from dataclasses import dataclass

import numpy as np

from magenta_api import deadline
from magenta_api.nn import log_softmax

from .engine import EventRnn, gather_state


@dataclass
class Generated:
    events: list  # the full event list, primer included
    score: float  # log-likelihood (primer included) under the temperature softmax


def tempered_softmax(logits, temperature):
    """float32 softmax(logits / temperature) along the last axis, as the TF graph computes it."""
    z = np.divide(logits, np.float32(temperature), dtype=np.float32)
    if z.ndim == 1:  # one row (the n=1 loop): the same values through NumPy's cheapest reductions
        z -= z.max()
        np.exp(z, out=z)
        z /= z.sum()
        return z
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def sample(logits, temperature, rng):
    """One draw per row of ``logits``, as ``numpy.random.choice`` on magenta's float32 softmax: a float64
    CDF normalised by its last element, one uniform double per row, ``searchsorted(side="right")``.
    Temperature 0 is argmax, scored with the temperature-1 probability. Returns (class index, its
    float32 probability): an int and a scalar for one row [C] (the n=1 loop: no batch machinery),
    arrays [B] for [B, C]."""
    p = tempered_softmax(logits, temperature or 1.0)
    if p.ndim == 1:
        if not temperature:
            i = int(logits.argmax())
        else:
            cdf = p.cumsum(dtype=np.float64)
            cdf /= cdf[-1]
            i = min(int(cdf.searchsorted(rng.random(), side="right")), len(p) - 1)
        return i, p[i]
    if not temperature:
        idx = logits.argmax(axis=-1)
    else:
        cdf = p.cumsum(axis=-1, dtype=np.float64)  # [B, C]
        cdf /= cdf[:, -1:]
        idx = (cdf <= rng.random(len(p))[:, None]).sum(axis=-1)  # searchsorted(side="right"), row by row
        np.minimum(idx, p.shape[1] - 1, out=idx)
    return idx, p[np.arange(len(p)), idx]


def primer_loglik(logits, labels, temperature) -> np.float32:
    """Log-likelihood of the primer's events 1..n-1 (magenta scores them in the first step)."""
    if not len(labels):
        return np.float32(0.0)
    if temperature:
        logp = np.log(tempered_softmax(logits[: len(labels)], temperature))
    else:
        logp = log_softmax(np.asarray(logits[: len(labels)], np.float32))
    return np.float32(logp[np.arange(len(labels)), labels].sum())


def lookback_stepper(model: EventRnn, encoder, runner):
    """``step(events, at)``: ``runner`` stepped on the lookback input of position ``at``, as row lookups
    plus the counter table (:meth:`~.engine.SingleRow.step_hots`) instead of a dense vector."""
    offset, bits = encoder.counter_layout
    table, period = model.counter_rows(offset, bits), 1 << bits

    def step(events, at):
        return runner.step_hots(encoder.lookback_hots(events, at), table, (at + 1) % period)

    return step


def primer_pass(model: EventRnn, encoder, primer: list):
    """Teacher-forced run over ``primer``: (logits [1, T, C], final state). On the single-row path,
    lookback inputs go through :func:`lookback_stepper`; everything else as vectors (``EventRnn.run``)."""
    if not encoder.lookback or model.path_for(1) != "single_row":
        return model.run(encoder.full(primer)[None])
    runner = model.single(model.zero_state(1))
    step = lookback_stepper(model, encoder, runner)
    logits = np.empty((1, len(primer), model.num_classes), np.float32)
    for at in range(len(primer)):
        logits[0, at] = step(primer, at)
    return logits, runner.state()


class Beam:
    """The entries of every output as one batch, output-major (output o owns a contiguous block of
    rows): each entry's event list and KeyMelody tracker, and for all of them the model state, the
    pending logits [rows, C] of each entry's next event and the float32 scores [rows]."""

    def __init__(self, model: EventRnn, encoder, primer: list, logits, state, score, rows: int, temperature, rng):
        self.model, self.encoder, self.temperature, self.rng = model, encoder, temperature, rng
        tracker = encoder.tracker(primer)
        self.seqs = [list(primer) for _ in range(rows)]
        self.trackers = [tracker.copy() if tracker else None for _ in range(rows)]
        self.state = gather_state(state, np.zeros(rows, np.intp))
        self.pending = np.repeat(logits, rows, axis=0)
        self.scores = np.full(rows, score, np.float32)

    def select(self, order, copy: bool):
        """Keep the entries in ``order`` (copies of the event lists where entries get duplicated)."""
        if copy:
            self.seqs = [list(self.seqs[i]) for i in order]
            self.trackers = [self.trackers[i].copy() if self.trackers[i] else None for i in order]
        else:
            self.seqs = [self.seqs[i] for i in order]
            self.trackers = [self.trackers[i] for i in order]
        self.state = gather_state(self.state, order)
        self.pending, self.scores = self.pending[order], self.scores[order]

    def best(self, outputs: int, k: int):
        """Per output, the rows of its k best entries by score (stable: ties keep entry order, as
        heapq.nlargest)."""
        width = len(self.scores) // outputs
        return np.concatenate(
            [
                o * width + np.argsort(-self.scores[o * width : (o + 1) * width], kind="stable")[:k]
                for o in range(outputs)
            ]
        )

    def advance(self, steps: int, final: bool):
        """Extend every entry by ``steps`` sampled events; ``final``: no model step after the last one."""
        model, encoder, seqs, trackers = self.model, self.encoder, self.seqs, self.trackers
        for s in range(steps):
            deadline.check()
            idx, p = sample(self.pending, self.temperature, self.rng)
            self.scores = self.scores + np.log(p)
            vectors = []  # KeyMelody: push() already returns the new last input
            for b, (seq, tracker) in enumerate(zip(seqs, trackers)):
                seq.append(encoder.to_event(idx[b], seq))
                if tracker is not None:
                    vectors.append(tracker.push(seq[-1]))
            if final and s == steps - 1:
                break  # no model step after the final sample
            if encoder.one_hot:  # encode_event(class_index_to_event(i)) == i for one-hot encodings
                self.pending, self.state = model.step(None, self.state, index=idx)
            elif len(vectors) == len(seqs):
                self.pending, self.state = model.step(np.stack(vectors), self.state)
            else:
                self.pending, self.state = model.step(encoder.last(seqs, trackers), self.state)


def branched(order, outputs: int, branch_factor: int):
    """beam_entries * branch_factor: each output's entries in ``order`` repeated as a whole."""
    return np.tile(order.reshape(outputs, -1), (1, branch_factor)).reshape(-1)


def sample_single(
    model: EventRnn, encoder, primer: list, logits, state, score, steps: int, temperature, rng
) -> Generated:
    """Plain sampling of one sequence on the model's single-row stepper (the n=1 fast path): a
    :class:`Beam` of one entry, without the batch bookkeeping. ``logits`` [C] and ``state`` (a batch of
    one) are the primer's."""
    seq, tracker = list(primer), encoder.tracker(primer)
    runner = model.single(state)
    step_lookback = lookback_stepper(model, encoder, runner) if encoder.lookback else None
    for s in range(steps):
        deadline.check()
        i, p = sample(logits, temperature, rng)
        score = score + np.log(p)
        seq.append(encoder.to_event(i, seq))
        vector = tracker.push(seq[-1]) if tracker is not None else None
        if s == steps - 1:
            break
        if encoder.one_hot:
            logits = runner.step_index(i)
        elif step_lookback is not None:
            logits = step_lookback(seq, len(seq) - 1)
        else:
            logits = runner.step_input(vector if vector is not None else encoder.last([seq])[0])
    return Generated(seq, float(score))


def generate(
    model: EventRnn,
    encoder,
    primer: list,
    num_steps: int,
    num_outputs: int,
    temperature: float,
    rng,
    beam_size: int = 1,
    branch_factor: int = 1,
    steps_per_iteration: int = 1,
) -> list:
    """Extend ``primer`` (a non-empty event list) to ``num_steps`` events, ``num_outputs`` times.
    ``encoder`` is an :class:`~magenta_api_melody_rnn.encoders.InputEncoder`. Returns [Generated]."""
    total = num_steps - len(primer)
    if total <= 0:
        raise ValueError("primer must be shorter than num_steps")
    # The primer once, teacher-forced: its logits give the first step and the primer's score.
    logits, state = primer_pass(model, encoder, primer)
    base = primer_loglik(logits[0], encoder.labels(primer), temperature)
    if model.path_for(num_outputs * beam_size * branch_factor) == "single_row":
        return [sample_single(model, encoder, primer, logits[0, -1], state, base, total, temperature, rng)]
    beam = Beam(model, encoder, primer, logits[:, -1], state, base, num_outputs * beam_size, temperature, rng)
    if beam_size == 1 and branch_factor == 1:
        steps_per_iteration = total  # pruning a beam of one is the identity: plain sampling
    first = (total - 1) % steps_per_iteration + 1
    iterations = (total - first) // steps_per_iteration
    if branch_factor > 1:
        beam.select(branched(np.arange(num_outputs * beam_size), num_outputs, branch_factor), copy=True)
    beam.advance(first, iterations == 0)
    for it in range(iterations):
        order = beam.best(num_outputs, beam_size)
        beam.select(branched(order, num_outputs, branch_factor) if branch_factor > 1 else order, copy=branch_factor > 1)
        beam.advance(steps_per_iteration, it == iterations - 1)
    if beam_size * branch_factor > 1:
        beam.select(beam.best(num_outputs, 1), copy=False)
    return [Generated(beam.seqs[o], float(beam.scores[o])) for o in range(num_outputs)]
