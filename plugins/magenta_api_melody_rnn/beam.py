"""Event generation as magenta's ``EventSequenceRnnModel._generate_events`` + ``beam_search``, batched.

Magenta keeps a beam of ``beam_size`` sequences per output; each iteration every entry is copied
``branch_factor`` times, each copy is extended ``steps_per_iteration`` steps by *sampling* (temperature
softmax), and the ``beam_size`` best by log-likelihood survive; the first iteration takes
``(num_steps - 1) % steps_per_iteration + 1`` steps. ``beam_size = branch_factor = 1`` is plain
sampling. Here all outputs' entries run as one batch through the NumPy engine.

Sampling consumes one uniform double per sequence per step, in entry order, and picks the class as
``numpy.random.choice`` does (normalised float64 CDF, ``searchsorted(..., side='right')``), so a
``numpy.random.RandomState`` seeded like magenta's global generator reproduces magenta's draws.
Scores are float32 sums of log softmax-with-temperature probabilities, as magenta's.
"""

from dataclasses import dataclass

import numpy as np

from magenta_api.nn import log_softmax

from .engine import EventRnn, gather_state


@dataclass
class Generated:
    events: list  # the full event list, primer included
    score: float  # log-likelihood (primer included) under the temperature softmax


def tempered_softmax(logits, temperature):
    """float32 softmax(logits / temperature), as the TF graph computes it."""
    z = np.divide(logits, np.float32(temperature), dtype=np.float32)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def sample(logits, temperature, rng):
    """(class index [B], chosen probability [B] float32). Temperature 0 = argmax, scored with the
    temperature-1 probability."""
    rows = np.arange(len(logits))
    if not temperature:
        idx = np.asarray(logits).argmax(axis=-1)
        return idx, tempered_softmax(logits, 1.0)[rows, idx]
    p = tempered_softmax(logits, temperature)
    if len(p) == 1:  # the common n=1 case without the batch machinery
        cdf = np.cumsum(p[0], dtype=np.float64)
        cdf /= cdf[-1]
        i = min(int(np.searchsorted(cdf, rng.random(), side="right")), p.shape[1] - 1)
        return np.array([i]), p[0, i:i + 1]
    cdf = np.cumsum(p, axis=-1, dtype=np.float64)
    cdf /= cdf[:, -1:]
    u = rng.random(len(p))
    idx = (cdf <= u[:, None]).sum(axis=-1)
    np.minimum(idx, p.shape[1] - 1, out=idx)
    return idx, p[rows, idx]


def sample_one(logits, temperature, rng):
    """:func:`sample` for a single row of logits [C]: (class index, its float32 probability)."""
    if not temperature:
        i = int(logits.argmax())
        return i, tempered_softmax(logits[None], 1.0)[0, i]
    z = np.divide(logits, np.float32(temperature), dtype=np.float32)
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()
    cdf = z.cumsum(dtype=np.float64)
    cdf /= cdf[-1]
    i = min(int(cdf.searchsorted(rng.random(), side="right")), len(z) - 1)
    return i, z[i]


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
    """Teacher-forced run over ``primer``: (logits [1, T, C], final state). Lookback inputs go through
    :func:`lookback_stepper`, the rest as vectors."""
    if not encoder.lookback:
        return model.run(encoder.full(primer)[None])
    runner = model.single(model.zero_state(1))
    step = lookback_stepper(model, encoder, runner)
    logits = np.empty((1, len(primer), model.num_classes), np.float32)
    for at in range(len(primer)):
        logits[0, at] = step(primer, at)
    return logits, runner.state()


