"""The ``polyphony_rnn`` family: Magenta's PolyphonyRNN (Bach-style polyphony: per 16th step the notes
that start and the notes held, one-hot over 259 events) on the melody_rnn plugin's events RNN and beam
search, with ``PolyphonyRnnSequenceGenerator``'s two primer options:

- ``condition_on_primer`` (default false): the RNN first reads the primer, then continues it. Without
  it, generation starts afresh at the primer's end and the output is the primer followed by the new
  part (magenta's ``base_note_sequence``).
- ``inject_primer_during_generation`` (default true): at each new step the primer's notes of that step
  are written into the sequence (from the primer's first step, or after it when conditioned), so the
  model harmonizes the primer; the RNN reads them teacher-forced (``_inject_melody``).

``length`` counts 16th steps from the primer's time 0 (``polyphony_rnn_generate --num_steps``); the RNN
runs 5 steps per missing step until the length is filled, then the sequence is cut to it.
"""

import copy
import logging
from collections.abc import Callable

from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

from magenta_api import Family, GenerateRequest, GenerateResult, Unprocessable
from magenta_api.music import parse_sequence
from magenta_api_melody_rnn import beam, beam_request
from magenta_api_melody_rnn.encoders import InputEncoder
from magenta_api_melody_rnn.engine import EventRnn

from .events import START, STEP_END, PolyphonicSequence, PrimerInjection, events_json, from_quantized, make_encoder

logger = logging.getLogger(__name__)

STEPS_PER_QUARTER = 4
DEFAULT_QPM = 120.0
RNN_STEPS_PER_STEP = 5  # the generator's estimate


class InjectingEncoder(InputEncoder):
    """The one-hot polyphony encoder with magenta's ``_inject_melody`` as the beam search's ``inject``."""

    def __init__(self, melody: PolyphonicSequence | None, start_step: int):
        super().__init__(make_encoder())
        self.melody, self.start_step = melody, start_step
        self._steps: dict = {}  # id(event list) -> (the list, events counted, STEP_ENDs among them)
        self._injection: PrimerInjection | None = None  # built on the first index_injector call
        # the beam search's hook; None: nothing is injected
        self.inject: Callable[[list], list] | None = self._inject if melody is not None else None

    def index_injector(self, events):
        """``inject`` on class indices for the n=1 loop (``beam.sample_indices``): a function of each
        sampled class giving the (index, event) pairs to inject after it (:class:`.events.PrimerInjection`)."""
        assert self.melody is not None
        if self._injection is None:
            self._injection = PrimerInjection(self.melody.events, self.start_step, self._index)
        return self._injection.follow(events)

    def _step_count(self, events) -> int:
        """STEP_ENDs in ``events``, counting only what was appended since the last call on the same list
        (the cache holds the list, so its id cannot be reused while cached)."""
        cached = self._steps.get(id(events))
        start, count = (cached[1], cached[2]) if cached is not None and cached[0] is events else (0, 0)
        if start > len(events):
            start, count = 0, 0
        count += sum(1 for e in events[start:] if e.event_type == STEP_END)
        self._steps[id(events)] = (events, len(events), count)
        return count

    def _inject(self, events) -> list:
        """The primer's events of the step ``events`` has just reached (after a STEP_END, or right after
        a lone START): the events following the matching STEP_END of the primer, up to its next one."""
        last = events[-1].event_type
        if not (last == STEP_END or (last == START and len(events) == 1)):
            return []
        steps = self._step_count(events)
        count = self.start_step
        assert self.melody is not None
        melody = self.melody.events
        for j, event in enumerate(melody):
            if event.event_type == STEP_END:
                count += 1
            if count == steps:
                out = []
                at = j + 1
                while at < len(melody) and melody[at].event_type != STEP_END:
                    out.append(melody[at])
                    at += 1
                return out
        return []


def _bad(message: str, **details) -> Unprocessable:
    return Unprocessable(message, {"field": "/primer", **details}, code="invalid_primer")


