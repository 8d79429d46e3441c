"""Pianoroll generation as ``PianorollRnnNadeModel._generate_events`` runs it, with magenta's beam search.

Each step draws one frame from the NADE on the state's biases and then runs the RNN over the pending
input, which gives the next biases. Two details follow Magenta 2.1.4's generator exactly:

- the first frame is drawn from the *zero* state (its biases are zeros), while the RNN reads the primer;
- the biases carried out of that first step are the dense layer's output at the primer's *first*
  position (magenta's state flattens time and ``state_util.unbatch`` keeps row 0); the RNN state is the
  primer's final one. Later steps read one frame and carry its biases.

``temperature`` 0 is Magenta's decoding: every pitch whose conditional probability is at least 0.5
(deterministic, so beam entries stay equal). A positive temperature draws Bernoulli pitches on the
NADE's logits / temperature from the request's rng (one uniform per row per pitch); Magenta's generator
has no such option. Scores are float32 sums of the NADE's log-probabilities of the drawn frames.
"""

import numpy as np

from magenta_api import deadline
from magenta_api_melody_rnn.beam import branched
from magenta_api_melody_rnn.engine import gather_state

from .engine import RnnNade


def encode(frames, dims: int) -> np.ndarray:
    """PianorollEncoderDecoder's inputs: one row per frame, ones at its pitches."""
    out = np.zeros((len(frames), dims), np.float32)
    for i, frame in enumerate(frames):
        out[i, list(frame)] = 1.0
    return out


def _frame(row) -> tuple:
    return tuple(int(i) for i in np.flatnonzero(row))


class NadeBeam:
    def __init__(self, model: RnnNade, primer: list, rows: int, temperature, rng):
        self.model, self.temperature, self.rng = model, temperature, rng
        self.seqs = [list(primer) for _ in range(rows)]
        self.scores = np.zeros(rows, np.float32)
        self.b_enc = np.zeros((rows, model.num_hidden), np.float32)
        self.b_dec = np.zeros((rows, model.num_dims), np.float32)
        # The RNN's pass over the primer, taken by every entry in its first step.
        out, state = model.rnn.run(encode(primer, model.num_dims)[None])
        self.primer_biases = model.biases(out[0, :1])
        self.primer_state = state
        self.state: tuple | None = None  # the RNN state before the pending input; None until the first step
        self.pending: np.ndarray | None = None  # the frames the RNN reads next

    def select(self, order, copy: bool):
        self.seqs = [list(self.seqs[i]) if copy else self.seqs[i] for i in order]
        self.scores, self.b_enc, self.b_dec = self.scores[order], self.b_enc[order], self.b_dec[order]
        if self.state is not None:
            self.state = gather_state(self.state, order)
        if self.pending is not None:
            self.pending = self.pending[order]

    def best(self, outputs: int, k: int):
        width = len(self.scores) // outputs
        return np.concatenate(
            [
                o * width + np.argsort(-self.scores[o * width : (o + 1) * width], kind="stable")[:k]
                for o in range(outputs)
            ]
        )

    def advance(self, steps: int, final: bool):
        model = self.model
        for s in range(steps):
            deadline.check()
            temperature = self.temperature or None
            frames, log_p = model.nade.sample(self.b_enc, self.b_dec, temperature=temperature, rng=self.rng)
            self.scores = (self.scores + log_p).astype(np.float32)
            for seq, row in zip(self.seqs, frames):
                seq.append(_frame(row))
            if final and s == steps - 1:
                break
            rows = len(self.seqs)
            if self.state is None:  # the first step: the RNN reads the primer
                b_enc, b_dec = self.primer_biases
                self.b_enc, self.b_dec = np.repeat(b_enc, rows, axis=0), np.repeat(b_dec, rows, axis=0)
                self.state = gather_state(self.primer_state, np.zeros(rows, np.intp))
                self.pending = frames
                continue
            assert self.pending is not None
            out, self.state = model.rnn.step(self.pending, self.state)
            self.b_enc, self.b_dec = model.biases(out)
            self.pending = frames


def generate(
    model: RnnNade,
    primer: list,
    num_steps: int,
    num_outputs: int,
    temperature: float,
    rng,
    beam_size: int = 1,
    branch_factor: int = 1,
    steps_per_iteration: int = 1,
) -> list:
    """Extend ``primer`` (frames: tuples of pitch indices) to ``num_steps`` frames, ``num_outputs`` times.
    Returns [(frames, score)]."""
    total = num_steps - len(primer)
    if total <= 0:
        raise ValueError("primer must be shorter than num_steps")
    beam = NadeBeam(model, primer, num_outputs * beam_size, temperature, rng)

    select = beam.select
    if beam_size == 1 and branch_factor == 1:
        steps_per_iteration = total
    first = (total - 1) % steps_per_iteration + 1
    iterations = (total - first) // steps_per_iteration
    if branch_factor > 1:
        select(branched(np.arange(num_outputs * beam_size), num_outputs, branch_factor), True)
    beam.advance(first, iterations == 0)
    for it in range(iterations):
        order = beam.best(num_outputs, beam_size)
        select(branched(order, num_outputs, branch_factor) if branch_factor > 1 else order, branch_factor > 1)
        beam.advance(steps_per_iteration, it == iterations - 1)
    if beam_size * branch_factor > 1:
        select(beam.best(num_outputs, 1), False)
    return [(beam.seqs[o], float(beam.scores[o])) for o in range(num_outputs)]
