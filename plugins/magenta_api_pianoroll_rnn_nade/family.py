"""The ``pianoroll_rnn_nade`` family: Magenta's Pianoroll RNN-NADE (``rnn-nade``, ``rnn-nade_attn``):
polyphony as a pianoroll of 88 binary pitches per 16th step, each frame drawn from a NADE whose biases
the RNN gives, as ``PianorollRnnNadeSequenceGenerator`` runs it (see ``generate.py`` for the details)."""

import logging

from note_seq import PianorollSequence, sequences_lib

from magenta_api import Family, GenerateRequest, GenerateResult, Unprocessable
from magenta_api.music import parse_sequence
from magenta_api_melody_rnn import beam_request

from . import generate as gen
from .engine import RnnNade

logger = logging.getLogger(__name__)

STEPS_PER_QUARTER = 4
DEFAULT_QPM = 120.0
ATTN_LENGTH = {"rnn-nade": 0, "rnn-nade_attn": 32}  # pianoroll_rnn_nade_model.default_configs
FIELD = "/primer"


def _bad(message: str, **details) -> Unprocessable:
    return Unprocessable(message, {"field": FIELD, **details}, code="invalid_primer")


def _check_pitches(frames, dims: int, what: str):
    high = sorted({p for f in frames for p in f if p >= dims})
    if high:
        raise _bad(
            f"{what} has pitches {', '.join(map(str, high[:8]))}: this model's {dims} inputs are MIDI pitches "
            f"0..{dims - 1} (Magenta reads a pianoroll's pitches as they are)",
            pitches=high[:8],
        )


class PianorollRnnNadeFamily(Family):
    name = "pianoroll_rnn_nade"
    description = (
        "Magenta's Pianoroll RNN-NADE (rnn-nade, rnn-nade_attn): polyphonic pianoroll continuation, each 16th "
        "step's 88 pitches drawn from a NADE the RNN conditions; temperature 0 is Magenta's threshold decoding."
    )
    capabilities = ("continue", "sample")
    default_mode = "continue"
    defaults = {"temperature": 1.0, "length": 128, "qpm": 120.0, "num_outputs": 1}
    hparams_schema = {
        "type": "object",
        "properties": {"config": {"enum": list(ATTN_LENGTH)}, "attn_length": {"type": "integer", "minimum": 0}},
        "additionalProperties": False,
    }
    params_schema = {
        "type": "object",
        "properties": {
            **beam_request.SCHEMA,
        },
    }

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        hp = dict(spec.hparams or {})
        meta = getattr(checkpoint, "meta", None) or {}
        name = hp.get("config") or meta.get("generator_id") or "rnn-nade"
        if name not in ATTN_LENGTH:
            raise ValueError(f"model {spec.id}: {name!r} is not a Pianoroll RNN-NADE config (rnn-nade, rnn-nade_attn)")
        self.config = name
        self.model = RnnNade.from_variables(checkpoint.variables, int(hp.get("attn_length", ATTN_LENGTH[name])))
        logger.info(
            "pianoroll_rnn_nade %s: config %s, layers %s, NADE %d x %d",
            spec.id,
            name,
            self.model.rnn.layer_sizes,
            self.model.num_dims,
            self.model.num_hidden,
        )

    @classmethod
    def validate(cls, spec, request):
        if request.mode == "sample" and request.primer is not None:
            raise _bad("mode 'sample' starts from one silent step; use mode 'continue' to send a primer")
        beam_request.check_rows(request)

    def _primer(self, raw, qpm):
        """(frames, the step generation starts at, the primer's tempo or None)."""
        if raw is None:
            raw = [[]]  # Magenta's generator refuses an empty primer: start from one silent step
        if isinstance(raw, list):
            if not raw:
                raise _bad("primer is an empty event list; give at least one step (a list of pitches, [] = silence)")
            frames = []
            for i, f in enumerate(raw):
                ok = isinstance(f, list) and all(isinstance(p, int) and not isinstance(p, bool) for p in f)
                if not ok or not all(0 <= p <= 127 for p in f):
                    raise _bad(f"primer step {i} is {f!r}: expected a list of MIDI pitches ([] = silence)", index=i)
                frames.append(tuple(sorted(set(f))))
            _check_pitches(frames, self.model.num_dims, "the primer")
            return frames, len(frames) + 1, None  # an event list ends exactly on its last step
        seq = parse_sequence(raw, FIELD)
        tempo = seq.tempos[0].qpm if seq.tempos and seq.tempos[0].qpm else None
        if len({n.program for n in seq.notes}) > 1:
            raise _bad("the primer plays more than one program; Magenta extracts no pianoroll from it")
        try:
            q = sequences_lib.quantize_note_sequence(seq, STEPS_PER_QUARTER)
        except Exception as exc:  # MultipleTempoError, MultipleTimeSignatureError, NegativeTimeError
            raise _bad(
                f"primer sequence cannot be quantized as Magenta does: {exc}", reason=type(exc).__name__
            ) from exc
        frames = [tuple(int(p) for p in f) for f in PianorollSequence(quantized_sequence=q, start_step=0)]
        if not frames:
            raise _bad("primer sequence has no length (Magenta: 'No priming pianoroll could be extracted')")
        _check_pitches(frames, self.model.num_dims, "the primer")
        end = max([seq.total_time] + [n.end_time for n in seq.notes])
        sps = sequences_lib.steps_per_quarter_to_steps_per_second(STEPS_PER_QUARTER, tempo or qpm)
        return frames, int(sequences_lib.quantize_to_step(end, sps, quantize_cutoff=0)), tempo

    def generate(self, request: GenerateRequest) -> GenerateResult:
        length = int(request.length or self.defaults["length"])
        frames, start, tempo = self._primer(request.primer, request.qpm)
        qpm = request.qpm if "qpm" in request.explicit or tempo is None else tempo
        if start >= length:
            raise Unprocessable(
                f"generation starts at step {start}, after the primer; ask for a length over {start}",
                {"field": "/length", "start_step": start},
                code="invalid_primer",
            )
        roll = PianorollSequence(events_list=frames, steps_per_quarter=STEPS_PER_QUARTER)
        roll.set_length(start)  # pad with silence (or cut) to where generation starts
        beam_args = beam_request.params(request)
        results = gen.generate(
            self.model, list(roll), length, request.num_outputs, request.temperature, request.rng, *beam_args
        )
        sequences, events = [], []
        for out_frames, _ in results:
            out = PianorollSequence(events_list=out_frames, steps_per_quarter=STEPS_PER_QUARTER)
            out.set_length(length)
            sequences.append(out.to_sequence(qpm=qpm))
            events.append([[int(p) for p in f] for f in out])
        extra = {"events": events, "log_likelihood": [score for _, score in results], "start_step": start}
        return GenerateResult(sequences=sequences, extra=extra)
