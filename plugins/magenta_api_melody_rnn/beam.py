"""Event generation as magenta's ``EventSequenceRnnModel._generate_events`` + ``beam_search``, batched.

Magenta keeps a beam of ``beam_size`` sequences per output; each iteration every entry is copied
``branch_factor`` times, each copy is extended ``steps_per_iteration`` steps by *sampling* (temperature
softmax), and the ``beam_size`` best by log-likelihood survive; the first iteration takes
``(num_steps - 1) % steps_per_iteration + 1`` steps. ``beam_size = branch_factor = 1`` is plain
sampling. Here all outputs' entries run as one batch through the NumPy engine (:class:`Beam`); one
sequence on the model's single-row path (``EventRnn.path_for``) skips the batch bookkeeping
(:func:`sample_single`; :func:`sample_indices` when its inputs are one-hot of the class just sampled).
The batch draws with :func:`sample`, a single sequence with :class:`RowSampler`: the same numbers.

Sampling consumes one uniform double per sequence per step, in entry order, and picks the class as
``numpy.random.choice`` does (normalised float64 CDF, ``searchsorted(..., side='right')``), so a
``numpy.random.RandomState`` seeded like magenta's global generator reproduces magenta's draws.
Scores are float32 sums of log softmax-with-temperature probabilities, as magenta's.

Injected events (magenta's ``modify_events_callback``, PolyphonyRNN's primer injection): an encoder
with an ``inject(events) -> list`` method is asked after every sampled event (and once for the primer)
for events to append before the next draw. The model is stepped over them teacher-forced, and their
log-likelihood is added with the next draw's, as magenta scores them (in the next step, so events
injected after the final draw stay in the sequence unscored).
"""

import math
from dataclasses import dataclass

import numpy as np

from magenta_api import deadline
from magenta_api.nn import log_softmax

from .engine import EventRnn, gather_state


def scatter_state(state: tuple, rows, part: tuple) -> tuple:
    """``state`` with rows ``rows`` replaced by ``part`` (a state of ``len(rows)`` rows)."""
    out = []
    for a, b in zip(state, part):
        a = a.copy()
        a[rows] = b
        out.append(a)
    return tuple(out)


@dataclass
class Generated:
    events: list  # the full event list, primer included
    score: float  # log-likelihood (primer included) under the temperature softmax


def json_score(score: float) -> float | None:
    """A score for a JSON answer: ``None`` for -inf (an event whose float32 probability is 0, as in
    Magenta's own score), since JSON has no infinities."""
    return score if math.isfinite(score) else None


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


class RowSampler:
    """:func:`sample` and :func:`tempered_softmax` for one row of logits at a time, the same numbers from
    fewer NumPy calls on preallocated buffers (the n=1 loop's: :func:`sample_indices`).

    The draw finds ``numpy.random.choice``'s class on the CDF before normalising it (:func:`cdf_index`)."""

    def __init__(self, num_classes: int, temperature, rng):
        self.temperature, self.rng = temperature, rng
        self.scale = np.float32(temperature or 1.0)
        self.unscaled = self.scale == 1.0  # logits / 1 is the logits: skip the division
        self.p = np.empty(num_classes, np.float32)
        self.p64 = np.empty(num_classes, np.float64)
        self.cdf = np.empty(num_classes, np.float64)
        self.classes = num_classes

    def softmax(self, logits):
        """:func:`tempered_softmax` of one row (temperature 0 as 1), in the sampler's buffer. The maximum
        is read at ``argmax`` (the same value, from a cheaper call than a reduction); ``np.add.reduce``
        is ``ndarray.sum``."""
        p = self.p
        if self.unscaled:
            np.subtract(logits, logits[logits.argmax()], p)
        else:
            np.divide(logits, self.scale, p)
            np.subtract(p, p[p.argmax()], p)
        np.exp(p, p)  # ufuncs take out positionally: cheaper than the keyword
        np.divide(p, np.add.reduce(p), p)
        return p

    def sample(self, logits):
        """(class index, its float32 probability), as :func:`sample` on one row."""
        p = self.softmax(logits)
        if not self.temperature:
            i = int(logits.argmax())
            return i, p[i]
        np.copyto(self.p64, p)
        cdf = np.add.accumulate(self.p64, 0, None, self.cdf)  # p.cumsum(dtype=np.float64), out positional
        i = cdf_index(cdf, self.rng.random())
        return i, p[i]


