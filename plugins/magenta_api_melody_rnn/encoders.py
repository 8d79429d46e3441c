"""Magenta's MelodyRNN / DrumsRNN configurations: their encodings (note-seq's own encoder classes),
pitch ranges, default primers and attention lengths.

The encoder/decoders are note-seq's pure-Python classes, exactly the ones magenta's
``melody_rnn_model.default_configs`` / ``drums_rnn_model.default_configs`` build, so inputs and labels
are Magenta's by construction.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from note_seq import encoder_decoder as ed
from note_seq.drums_encoder_decoder import MultiDrumOneHotEncoding
from note_seq.melody_encoder_decoder import KeyMelodyEncoderDecoder, MelodyOneHotEncoding

from .keymelody import KeyMelodyTracker

CONFIG_NAMES = ("basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn")


@dataclass
class RnnConfig:
    """What a config fixes besides the weights (magenta's ``EventSequenceRnnConfig``)."""

    name: str
    drums: bool
    min_note: int = 48
    max_note: int = 84  # exclusive, as magenta's MelodyRnnConfig
    transpose_to_key: int | None = 0
    attn_length: int = 0
    steps_per_quarter: int = 4
    binary_counter_bits: int | None = None  # drum_kit: 6 (lookback encoder without lookbacks)
    default_primer: list = field(default_factory=list)


DEFAULTS: dict[str, dict[str, Any]] = {
    "basic_rnn": dict(drums=False, min_note=48, max_note=84, transpose_to_key=0),
    "mono_rnn": dict(drums=False, min_note=0, max_note=128, transpose_to_key=None),
    "lookback_rnn": dict(drums=False, min_note=48, max_note=84, transpose_to_key=0),
    "attention_rnn": dict(drums=False, min_note=48, max_note=84, transpose_to_key=0, attn_length=40),
    "drum_kit_rnn": dict(drums=True, attn_length=32, binary_counter_bits=6),
}

# melody_rnn_generate.py / drums_rnn_generate.py start from these when no primer is given.
DEFAULT_MELODY_PRIMER = [60]
DEFAULT_DRUMS_PRIMER = [[36]]


def make_config(name: str, overrides: dict | None = None) -> RnnConfig:
    if name not in DEFAULTS:
        raise ValueError(f"unknown melody_rnn config {name!r}; expected one of {', '.join(CONFIG_NAMES)}")
    values = dict(DEFAULTS[name])
    values.update({k: v for k, v in (overrides or {}).items() if v is not None or k == "transpose_to_key"})
    cfg = RnnConfig(name=name, **values)
    cfg.default_primer = list(DEFAULT_DRUMS_PRIMER if cfg.drums else DEFAULT_MELODY_PRIMER)
    return cfg


def make_encoder(cfg: RnnConfig):
    """note-seq's encoder/decoder for a config (as magenta's default_configs build it)."""
    if cfg.drums:
        if cfg.binary_counter_bits:
            return ed.LookbackEventSequenceEncoderDecoder(
                MultiDrumOneHotEncoding(), lookback_distances=[], binary_counter_bits=cfg.binary_counter_bits
            )
        return ed.OneHotEventSequenceEncoderDecoder(MultiDrumOneHotEncoding())
    if cfg.name == "attention_rnn":
        return KeyMelodyEncoderDecoder(min_note=cfg.min_note, max_note=cfg.max_note)
    encoding = MelodyOneHotEncoding(min_note=cfg.min_note, max_note=cfg.max_note)
    if cfg.name == "lookback_rnn":
        return ed.LookbackEventSequenceEncoderDecoder(encoding)
    return ed.OneHotEventSequenceEncoderDecoder(encoding)


_MAX_CACHED = 4096


class InputEncoder:
    """Model inputs for a batch of event lists, via the note-seq encoder.

    One-hot encoders take a fast path (set the one index ``encode_event`` gives) instead of
    building a Python list of floats per row; the values are identical.
    """

    def __init__(self, encoder):
        self.encoder = encoder
        self.input_size = encoder.input_size
        self.num_classes = encoder.num_classes
        self._one_hot = encoder._one_hot_encoding if type(encoder) is ed.OneHotEventSequenceEncoderDecoder else None
        self._key = type(encoder) is KeyMelodyEncoderDecoder
        self._lookback = type(encoder) is ed.LookbackEventSequenceEncoderDecoder
        # Decoding depends on the history only through lookback classes; without them, cache it.
        self._decoded = {} if not getattr(encoder, "_lookback_distances", None) else None
        # encode_event is a pure function of the event (an int, or a frozenset of drum pitches that
        # note-seq walks pitch by pitch): memoised, bounded so odd primers cannot grow it unchecked.
        self._encoding = getattr(encoder, "_one_hot_encoding", None)
        self._indices = {}

    def _index(self, event) -> int:
        """``encode_event`` of the one-hot encoding, memoised."""
        i = self._indices.get(event)
        if i is None:
            i = self._encoding.encode_event(event)
            if len(self._indices) < _MAX_CACHED:
                self._indices[event] = i
        return i

    def full(self, events) -> np.ndarray:
        """[len(events), input_size] inputs of every position of one event list."""
        out = np.zeros((len(events), self.input_size), np.float32)
        if self._key:
            tracker = KeyMelodyTracker(self.encoder)
            for i, e in enumerate(events):
                out[i] = tracker.push(e)
            return out
        for i in range(len(events)):
            out[i] = self._row(events, i)
        return out

    def tracker(self, events):
        """Running encoder state of one event list (KeyMelody only; None when inputs are stateless)."""
        if not self._key:
            return None
        tracker = KeyMelodyTracker(self.encoder)
        for e in events:
            tracker.push(e)
        return tracker

    def last(self, batch, trackers=None) -> np.ndarray:
        """[len(batch), input_size] inputs of the last event of each event list (``trackers``: the
        lists' running states, already given their last event, for the KeyMelody encoding)."""
        out = np.zeros((len(batch), self.input_size), np.float32)
        for b, events in enumerate(batch):
            if self._one_hot is not None:
                out[b, self._index(events[-1])] = 1.0
            elif trackers is not None and trackers[b] is not None:
                out[b] = trackers[b]._vector()
            else:
                out[b] = self._row(events, len(events) - 1)
        return out

    def _row(self, events, i):
        if self._one_hot is not None:
            row = np.zeros(self.input_size, np.float32)
            row[self._index(events[i])] = 1.0
            return row
        if self._lookback:
            return self._lookback_row(events, i)
        return self.encoder.events_to_input(events, i)

    def _lookback_row(self, events, position):
        """``LookbackEventSequenceEncoderDecoder.events_to_input`` written with NumPy (same values):
        current event, next event for each lookback, binary counter of the next position, repeat flags."""
        row = np.zeros(self.input_size, np.float32)
        row[self.lookback_hots(events, position)] = 1.0
        offset, bits = self.counter_layout
        row[offset : offset + bits] = np.where((position + 1) >> np.arange(bits) & 1, 1.0, -1.0)
        return row

    @property
    def lookback(self) -> bool:
        """Inputs are lookback encodings: a few ones (:meth:`lookback_hots`) and a binary counter."""
        return self._lookback

    @property
    def counter_layout(self) -> tuple:
        """(offset, bits) of the lookback encoding's binary counter, which holds ``(position + 1)``
        with +1 for a set bit and -1 for a clear one."""
        enc = self.encoder
        return (enc._one_hot_encoding.num_classes * (1 + len(enc._lookback_distances)), enc._binary_counter_bits)

    def lookback_hots(self, events, position) -> list:
        """Indices of the ones in the lookback input of ``position``: the current event, the next
        event for each lookback, and the repeat flags that are set (the counter is apart)."""
        enc = self.encoder
        encoding = enc._one_hot_encoding
        size = encoding.num_classes
        hots = [self._index(events[position])]
        offset = size
        for distance in enc._lookback_distances:
            at = position - distance + 1
            hots.append(offset + self._index(encoding.default_event if at < 0 else events[at]))
            offset += size
        offset += enc._binary_counter_bits
        for distance in enc._lookback_distances:
            at = position - distance
            if at >= 0 and events[position] == events[at]:
                hots.append(offset)
            offset += 1
        return hots

    @property
    def one_hot(self) -> bool:
        """Inputs are one-hot of the last event, whose index is the class just sampled."""
        return self._one_hot is not None

    def labels(self, events) -> list:
        """Labels of positions 1..len-1 (what the model predicts over a primer)."""
        return [self.encoder.events_to_label(events, i) for i in range(1, len(events))]

    def to_event(self, class_index: int, events):
        class_index = int(class_index)
        if self._decoded is None:
            return self.encoder.class_index_to_event(class_index, events)
        event = self._decoded.get(class_index)
        if event is None:
            event = self._decoded[class_index] = self.encoder.class_index_to_event(class_index, events)
        return event
