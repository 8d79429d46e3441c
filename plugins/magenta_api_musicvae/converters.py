"""NoteSequence <-> MusicVAE tensors, with the semantics of magenta 2.1.4's ``OneHotMelodyConverter``
and ``DrumsConverter`` (music_vae/data.py), built on note-seq.

``to_tensors`` returns exactly what magenta's converters return (same tensors, same order, same
truncation to ``max_tensors``), so a sequence encodes to the same numbers as in Magenta.
:meth:`BaseConverter.windows` gives the same windows in time order, which the service uses to pick
"the first two bars" of a longer input, and :meth:`BaseConverter.explain` says why a sequence
yields nothing.

Melody classes: 0 = no event, 1 = note-off, 2.. = pitches min_pitch..max_pitch (90 for 21..108).
Drum classes: 9 drum types (Magenta's reduced pitch map); a step is the bitmask of the types hit
(512-way one-hot); the encoder reads a 9-bit roll plus a "nothing hit" bit.
"""

import copy
import logging
from dataclasses import dataclass, field

import note_seq
import numpy as np
from note_seq import drums_encoder_decoder, sequences_lib
from note_seq.drums_lib import DrumTrack
from note_seq.melodies_lib import Melody, PolyphonicMelodyError

log = logging.getLogger(__name__)

PIANO_MIN_PITCH, PIANO_MAX_PITCH = 21, 108
MEL_PROGRAMS = range(32)  # piano, chromatic percussion, organ, guitar
DRUM_PITCH_CLASSES = drums_encoder_decoder.DEFAULT_DRUM_TYPE_PITCHES  # 9 classes
# 61 classes, the full General MIDI set (magenta's data.FULL_DRUM_PITCH_CLASSES, nade-drums_2bar_full)
FULL_DRUM_PITCH_CLASSES = [
    [p]
    for p in [
        36,
        35,
        38,
        27,
        28,
        31,
        32,
        33,
        34,
        37,
        39,
        40,
        56,
        65,
        66,
        75,
        85,
        42,
        44,
        54,
        68,
        69,
        70,
        71,
        73,
        78,
        80,
        46,
        67,
        72,
        74,
        79,
        81,
        45,
        29,
        41,
        61,
        64,
        84,
        48,
        47,
        60,
        63,
        77,
        86,
        87,
        50,
        30,
        43,
        62,
        76,
        83,
        49,
        55,
        57,
        58,
        51,
        52,
        53,
        59,
        82,
    ]
]
OUTPUT_VELOCITY = 80
DEFAULT_QPM = 120.0

_QUANTIZE_ERRORS = (note_seq.BadTimeSignatureError, note_seq.NonIntegerStepsPerBarError, note_seq.NegativeTimeError)


@dataclass
class Tensors:
    """Converter output: encoder inputs and decoder outputs per window (lists of [T, depth] arrays)."""

    inputs: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)

    @property
    def lengths(self):
        return [len(x) for x in self.inputs]


@dataclass
class Window:
    """One extracted window of events, where it came from in the input."""

    piece: int  # index of the part after splitting on tempo / time-signature changes
    start_step: int  # first step of the window within that part
    events: tuple
    instrument: int | None = None  # the NoteSequence instrument a melody window comes from (None: drums)
    instruments: tuple = ()  # the instruments whose notes the window holds (drums merge every instrument)


def _onehot(indices, depth):
    out = np.zeros((len(indices), depth), dtype=bool)
    out[np.arange(len(indices)), indices] = True
    return out