def cdf_index(cdf, u: float) -> int:
    """``min(searchsorted(cdf / cdf[-1], u, side="right"), len - 1)`` without the division of the whole
    CDF (float64, non-decreasing): the classes with ``cdf[k] / cdf[-1] <= u`` are a prefix, since rounded
    division is monotone; ``searchsorted`` of ``u * cdf[-1]`` on the raw CDF lands on its end or an
    index next to it (the product is rounded too), and the exact test of the neighbours moves it there."""
    item, n = cdf.item, len(cdf)
    total = item(n - 1)
    j = int(cdf.searchsorted(u * total, "right"))
    while j < n and item(j) / total <= u:  # Python floats: the same IEEE division as NumPy's
        j += 1
    while j > 0 and item(j - 1) / total > u:
        j -= 1
    return j if j < n else n - 1


def primer_loglik(logits, labels, temperature) -> np.float32:
    """Log-likelihood of the primer's events 1..n-1 (magenta scores them in the first step)."""
    if not len(labels):
        return np.float32(0.0)
    with np.errstate(divide="ignore"):  # a probability of 0 scores -inf, as in Magenta
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
    one-hot inputs are row lookups by class index (``SingleRow.step_index``, with ``index_events``),
    lookback inputs go through :func:`lookback_stepper`; everything else as vectors (``EventRnn.run``)."""
    path = model.path_for(1, encoder.one_hot)
    if path == "indices":
        runner = model.single(model.zero_state(1))
        logits = np.empty((1, len(primer), model.num_classes), np.float32)
        for at, event in enumerate(primer):
            logits[0, at] = runner.step_index(encoder._index(event))
        return logits, runner.state()
    if not encoder.lookback or path != "single_row":
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
        self.deferred = np.zeros(rows, np.float64)  # injected events' log-likelihood, added with the next draw
        self.inject = getattr(encoder, "inject", None)

    def select(self, order, copy: bool):
        """Keep the entries in ``order`` (copies of the event lists where entries get duplicated)."""
        if copy:
            self.seqs = [list(self.seqs[i]) for i in order]
            self.trackers = [self.trackers[i].copy() if self.trackers[i] else None for i in order]
        else:
            self.seqs = [self.seqs[i] for i in order]
            self.trackers = [self.trackers[i] for i in order]
        self.state = gather_state(self.state, order)
        self.pending, self.scores, self.deferred = self.pending[order], self.scores[order], self.deferred[order]

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

    def advance(self, steps: int, final: bool, on_step=None):
        """Extend every entry by ``steps`` sampled events; ``final``: no model step after the last one.
        ``on_step(row, events)`` after each step (plain sampling only: no beam discards a row later)."""
        model, encoder, seqs, trackers = self.model, self.encoder, self.seqs, self.trackers
        for s in range(steps):
            deadline.check()
            idx, p = sample(self.pending, self.temperature, self.rng)
            if self.inject is None:
                self.scores = self.scores + np.log(p)
            else:
                self.scores = (self.scores + (self.deferred + np.log(p))).astype(np.float32)
                self.deferred[:] = 0.0
            vectors = []  # KeyMelody: push() already returns the new last input
            for b, (seq, tracker) in enumerate(zip(seqs, trackers)):
                seq.append(encoder.to_event(idx[b], seq))
                if tracker is not None:
                    vectors.append(tracker.push(seq[-1]))
            extras = [self.inject(seq) for seq in seqs] if self.inject is not None else None
            if extras is not None:
                for seq, extra in zip(seqs, extras):
                    seq.extend(extra)
            if on_step is not None:
                for b, seq in enumerate(seqs):
                    on_step(b, seq)
            if final and s == steps - 1:
                break  # no model step after the final sample
            if encoder.one_hot:  # encode_event(class_index_to_event(i)) == i for one-hot encodings
                self.pending, self.state = model.step(None, self.state, index=idx)
            elif len(vectors) == len(seqs):
                self.pending, self.state = model.step(np.stack(vectors), self.state)
            else:
                self.pending, self.state = model.step(encoder.last(seqs, trackers), self.state)
            if extras is not None and any(extras):
                self._teacher_force(extras)

    def _teacher_force(self, extras):
        """Step the rows that got injected events over them (one-hot encodings), scoring each event
        under the logits before it into ``deferred``."""
        encoder, model = self.encoder, self.model
        for k in range(max(len(e) for e in extras)):
            rows = np.array([b for b, e in enumerate(extras) if len(e) > k], np.intp)
            index = np.array([encoder._index(extras[b][k]) for b in rows], np.intp)
            probs = tempered_softmax(self.pending[rows], self.temperature or 1.0)
            self.deferred[rows] += np.log(probs[np.arange(len(rows)), index])
            logits, part = model.step(None, gather_state(self.state, rows), index=index)
            self.pending[rows] = logits
            self.state = scatter_state(self.state, rows, part)


def branched(order, outputs: int, branch_factor: int):
    """beam_entries * branch_factor: each output's entries in ``order`` repeated as a whole."""
    return np.tile(order.reshape(outputs, -1), (1, branch_factor)).reshape(-1)