class PolyphonyRnnFamily(Family):
    name = "polyphony_rnn"
    description = (
        "Magenta's PolyphonyRNN: polyphonic continuation or harmonization of a primer (16th steps, notes "
        "that start or are held per step), with condition_on_primer, inject_primer_during_generation and beam search."
    )
    capabilities = ("continue", "sample")
    default_mode = "continue"
    defaults = {"temperature": 1.0, "length": 128, "qpm": 120.0, "num_outputs": 1}
    hparams_schema = {
        "type": "object",
        "properties": {"config": {"enum": ["polyphony"]}},
        "additionalProperties": False,
    }
    params_schema = {
        "type": "object",
        "properties": {
            **beam_request.SCHEMA,
            "condition_on_primer": {
                "type": "boolean",
                "description": "the RNN reads the primer before generating (default false, as polyphony_rnn_generate)",
            },
            "inject_primer_during_generation": {
                "type": "boolean",
                "description": "write the primer's notes into the generated steps so the model harmonizes them "
                "(default true)",
            },
        },
    }

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        self.model = EventRnn.from_variables(checkpoint.variables)
        encoder = make_encoder()
        sizes = (self.model.input_size, self.model.num_classes)
        if sizes != (encoder.input_size, encoder.num_classes):
            raise ValueError(
                f"model {spec.id}: the checkpoint takes {sizes[0]} inputs and predicts {sizes[1]} classes; "
                f"PolyphonyRNN encodes {encoder.input_size} and {encoder.num_classes} (3 + 2 x 128 events)"
            )
        logger.info("polyphony_rnn %s: layers %s", spec.id, self.model.layer_sizes)

    @classmethod
    def validate(cls, spec, request):
        if request.mode == "sample" and request.primer is not None:
            raise _bad("mode 'sample' starts from nothing; use mode 'continue' to send a primer")
        if request.mode == "continue" and request.primer is None:
            raise _bad("mode 'continue' needs a primer (NoteSequence JSON or base64 MIDI)")
        if isinstance(request.primer, list):
            raise _bad("PolyphonyRNN primers are NoteSequence JSON or base64 MIDI, not event lists")
        beam_request.check_rows(request)

    def _primer(self, request, qpm):
        """(primer NoteSequence, quantized, PolyphonicSequence) as the generator extracts it (an empty
        primer too: magenta's extracted sequence is START, END, which is truthy)."""
        if request.primer is None:
            seq = music_pb2.NoteSequence()
            seq.tempos.add().qpm = qpm
            seq.ticks_per_quarter = 220
        else:
            seq = parse_sequence(request.primer, "/primer")
            if not seq.tempos:
                seq.tempos.add().qpm = qpm
        try:
            q = sequences_lib.quantize_note_sequence(seq, STEPS_PER_QUARTER)
        except Exception as exc:  # MultipleTempoError, MultipleTimeSignatureError, NegativeTimeError
            raise _bad(
                f"primer sequence cannot be quantized as Magenta does: {exc}", reason=type(exc).__name__
            ) from exc
        programs = sorted({n.program for n in q.notes})
        if len(programs) > 1:
            raise _bad(
                f"primer plays {len(programs)} programs ({', '.join(map(str, programs))}); PolyphonyRNN reads one "
                "instrument (Magenta discards sequences with more than one program)",
                programs=programs,
            )
        poly = from_quantized(q)
        assert poly is not None  # one program at most, checked above
        return seq, q, poly

    def generate(self, request: GenerateRequest) -> GenerateResult:
        p = request.params
        condition = bool(p.get("condition_on_primer", False))
        inject = bool(p.get("inject_primer_during_generation", True))
        qpm = request.qpm
        if request.primer is not None and "qpm" not in request.explicit:
            seq = parse_sequence(request.primer, "/primer")
            if seq.tempos and seq.tempos[0].qpm:
                qpm = seq.tempos[0].qpm
        primer_seq, _, poly = self._primer(request, qpm)
        seconds_per_step = 60.0 / qpm / STEPS_PER_QUARTER
        steps_per_second = sequences_lib.steps_per_quarter_to_steps_per_second(STEPS_PER_QUARTER, qpm)
        length = int(request.length or self.defaults["length"])
        # polyphony_rnn_generate starts at the primer's total_time, never before its last note ends
        primer_seq.total_time = max([primer_seq.total_time] + [n.end_time for n in primer_seq.notes])
        start_time = primer_seq.total_time
        end_time = length * seconds_per_step
        if start_time >= end_time:
            raise Unprocessable(
                f"the primer lasts {start_time:g} s, the requested length {length} steps ends at {end_time:g} s: "
                "ask for more steps than the primer has",
                {"field": "/length"},
                code="invalid_primer",
            )
        start = int(sequences_lib.quantize_to_step(start_time, steps_per_second, quantize_cutoff=0))
        end = int(sequences_lib.quantize_to_step(end_time, steps_per_second, quantize_cutoff=1.0))
        poly.set_length(start - poly.start_step)
        poly.trim_trailing_end_events()
        melody = copy.deepcopy(poly) if inject else None
        encoder = InjectingEncoder(melody, poly.num_steps if condition else 0)
        if not condition:
            poly = PolyphonicSequence(steps_per_quarter=STEPS_PER_QUARTER, start_step=start)
            poly.trim_trailing_end_events()
        total = poly.num_steps + (end - start)
        beam_size, branch_factor, steps_per_iteration = beam_request.params(request)
        outputs = [PolyphonicSequence(steps_per_quarter=STEPS_PER_QUARTER, start_step=poly.start_step, events=poly)]
        outputs = outputs * request.num_outputs
        scores = [0.0] * request.num_outputs
        rnn_steps = 0
        for o in range(request.num_outputs):
            seqs = self._extend(outputs[o], total, encoder, request, (beam_size, branch_factor, steps_per_iteration))
            outputs[o], scores[o], steps = seqs
            rnn_steps = max(rnn_steps, steps)
        sequences, event_lists = [], []
        base = None if condition else primer_seq
        for out in outputs:
            out.set_length(total)
            sequences.append(out.to_sequence(qpm=qpm, base_note_sequence=copy.deepcopy(base) if base else None))
            event_lists.append(events_json(out))
        extra = {
            "events": event_lists,
            "log_likelihood": [beam.json_score(s) for s in scores],
            "rnn_steps": rnn_steps,
            "start_step": start,
            "events_start_step": outputs[0].start_step,
        }
        return GenerateResult(sequences=sequences, extra=extra)

    def _extend(self, poly, total, encoder, request, beam_args):
        """The generator's loop: 5 RNN steps per missing step, until the sequence has ``total`` steps."""
        score, rnn_steps = 0.0, 0
        while poly.num_steps < total:
            todo = RNN_STEPS_PER_STEP * (total - poly.num_steps)
            out = beam.generate(
                self.model, encoder, list(poly), len(poly) + todo, 1, request.temperature, request.rng, *beam_args
            )[0]
            poly = PolyphonicSequence(
                steps_per_quarter=STEPS_PER_QUARTER, start_step=poly.start_step, events=out.events
            )
            score, rnn_steps = out.score, rnn_steps + todo
        return poly, score, rnn_steps