class BaseConverter:
    """Shared pipeline: split on time changes, quantize (16th notes), extract, slice, dedupe."""

    kind = ""

    def __init__(
        self,
        steps_per_quarter=4,
        quarters_per_bar=4,
        slice_bars=2,
        max_bars=100,
        gap_bars=1.0,
        max_tensors=5,
        presplit_on_time_changes=True,
    ):
        self.steps_per_quarter = steps_per_quarter
        self.steps_per_bar = steps_per_quarter * quarters_per_bar
        self.slice_bars = slice_bars
        self.num_steps = self.steps_per_bar * slice_bars if slice_bars else None
        self.max_steps_truncate = self.steps_per_bar * max_bars if max_bars else None
        self.gap_bars = gap_bars or float("inf")
        self.max_tensors = max_tensors
        self.presplit = presplit_on_time_changes

    # -- to be provided by subclasses --
    def _filter(self, ns):  # before quantization
        return ns

    def _extract(self, quantized) -> list:  # list of (instrument or None, Melody / DrumTrack)
        raise NotImplementedError

    def _slices(self, piece: int, q, tracks) -> list[Window]:
        """The ``num_steps`` windows of each extracted track, one bar apart (or each whole track)."""
        windows = []
        for instrument, seq in tracks:
            spans = (
                [(end - self.num_steps, end) for end in range(self.num_steps, len(seq) + 1, self.steps_per_bar)]
                if self.num_steps
                else [(0, len(seq))]
            )
            for a, b in spans:
                start = seq.start_step + a
                if instrument is not None:
                    instruments: tuple = (instrument,)
                else:  # drums: the instruments of the notes that start inside the window
                    instruments = tuple(
                        sorted({n.instrument for n in q.notes if start <= n.quantized_start_step < start + b - a})
                    )
                windows.append(Window(piece, start, tuple(seq[a:b]), instrument, instruments))
        return windows

    def _dedupe_key(self, events):
        return tuple(events)

    def _encode(self, events) -> tuple:  # (input array, output array)
        raise NotImplementedError

    # -- pipeline --
    def _pieces(self, ns):
        return sequences_lib.split_note_sequence_on_time_changes(ns) if self.presplit else [copy.deepcopy(ns)]

    def _quantize(self, ns):
        """Quantized copy, or None when magenta's converter would give up on it."""
        try:
            q = note_seq.quantize_note_sequence(ns, self.steps_per_quarter)
            if sequences_lib.steps_per_bar_in_quantized_sequence(q) != self.steps_per_bar:
                return None
        except _QUANTIZE_ERRORS:
            return None
        return q

    def _piece_windows(self, piece: int, ns) -> list[Window]:
        q = self._quantize(self._filter(ns))
        if q is None:
            return []
        return self._slices(piece, q, self._extract(q))

    def windows(self, ns) -> list[Window]:
        """Every window magenta would consider, in time order (piece, start step), not deduplicated."""
        out = []
        for i, piece in enumerate(self._pieces(ns)):
            out.extend(self._piece_windows(i, piece))
        out.sort(key=lambda w: (w.piece, w.start_step))
        return out

    def to_tensors(self, ns) -> Tensors:
        """Magenta's ``to_tensors``: per time-change piece, windows deduplicated through a Python
        set (hence magenta's order), the first ``max_tensors`` kept per piece and overall."""
        inputs, outputs = [], []
        for i, piece in enumerate(self._pieces(ns)):
            keys = [self._dedupe_key(w.events) for w in self._piece_windows(i, piece)]
            unique = list(set(keys))
            if self.max_tensors:
                unique = unique[: self.max_tensors]
            for key in unique:
                x, y = self._encode(self._events_from_key(key))
                inputs.append(x)
                outputs.append(y)
            if self.max_tensors:
                inputs, outputs = inputs[: self.max_tensors], outputs[: self.max_tensors]
        return Tensors(inputs, outputs)

    def _events_from_key(self, key):
        return key

    def encode_window(self, window: Window):
        """(encoder input [T, input_depth], decoder output [T, output_depth]) as float32."""
        x, y = self._encode(window.events)
        return x.astype(np.float32), y.astype(np.float32)

    def explain(self, ns) -> str:
        """Why ``ns`` gives no window (for a 422), in terms a user can act on."""
        notes = self._usable_notes(ns)
        if not notes:
            return self._no_notes_reason()
        pieces = self._pieces(ns)
        if any(self._quantize(self._filter(p)) is None for p in pieces):
            bad = next(p for p in pieces if self._quantize(self._filter(p)) is None)
            ts = bad.time_signatures[0] if bad.time_signatures else None
            sig = f"{ts.numerator}/{ts.denominator}" if ts else "its time signature"
            return (
                f"the input cannot be cut into {self.steps_per_bar}-step bars ({sig}); "
                f"this model needs {self.steps_per_bar // self.steps_per_quarter}/4 time"
            )
        span = 0
        for p in pieces:
            q = self._quantize(self._filter(p))
            kept = [n for n in q.notes if not (self.kind == "melody" and n.is_drum)]
            if kept:
                first = min(n.quantized_start_step for n in kept) // self.steps_per_bar * self.steps_per_bar
                span = max(span, max(n.quantized_end_step for n in kept) - first)
        if span < self.num_steps:
            return (
                f"the input is too short: this model needs {self.slice_bars} bars of {self.kind} "
                f"({self.num_steps} sixteenth-note steps) and the input's notes span {span}"
            )
        return (
            f"the input has no {self.slice_bars}-bar stretch of {self.kind} without a gap of a bar or more "
            f"(this model needs {self.num_steps} sixteenth-note steps of music in a row)"
        )

    def _no_notes_reason(self):
        raise NotImplementedError

    def _usable_notes(self, ns):
        return list(self._filter(copy.deepcopy(ns)).notes)