def sample_single(
    model: EventRnn, encoder, primer: list, logits, state, score, steps: int, temperature, rng, on_step=None
) -> Generated:
    """Plain sampling of one sequence on the model's single-row stepper (the n=1 fast path): a
    :class:`Beam` of one entry, without the batch bookkeeping. ``logits`` [C] and ``state`` (a batch of
    one) are the primer's. Draws with :class:`RowSampler` (:func:`sample`'s numbers)."""
    seq, tracker = list(primer), encoder.tracker(primer)
    runner = model.single(state)
    step_lookback = lookback_stepper(model, encoder, runner) if encoder.lookback else None
    inject = getattr(encoder, "inject", None)
    draw = RowSampler(model.num_classes, temperature, rng)
    deferred = 0.0
    for s in range(steps):
        deadline.check()
        i, p = draw.sample(logits)
        if inject is None:
            score = score + np.log(p)
        else:
            score = np.float32(score + (deferred + np.log(p)))
            deferred = 0.0
        seq.append(encoder.to_event(i, seq))
        vector = tracker.push(seq[-1]) if tracker is not None else None
        extra = inject(seq) if inject is not None else []
        seq.extend(extra)
        if on_step is not None:
            on_step(0, seq)
        if s == steps - 1:
            break
        if encoder.one_hot:
            logits = runner.step_index(i)
            for event in extra:  # injected events, teacher-forced and scored with the next draw
                k = encoder._index(event)
                deferred += float(np.log(draw.softmax(logits)[k]))
                logits = runner.step_index(k)
        elif step_lookback is not None:
            logits = step_lookback(seq, len(seq) - 1)
        else:
            logits = runner.step_input(vector if vector is not None else encoder.last([seq])[0])
    return Generated(seq, float(score))


