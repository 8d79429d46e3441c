"""The ``improv_rnn`` family: Magenta's ImprovRNN (``basic_improv``, ``attention_improv``,
``chord_pitches_improv``): a melody improvised over a chord progression, on this plugin's events RNN and
beam search, as ``ImprovRnnSequenceGenerator`` runs it.

The chords come from the request's ``chords`` field (the core's type, ``magenta_api.chords``: one symbol
per bar, or changes at steps or times), else from the primer sequence's chord annotations. They are laid
on the melody's 16th-step grid from its first step; the melody is squashed into the config's range
(48..83, octaves only: ImprovRNN has no key transposition) and the chords are transposed with it. The
input of event ``p`` is ``[chord encoding of step p + 1 | melody encoding of event p]`` (note-seq's
``ConditionalEventSequenceEncoderDecoder``; the last chord is repeated past the end, as magenta's
default control extension). The output is a lead sheet: the melody with the chords as ``CHORD_SYMBOL``
annotations, and with ``render_chords`` the chords played as notes (note-seq's ``BasicChordRenderer``, as
``improv_rnn_generate --render_chords``).
"""

import logging

import numpy as np
from note_seq import (
    BasicChordRenderer,
    LeadSheet,
    Melody,
    PitchChordsEncoderDecoder,
    TriadChordOneHotEncoding,
    chords_lib,
)
from note_seq import encoder_decoder as ed
from note_seq.melody_encoder_decoder import KeyMelodyEncoderDecoder, MelodyOneHotEncoding

from magenta_api import Family, GenerateRequest, GenerateResult, Unprocessable
from magenta_api.chords import CHORDS_SCHEMA, from_sequence, parse_chords
from magenta_api.music import parse_sequence

from . import beam, beam_request, rows
from .encoders import InputEncoder
from .engine import EventRnn
from .keymelody import KeyMelodyTracker
from .primer import parse_primer

logger = logging.getLogger(__name__)

MIN_NOTE, MAX_NOTE = 48, 84  # improv_rnn_model.DEFAULT_MIN_NOTE / DEFAULT_MAX_NOTE
CHORD_VELOCITY = 50  # improv_rnn_generate's rendered chords
# config -> (melody encoding, chord encoding, attention length)
IMPROV = {
    "basic_improv": ("one_hot", "triad", 0),
    "attention_improv": ("key", "triad", 40),
    "chord_pitches_improv": ("one_hot", "pitches", 0),
}


def chord_encoder(kind: str):
    if kind == "triad":
        return ed.OneHotEventSequenceEncoderDecoder(TriadChordOneHotEncoding())
    return PitchChordsEncoderDecoder()


def melody_encoder(kind: str, min_note: int = MIN_NOTE, max_note: int = MAX_NOTE):
    if kind == "key":
        return KeyMelodyEncoderDecoder(min_note=min_note, max_note=max_note)
    return ed.OneHotEventSequenceEncoderDecoder(MelodyOneHotEncoding(min_note=min_note, max_note=max_note))


def conditional_encoder(config: str, min_note: int = MIN_NOTE, max_note: int = MAX_NOTE):
    """note-seq's encoder of a config, exactly as improv_rnn_model.default_configs builds it."""
    m, c, _ = IMPROV[config]
    return ed.ConditionalEventSequenceEncoderDecoder(chord_encoder(c), melody_encoder(m, min_note, max_note))


class ChordTracker:
    """One sequence's position and running melody state; ``push`` gives the new event's full input."""

    def __init__(self, encoder: "ImprovEncoder", inner=None, position: int = 0):
        self.encoder, self.inner, self.position = encoder, inner, position
        self.vector: np.ndarray | None = None

    def copy(self) -> "ChordTracker":
        out = ChordTracker(self.encoder, self.inner.copy() if self.inner is not None else None, self.position)
        out.vector = self.vector
        return out

    def push(self, event) -> np.ndarray:
        enc = self.encoder
        v = np.zeros(enc.input_size, np.float32)
        v[: enc.chord_size] = enc.chord_vector(self.position + 1)
        if self.inner is not None:
            v[enc.chord_size :] = self.inner.push(event)
        else:
            v[enc.chord_size + enc.melody._index(event)] = 1.0
        self.position += 1
        self.vector = v
        return v

    def _vector(self) -> np.ndarray:
        assert self.vector is not None
        return self.vector


