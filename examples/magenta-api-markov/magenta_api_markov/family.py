"""A small but real generator: a first-order Markov chain over scale degrees.

The chain starts from a prior that favours steps over leaps; a primer melody (NoteSequence JSON or
base64 MIDI) adds its own degree-to-degree transitions, so continuations sound like the primer.
"""

import itertools
import math

import numpy as np
from note_seq import Melody
from note_seq.protobuf import music_pb2

from magenta_api import Family, GenerateResult, Unprocessable
from magenta_api.music import parse_sequence

DEGREES = 15  # two octaves of scale degrees, centred on the tonic


class MarkovMelody(Family):
    name = "markov"
    description = "Markov-chain melodies over a scale (example plugin)"
    capabilities = ("sample", "continue")
    default_mode = "sample"
    needs_checkpoint = False
    hparams_schema = {
        "type": "object",
        "required": ["scale", "tonic"],
        "properties": {
            "scale": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 11}, "minItems": 1},
            "tonic": {"type": "integer", "minimum": 24, "maximum": 96},
            "steps_per_quarter": {"type": "integer", "minimum": 1},
        },
    }
    params_schema = {
        "type": "object",
        "properties": {"rest_probability": {"type": "number", "minimum": 0, "maximum": 0.9}},
    }
    defaults = {"length": 32, "temperature": 1.0}

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        scale = spec.hparams["scale"]
        tonic = spec.hparams["tonic"]
        self.pitches = np.array(
            [
                tonic + 12 * (d // len(scale) - 1) + scale[d % len(scale)]
                for d in range(len(scale), len(scale) + DEGREES)
            ]
        )
        distance = np.abs(np.arange(DEGREES)[:, None] - np.arange(DEGREES)[None, :])
        self.prior = np.exp(-distance / 1.5) + 0.01
        self.steps_per_quarter = spec.hparams.get("steps_per_quarter", 4)

    def _degrees_of(self, sequence):
        degrees = []
        for note in sorted(sequence.notes, key=lambda n: n.start_time):
            d = int(np.argmin(np.abs(self.pitches - note.pitch)))
            if abs(self.pitches[d] - note.pitch) > 2:
                raise Unprocessable(
                    f"primer pitch {note.pitch} is far outside this model's range "
                    f"{self.pitches.min()}-{self.pitches.max()}",
                    {"field": "/primer"},
                )
            degrees.append(d)
        return degrees

    def _primer_sequence(self, request):
        """The primer as a NoteSequence: Magenta's event list (pitch, -1 note-off, -2 hold per 16th
        step), NoteSequence JSON or base64 MIDI, as the other ``continue`` models take it."""
        raw = request.primer
        if isinstance(raw, list):
            if not all(isinstance(e, int) and not isinstance(e, bool) and -2 <= e <= 127 for e in raw):
                raise Unprocessable(
                    "an event-list primer holds MIDI pitches 0..127, -1 (note-off) or -2 (hold)", {"field": "/primer"}
                )
            return Melody(raw, steps_per_quarter=self.steps_per_quarter).to_sequence(qpm=request.qpm)
        return parse_sequence(raw, "/primer")

    def generate(self, request):
        counts = self.prior.copy()
        start = DEGREES // 2
        seconds_per_step = 60.0 / request.qpm / self.steps_per_quarter
        primer_seq, primer_steps = None, 0
        if request.mode == "continue":
            if request.primer is None:
                raise Unprocessable("mode 'continue' needs a primer", {"field": "/primer"})
            primer_seq = self._primer_sequence(request)
            primer = self._degrees_of(primer_seq)
            if not primer:
                raise Unprocessable("the primer has no notes", {"field": "/primer"})
            for a, b in itertools.pairwise(primer):
                counts[a, b] += 4.0
            start = primer[-1]
            # Like every ``continue``: the output starts with the primer and ``length`` counts its steps.
            primer_steps = math.ceil(round(primer_seq.total_time / seconds_per_step, 6))
            if primer_steps >= request.length:
                raise Unprocessable(
                    f"the primer lasts {primer_steps} steps; length ({request.length}) counts them and must be greater",
                    {"field": "/length", "primer_steps": primer_steps},
                )
        power = 1.0 / max(request.temperature, 1e-3)
        probs = counts**power
        probs /= probs.sum(axis=1, keepdims=True)
        rest_p = float(request.params.get("rest_probability", 0.15))
        sequences = []
        for _ in range(request.num_outputs):
            seq = music_pb2.NoteSequence(ticks_per_quarter=220)
            seq.tempos.add(qpm=request.qpm)
            if primer_seq is not None:
                seq.notes.extend(primer_seq.notes)
            degree, step = start, primer_steps
            while step < request.length:
                duration = int(request.rng.choice([1, 2, 2, 4]))
                duration = min(duration, request.length - step)
                if request.rng.random() >= rest_p:
                    degree = int(request.rng.choice(DEGREES, p=probs[degree]))
                    seq.notes.add(
                        pitch=int(self.pitches[degree]),
                        velocity=80,
                        start_time=step * seconds_per_step,
                        end_time=(step + duration) * seconds_per_step,
                    )
                step += duration
            seq.total_time = request.length * seconds_per_step
            sequences.append(seq)
        return GenerateResult(sequences)