class MelodyConverter(BaseConverter):
    """``OneHotMelodyConverter(valid_programs=MEL_PROGRAMS, skip_polyphony=False, max_bars=100,
    slice_bars=2, steps_per_quarter=4)``: monophonic melody one-hot, 2 special classes + pitches."""

    kind = "melody"

    def __init__(self, min_pitch=PIANO_MIN_PITCH, max_pitch=PIANO_MAX_PITCH, valid_programs=MEL_PROGRAMS, **kw):
        super().__init__(**kw)
        self.min_pitch, self.max_pitch = min_pitch, max_pitch
        self.valid_programs = valid_programs
        self.encoding = note_seq.MelodyOneHotEncoding(min_pitch, max_pitch + 1)
        self.input_depth = self.output_depth = self.encoding.num_classes

    def _filter(self, ns):
        keep = [
            n
            for n in ns.notes
            if (self.valid_programs is None or n.program in self.valid_programs)
            and self.min_pitch <= n.pitch <= self.max_pitch
        ]
        del ns.notes[:]
        ns.notes.extend(keep)
        return ns

    def _extract(self, q):
        """magenta's ``extract_melodies(min_bars=1, min_unique_pitches=1, ignore_polyphonic_notes=True,
        pad_end=True, gap_bars, max_steps_truncate)``: every instrument, every gap-separated melody."""
        melodies = []
        for instrument in {n.instrument for n in q.notes}:
            search = 0
            while True:
                mel = Melody()
                try:
                    mel.from_quantized_sequence(
                        q,
                        instrument=instrument,
                        search_start_step=search,
                        gap_bars=self.gap_bars,
                        ignore_polyphonic_notes=True,
                        pad_end=True,
                        filter_drums=True,
                    )
                except PolyphonicMelodyError:  # not raised with ignore_polyphonic_notes; kept for parity
                    break
                search = mel.end_step + (0 - mel.end_step) % self.steps_per_bar
                if not mel:
                    break
                if len(mel) < mel.steps_per_bar:  # min_bars=1
                    continue
                if self.max_steps_truncate is not None and len(mel) > self.max_steps_truncate:
                    mel.set_length(self.max_steps_truncate - self.max_steps_truncate % mel.steps_per_bar)
                if np.count_nonzero(mel.get_note_histogram()) < 1:  # min_unique_pitches=1
                    continue
                melodies.append((instrument, mel))
        return melodies

    def _dedupe_key(self, events):
        # magenta zips the (single) event list into 1-tuples before putting it in a set; the same
        # structure gives the same hashes and therefore the same set order.
        return tuple((e,) for e in events)

    def _events_from_key(self, key):
        return tuple(e for (e,) in key)

    def _encode(self, events):
        y = _onehot([self.encoding.encode_event(e) for e in events], self.output_depth)
        return y, y

    def from_classes(self, classes, qpm: float = DEFAULT_QPM) -> list:
        """NoteSequences from class indices [B, T] (magenta's ``from_tensors`` after argmax): what
        ``Melody.to_sequence`` writes for the decoded events, built directly from the classes (class 0
        holds, 1 ends the note, 2.. starts a note at min_pitch..; the end closes a held note). Classes
        outside the encoding's range go through note-seq's ``Melody`` itself (:meth:`_melody_sequences`)."""
        classes = np.asarray(classes)
        if classes.size and (classes.min() < 0 or classes.max() >= self.output_depth):
            return self._melody_sequences(classes, qpm)
        step_s = 60.0 / qpm / self.steps_per_quarter
        low = self.min_pitch - 2  # note_seq.melodies_lib.NUM_SPECIAL_MELODY_EVENTS
        out = []
        for row in classes.tolist():
            seq = note_seq.NoteSequence(ticks_per_quarter=note_seq.constants.STANDARD_PPQ)
            seq.tempos.add().qpm = qpm
            note = None
            for step, c in enumerate(row):
                if c >= 2:
                    if note is not None:
                        note.end_time = step * step_s
                    note = seq.notes.add(start_time=step * step_s, pitch=c + low, velocity=OUTPUT_VELOCITY)
                elif c == 1 and note is not None:
                    note.end_time = step * step_s
                    note = None
            if note is not None:
                note.end_time = len(row) * step_s
            if seq.notes:
                seq.total_time = seq.notes[-1].end_time
            out.append(seq)
        return out

    def _melody_sequences(self, classes, qpm):
        """:meth:`from_classes` through note-seq's ``Melody`` (decode_event, append, to_sequence)."""
        out = []
        for row in classes:
            mel = Melody(steps_per_bar=self.steps_per_bar, steps_per_quarter=self.steps_per_quarter)
            for c in row:
                mel.append(self.encoding.decode_event(int(c)))
            out.append(mel.to_sequence(velocity=OUTPUT_VELOCITY, qpm=qpm))
        return out

    def _usable_notes(self, ns):
        return [n for n in super()._usable_notes(ns) if not n.is_drum]

    def _no_notes_reason(self):
        return (
            f"the input has no melody notes: pitches must be within {self.min_pitch}..{self.max_pitch} "
            f"on a non-drum instrument with a program in 0..31"
        )