class ImprovEncoder:
    """The beam search's encoder: chords of the step after each event, then the melody's own encoding."""

    lookback = False
    one_hot = False

    def __init__(self, config: str, chords: list, min_note: int = MIN_NOTE, max_note: int = MAX_NOTE):
        m, c, _ = IMPROV[config]
        self.melody = InputEncoder(melody_encoder(m, min_note, max_note))
        self.key = m == "key"
        self.chords = list(chords)
        self._chord_encoder = chord_encoder(c)
        self.chord_size = self._chord_encoder.input_size
        self.input_size = self.chord_size + self.melody.input_size
        self.num_classes = self.melody.num_classes
        self._vectors: dict = {}

    def chord_vector(self, position: int) -> np.ndarray:
        symbol = self.chords[min(position, len(self.chords) - 1)]  # the last chord repeats past the end
        out = self._vectors.get(symbol)
        if out is None:
            out = np.asarray(self._chord_encoder.events_to_input([symbol], 0), np.float32)
            self._vectors[symbol] = out
        return out

    def tracker(self, events) -> ChordTracker:
        tracker = ChordTracker(self, KeyMelodyTracker(self.melody.encoder) if self.key else None)
        for e in events:
            tracker.push(e)
        return tracker

    def full(self, events) -> np.ndarray:
        tracker = ChordTracker(self, KeyMelodyTracker(self.melody.encoder) if self.key else None)
        return np.stack([tracker.push(e) for e in events])

    def last(self, batch, trackers=None) -> np.ndarray:
        if trackers is not None and all(t is not None for t in trackers):
            return np.stack([t._vector() for t in trackers])
        return np.stack([self.full(events)[-1] for events in batch])

    def labels(self, events) -> list:
        return self.melody.labels(events)

    def to_event(self, class_index: int, events):
        return self.melody.to_event(class_index, events)


def _improv_config_of(spec, meta) -> str:
    name = (spec.hparams or {}).get("config") or meta.get("generator_id")
    js = meta.get("config") if isinstance(meta.get("config"), dict) else None
    if name is None and js and js.get("chordEncoder"):
        name = "chord_pitches_improv" if js["chordEncoder"] == "PitchChordEncoder" else "basic_improv"
    if name not in IMPROV:
        raise ValueError(f"model {spec.id}: set hparams.config to one of {', '.join(IMPROV)}")
    return name