def sample_indices(
    model: EventRnn, encoder, primer: list, logits, state, score, steps: int, temperature, rng, on_step=None
) -> Generated:
    """:func:`sample_single` for one-hot inputs (``encoder.one_hot``: the next input is the class just
    sampled), on class indices: each step is a :class:`RowSampler` draw and ``SingleRow.step_index``;
    the primer injection is ``encoder.index_injector`` (the events to inject after a sampled class, looked
    up, not searched for), and the event objects are made once at the end, unless ``on_step`` wants
    them as they come. The same draws, events and score as :func:`sample_single`."""
    runner = model.single(state)
    step, draw = runner.step_index, RowSampler(model.num_classes, temperature, rng)
    inject = encoder.index_injector(primer) if getattr(encoder, "inject", None) is not None else None
    picked: list = []  # the sampled class of each step
    injected: dict = {}  # step -> ((class index, event), ...) injected after it
    seq = list(primer) if on_step is not None else None
    log, deferred = np.log, 0.0
    for s in range(steps):
        deadline.check()
        i, p = draw.sample(logits)
        if not deferred:  # nothing injected before this draw: the same float32 sum as below with 0
            score = score + log(p)
        else:
            score = np.float32(score + (deferred + log(p)))
            deferred = 0.0
        picked.append(i)
        extra = inject(i) if inject is not None else ()
        if extra:
            injected[s] = extra
        if seq is not None:
            seq.append(encoder.to_event(i, seq))
            seq.extend(event for _, event in extra)
            on_step(0, seq)
        if s == steps - 1:
            break
        logits = step(i)
        for k, _ in extra:  # injected events, teacher-forced and scored with the next draw
            deferred += float(log(draw.softmax(logits)[k]))
            logits = step(k)
    if seq is None:
        seq = list(primer)
        for s, i in enumerate(picked):
            seq.append(encoder.to_event(i, seq))
            if s in injected:
                seq.extend(event for _, event in injected[s])
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
    on_step=None,
) -> list:
    """Extend ``primer`` (a non-empty event list) to ``num_steps`` events, ``num_outputs`` times.
    ``encoder`` is an :class:`~magenta_api_melody_rnn.encoders.InputEncoder`. Returns [Generated].
    ``on_step(output, events)`` hears each output's events after every step, when the step is final
    (plain sampling; a beam search may still discard what it sampled, so it reports nothing)."""
    total = num_steps - len(primer)
    if total <= 0:
        raise ValueError("primer must be shorter than num_steps")
    inject = getattr(encoder, "inject", None)
    if inject is not None:  # magenta calls modify_events_callback on the primer's inputs too
        primer = list(primer) + inject(primer)
    # The primer once, teacher-forced: its logits give the first step and the primer's score.
    logits, state = primer_pass(model, encoder, primer)
    base = primer_loglik(logits[0], encoder.labels(primer), temperature)
    path = model.path_for(num_outputs * beam_size * branch_factor, encoder.one_hot)
    if path == "indices" and (inject is None or hasattr(encoder, "index_injector")):
        return [sample_indices(model, encoder, primer, logits[0, -1], state, base, total, temperature, rng, on_step)]
    if path != "batched":
        return [sample_single(model, encoder, primer, logits[0, -1], state, base, total, temperature, rng, on_step)]
    beam = Beam(model, encoder, primer, logits[:, -1], state, base, num_outputs * beam_size, temperature, rng)
    if beam_size == 1 and branch_factor == 1:
        steps_per_iteration = total  # pruning a beam of one is the identity: plain sampling
    else:
        on_step = None
    first = (total - 1) % steps_per_iteration + 1
    iterations = (total - first) // steps_per_iteration
    if branch_factor > 1:
        beam.select(branched(np.arange(num_outputs * beam_size), num_outputs, branch_factor), copy=True)
    beam.advance(first, iterations == 0, on_step)
    for it in range(iterations):
        order = beam.best(num_outputs, beam_size)
        beam.select(branched(order, num_outputs, branch_factor) if branch_factor > 1 else order, copy=branch_factor > 1)
        beam.advance(steps_per_iteration, it == iterations - 1)
    if beam_size * branch_factor > 1:
        beam.select(beam.best(num_outputs, 1), copy=False)
    return [Generated(beam.seqs[o], float(beam.scores[o])) for o in range(num_outputs)]