class DrumsConverter(BaseConverter):
    """``DrumsConverter(max_bars=100, slice_bars=2, steps_per_quarter=4, roll_input=True)``:
    9 drum classes; decoder one-hot over the 512 hit combinations; encoder roll + NOR bit."""

    kind = "drums"

    def __init__(self, pitch_classes=DRUM_PITCH_CLASSES, one_hot_input=False, roll_output=False, **kw):
        super().__init__(**kw)
        self.pitch_classes = [list(p) for p in pitch_classes]
        self.pitch_class_map = {p: i for i, ps in enumerate(self.pitch_classes) for p in ps}
        self.num_classes = len(self.pitch_classes)
        self.output_depth = 2**self.num_classes
        # roll_input=False (Magenta.js DrumsOneHotConverter, the trio's drums): the encoder reads the one-hot
        self.one_hot_input = one_hot_input
        self.input_depth = self.output_depth if one_hot_input else self.num_classes + 1
        # roll_output=True (the NADE drums configs): the decoder's outputs are the multi-label roll itself
        self.roll_output = roll_output
        if roll_output:
            self.output_depth = self.num_classes

    def _quantize(self, ns):
        q = super()._quantize(ns)
        if q is None:
            return None
        keep = []
        for n in q.notes:
            if n.is_drum and n.pitch in self.pitch_class_map:
                n.pitch = self.pitch_class_map[n.pitch]
                keep.append(n)
        del q.notes[:]
        q.notes.extend(keep)
        return q

    def _extract(self, q):
        """magenta's ``extract_drum_tracks(min_bars=1, gap_bars, max_steps_truncate, pad_end=True)``."""
        tracks, search = [], 0
        while True:
            track = DrumTrack()
            track.from_quantized_sequence(q, search_start_step=search, gap_bars=self.gap_bars, pad_end=True)
            search = track.end_step + (search - track.end_step) % self.steps_per_bar
            if not track:
                break
            if len(track) < track.steps_per_bar:
                continue
            if self.max_steps_truncate is not None and len(track) > self.max_steps_truncate:
                track.set_length(self.max_steps_truncate - self.max_steps_truncate % track.steps_per_bar)
            tracks.append((None, track))
        return tracks

    def _encode(self, events):
        roll = np.zeros((len(events), self.num_classes), dtype=bool)
        labels = []
        for t, e in enumerate(events):
            label = 0
            for c in e:
                roll[t, c] = True
                label |= 1 << c
            labels.append(label)
        y = roll.copy() if self.roll_output else _onehot(labels, self.output_depth)
        if self.one_hot_input:
            return y, y
        x = np.concatenate([roll, ~roll.any(axis=1, keepdims=True)], axis=1)
        return x, y

    def from_classes(self, classes, qpm: float = DEFAULT_QPM) -> list:
        """NoteSequences (is_drum, exemplar pitch of each class) from class indices [B, T], or from
        multi-label rolls [B, T, classes] for a ``roll_output`` converter."""
        classes = np.asarray(classes)
        if self.roll_output:
            classes = (classes > 0.5).astype(np.int64) @ (1 << np.arange(self.num_classes, dtype=np.int64))
        out = []
        for row in classes:
            events = [
                frozenset(self.pitch_classes[c][0] for c in range(self.num_classes) if int(v) >> c & 1) for v in row
            ]
            track = DrumTrack(events=events, steps_per_bar=self.steps_per_bar, steps_per_quarter=self.steps_per_quarter)
            out.append(track.to_sequence(velocity=OUTPUT_VELOCITY, qpm=qpm))
        return out

    def _no_notes_reason(self):
        return "the input has no drum notes (is_drum notes on General MIDI drum pitches)"

    def _filter(self, ns):
        keep = [n for n in ns.notes if n.is_drum and n.pitch in self.pitch_class_map]
        del ns.notes[:]
        ns.notes.extend(keep)
        return ns

    def _piece_windows(self, piece, ns):
        # Filtering is done after quantization (as magenta does); _filter is only for explain().
        q = self._quantize(ns)
        if q is None:
            return []
        return self._slices(piece, q, self._extract(q))