class ImprovRnnFamily(Family):
    name = "improv_rnn"
    description = (
        "Magenta's ImprovRNN (basic_improv, attention_improv, chord_pitches_improv): a melody improvised over a "
        "chord progression (the chords field), continuing a primer, with beam search and optional rendered chords."
    )
    capabilities = ("continue", "sample")
    default_mode = "continue"
    defaults = {"temperature": 1.0, "length": 64, "qpm": 120.0, "num_outputs": 1}
    hparams_schema = {
        "type": "object",
        "properties": {
            "config": {"enum": list(IMPROV)},
            "min_note": {"type": "integer", "minimum": 0, "maximum": 127},
            "max_note": {"type": "integer", "minimum": 1, "maximum": 128},
            "attn_length": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    }
    params_schema = {
        "type": "object",
        "properties": {
            "chords": CHORDS_SCHEMA,
            "render_chords": {
                "type": "boolean",
                "description": "also play the backing chords as notes (improv_rnn_generate --render_chords)",
            },
            **beam_request.SCHEMA,
            "start_step": {
                "type": "integer",
                "minimum": 0,
                "maximum": 1_000_000,
                "description": "the first generated step (default: the first step after the primer)",
            },
        },
    }

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        meta = getattr(checkpoint, "meta", None) or {}
        hp = dict(spec.hparams or {})
        self.config = _improv_config_of(spec, meta)
        js = meta.get("config") if isinstance(meta.get("config"), dict) else None
        args = ((js or {}).get("dataConverter") or {}).get("args") or {}
        self.min_note = int(hp.get("min_note", args.get("minPitch", MIN_NOTE)))
        self.max_note = int(hp.get("max_note", int(args["maxPitch"]) + 1 if "maxPitch" in args else MAX_NOTE))
        attn = int(hp.get("attn_length", (js or {}).get("attentionLength") or IMPROV[self.config][2]))
        self.model = EventRnn.from_variables(checkpoint.variables, attn)
        enc = conditional_encoder(self.config, self.min_note, self.max_note)
        sizes = (self.model.input_size, self.model.num_classes)
        if sizes != (enc.input_size, enc.num_classes):
            raise ValueError(
                f"model {spec.id}: the checkpoint takes {sizes[0]} inputs and predicts {sizes[1]} classes, but "
                f"{self.config} encodes {enc.input_size} inputs ({chord_encoder(IMPROV[self.config][1]).input_size} "
                f"chord + melody) and {enc.num_classes} classes"
            )
        self._chord_check = chord_encoder(IMPROV[self.config][1])
        logger.info("improv_rnn %s: config %s, layers %s", spec.id, self.config, self.model.layer_sizes)

    @classmethod
    def validate(cls, spec, request):
        if request.mode == "sample" and request.primer is not None:
            raise Unprocessable(
                "mode 'sample' starts from the default primer; use mode 'continue' to send a primer",
                {"field": "/primer"},
                code="invalid_primer",
            )
        parse_chords(request.params.get("chords"))  # a bad symbol is a 422 naming it, before any weights
        beam_request.check_rows(request)

    def _progression(self, request):
        progression = parse_chords(request.params.get("chords"))
        if progression is None and request.primer is not None and not isinstance(request.primer, list):
            progression = from_sequence(parse_sequence(request.primer, "/primer"))
        if progression is None:
            raise Unprocessable(
                'ImprovRNN improvises over chords: send chords (e.g. ["C", "G", "Am", "F"], one per bar) or '
                "a primer sequence with chord annotations",
                {"field": "/chords"},
                code="invalid_chord",
            )
        progression.check(lambda symbol: self._chord_check.events_to_input([symbol], 0), f"{self.config}'s chords")
        return progression

    def _prepare(self, request: GenerateRequest) -> tuple:
        """The request's melody so far and its chords as the RNN reads them: (:class:`~.rows.Row` with its
        own chords encoder, context), the context being what :meth:`_answer` needs besides the results."""
        progression = self._progression(request)
        length = int(request.length or self.defaults["length"])
        primer = parse_primer(request.primer, False, 4, [60])
        track, start = primer.align(request.params.get("start_step"), length)
        qpm = request.qpm if "qpm" in request.explicit or not primer.qpm else primer.qpm
        symbols = progression.per_step(length, qpm=qpm, start_step=track.start_step)
        chords = chords_lib.ChordProgression(
            symbols, start_step=track.start_step, steps_per_bar=track.steps_per_bar, steps_per_quarter=4
        )
        transpose = track.squash(self.min_note, self.max_note, None)
        chords.transpose(transpose)
        encoder = ImprovEncoder(self.config, list(chords), self.min_note, self.max_note)
        row = rows.Row(encoder, list(track), length, request.temperature, request.rng)
        return row, (request, track, start, transpose, qpm, symbols)

    def generate(self, request: GenerateRequest) -> GenerateResult:
        row, context = self._prepare(request)
        results = beam.generate(
            self.model,
            row.encoder,
            row.primer,
            row.num_steps,
            request.num_outputs,
            request.temperature,
            request.rng,
            *beam_request.params(request),
        )
        return self._answer(results, *context)

    # -- dynamic batching (magenta_api.batching) ------------------------------------------------
    def batch_key(self, request: GenerateRequest):
        """See :func:`~.rows.batch_key`: one-output sampling of one length shares a batch, whatever the
        chords (each row has its own encoder)."""
        return rows.batch_key(self.model, request, int(request.length or self.defaults["length"]))

    def generate_batch(self, requests: list) -> list:
        """Each request's primer and chords as alone, then every row's steps together
        (:func:`~.rows.run_batch`)."""
        return rows.run_batch(self.model, requests, self._prepare, self._answer, self.generate)

    def _answer(self, results, request, track, start, transpose, qpm, symbols) -> GenerateResult:
        backing = chords_lib.ChordProgression(
            symbols, start_step=track.start_step, steps_per_bar=track.steps_per_bar, steps_per_quarter=4
        )
        sequences, events = [], []
        for r in results:
            melody = Melody(
                r.events, start_step=track.start_step, steps_per_bar=track.steps_per_bar, steps_per_quarter=4
            )
            melody.transpose(-transpose)
            seq = LeadSheet(melody, backing).to_sequence(qpm=qpm)
            if request.params.get("render_chords"):
                BasicChordRenderer(velocity=CHORD_VELOCITY).render(seq)
            sequences.append(seq)
            events.append([int(e) for e in melody])
        extra = {
            "events": events,
            "chords": symbols,
            "log_likelihood": [beam.json_score(r.score) for r in results],
            "start_step": start,
            "events_start_step": track.start_step,
        }
        return GenerateResult(sequences=sequences, extra=extra)