def generate(model: EventRnn, encoder, primer: list, num_steps: int, num_outputs: int, temperature: float,
             rng, beam_size: int = 1, branch_factor: int = 1, steps_per_iteration: int = 1) -> list:
    """Extend ``primer`` (a non-empty event list) to ``num_steps`` events, ``num_outputs`` times.
    ``encoder`` is an :class:`~magenta_api_melody_rnn.encoders.InputEncoder`. Returns [Generated]."""
    total = num_steps - len(primer)
    if total <= 0:
        raise ValueError("primer must be shorter than num_steps")
    # The primer once, teacher-forced: its logits give the first step and the primer's score.
    logits, state = primer_pass(model, encoder, primer)
    base = primer_loglik(logits[0], encoder.labels(primer), temperature)

    # Entries of all outputs, output-major: output o owns a contiguous block of rows.
    rows = np.zeros(num_outputs * beam_size, np.intp)
    seqs = [list(primer) for _ in range(num_outputs * beam_size)]
    first_tracker = encoder.tracker(primer)
    trackers = [first_tracker.copy() if first_tracker else None for _ in seqs]
    state = gather_state(state, rows)
    pending = np.repeat(logits[:, -1], len(rows), axis=0)  # logits for each entry's next event
    scores = np.full(len(rows), base, np.float32)

    def select(order, copy):
        """Keep the entries in ``order`` (copies of the event lists when entries get duplicated)."""
        nonlocal seqs, trackers, state, pending, scores
        if copy:
            seqs = [list(seqs[i]) for i in order]
            trackers = [trackers[i].copy() if trackers[i] else None for i in order]
        else:
            seqs = [seqs[i] for i in order]
            trackers = [trackers[i] for i in order]
        state = gather_state(state, order)
        pending, scores = pending[order], scores[order]

    def best(width, k):
        """Per output, its k best entries by score (stable: ties keep entry order, as heapq.nlargest)."""
        return np.concatenate([o * width + np.argsort(-scores[o * width:(o + 1) * width], kind="stable")[:k]
                               for o in range(num_outputs)])

    def branched(order, k):
        """beam_entries * branch_factor: each output's k entries repeated as a whole."""
        return np.tile(order.reshape(num_outputs, k), (1, branch_factor)).reshape(-1)

    def advance(steps, final):
        nonlocal state, pending, scores
        for s in range(steps):
            idx, p = sample(pending, temperature, rng)
            scores = scores + np.log(p)
            vectors = []  # KeyMelody: push() already returns the new last input
            for b, seq in enumerate(seqs):
                seq.append(encoder.to_event(idx[b], seq))
                if trackers[b] is not None:
                    vectors.append(trackers[b].push(seq[-1]))
            if final and s == steps - 1:
                break  # no model step after the final sample
            if encoder.one_hot:  # encode_event(class_index_to_event(i)) == i for one-hot encodings
                pending, state = model.step(None, state, index=idx)
            elif len(vectors) == len(seqs):
                pending, state = model.step(np.stack(vectors), state)
            else:
                pending, state = model.step(encoder.last(seqs, trackers), state)

    if len(seqs) == 1 and beam_size == 1 and branch_factor == 1:  # n=1 plain sampling on 1-D vectors
        seq, score, tracker = seqs[0], scores[0], trackers[0]
        runner = model.single(state)
        logits = pending[0]
        step_lookback = lookback_stepper(model, encoder, runner) if encoder.lookback else None
        for s in range(total):
            i, p = sample_one(logits, temperature, rng)
            score = score + np.log(p)
            seq.append(encoder.to_event(i, seq))
            vector = tracker.push(seq[-1]) if tracker is not None else None
            if s == total - 1:
                break
            if encoder.one_hot:
                logits = runner.step_index(i)
            elif step_lookback is not None:
                logits = step_lookback(seq, len(seq) - 1)
            else:
                logits = runner.step_input(vector if vector is not None else encoder.last([seq])[0])
        return [Generated(seq, float(score))]
    if beam_size == 1 and branch_factor == 1:
        steps_per_iteration = total  # pruning a beam of one is the identity: plain sampling
    first = (total - 1) % steps_per_iteration + 1
    iterations = (total - first) // steps_per_iteration
    if branch_factor > 1:
        select(branched(np.arange(len(seqs)), beam_size), copy=True)
    advance(first, iterations == 0)
    for it in range(iterations):
        order = best(beam_size * branch_factor, beam_size)
        select(branched(order, beam_size) if branch_factor > 1 else order, copy=branch_factor > 1)
        advance(steps_per_iteration, it == iterations - 1)
    if beam_size * branch_factor > 1:
        select(best(beam_size * branch_factor, 1), copy=False)
    return [Generated(seqs[o], float(scores[o])) for o in range(num_outputs)]
