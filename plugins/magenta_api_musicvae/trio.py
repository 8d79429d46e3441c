"""NoteSequence <-> trio tensors (melody, bass, drums) with the semantics of magenta 2.1.4's
``TrioConverter`` (music_vae/data.py).

Per part between tempo/time-signature changes: each instrument gets a type from its notes (drums;
programs 0..31 melody; 32..39 bass; anything else or a mix: not used), and a bar coverage. Every melody
and bass instrument is encoded whole as a 90-class melody (``OneHotMelodyConverter`` without gaps or
slicing, padded to the part's length), every drum instrument as a 512-class drum track; coverage gaps of
up to ``gap_bars`` are filled, and each (melody, bass, drums) instrument triple gives a window wherever
all three cover ``slice_bars`` bars in a row. A window is the three one-hots side by side
([T, 90 + 90 + 512]); its classes are [T, 3].

Decoding puts the melody on instrument 0 (program 0), the bass on instrument 1 (program 33, electric
bass) and the drums on instrument 9 (is_drum, channel 10 in MIDI), as magenta's ``from_tensors``.
"""

from __future__ import annotations

import collections
import copy
import itertools
from dataclasses import dataclass

import numpy as np
from note_seq import sequences_lib

from .converters import (
    DEFAULT_QPM,
    PIANO_MAX_PITCH,
    PIANO_MIN_PITCH,
    DrumsConverter,
    MelodyConverter,
    Tensors,
)

__all__ = ["TrioConverter", "TrioWindow"]

MEL_PROGRAMS = range(32)
BASS_PROGRAMS = range(32, 40)
ELECTRIC_BASS_PROGRAM = 33
MAX_INSTRUMENT_NUMBER = 127
UNK, MEL, BASS, DRUMS, INVALID = range(5)


@dataclass
class TrioWindow:
    """One trio window: its classes [T, 3] and where it came from."""

    piece: int
    start_step: int
    classes: np.ndarray
    instruments: tuple  # (melody, bass, drums) NoteSequence instruments
    instrument: int | None = None  # for the family's bookkeeping (a trio has three)


class TrioConverter:
    """``TrioConverter(steps_per_quarter, slice_bars, gap_bars=2, max_tensors_per_notesequence=5)``."""

    kind = "trio"

    def __init__(
        self,
        slice_bars=16,
        gap_bars=2,
        max_bars=1024,
        steps_per_quarter=4,
        quarters_per_bar=4,
        max_tensors=5,
        min_pitch=PIANO_MIN_PITCH,
        max_pitch=PIANO_MAX_PITCH,
    ):
        self.slice_bars, self.gap_bars, self.max_bars = slice_bars, gap_bars, max_bars
        self.steps_per_quarter = steps_per_quarter
        self.steps_per_bar = steps_per_quarter * quarters_per_bar
        self.num_steps = self.steps_per_bar * slice_bars
        self.max_tensors = max_tensors
        part = dict(
            steps_per_quarter=steps_per_quarter,
            quarters_per_bar=quarters_per_bar,
            slice_bars=None,
            max_bars=None,
            gap_bars=None,
            max_tensors=None,
            presplit_on_time_changes=False,
        )
        self.melody = MelodyConverter(min_pitch=min_pitch, max_pitch=max_pitch, valid_programs=None, **part)
        self.drums = DrumsConverter(**part)
        self.splits = [self.melody.output_depth, self.melody.output_depth, self.drums.output_depth]
        self.input_depth = self.output_depth = sum(self.splits)
        self.min_pitch, self.max_pitch = min_pitch, max_pitch

    # -- NoteSequence -> classes ----------------------------------------------------------------
    def _quantize(self, ns):
        """Quantized copy, or None when the part does not cut into bars of ``steps_per_bar``."""
        return self.melody._quantize(copy.deepcopy(ns))

    def _part_classes(self, conv, ns, total_steps):
        """Class indices [total_steps] of one instrument's part, or None when it yields nothing."""
        q = conv._quantize(conv._filter(copy.deepcopy(ns)) if conv is self.melody else copy.deepcopy(ns))
        if q is None:
            return None
        tracks = conv._extract(q)
        if not tracks:
            return None
        _, events = tracks[0]  # gap-free extraction gives one track per instrument
        events.set_length(len(events) + events.start_step, from_left=True)
        events.set_length(q.total_quantized_steps)
        if conv is self.melody:
            return np.array([conv.encoding.encode_event(e) for e in events], np.int64)
        return np.array([sum(1 << c for c in e) for e in events], np.int64)

    def _piece_windows(self, piece: int, ns) -> list[TrioWindow]:
        q = self._quantize(ns)
        if q is None:
            return []
        spb = self.steps_per_bar
        total_bars = min(int(np.ceil(q.total_quantized_steps / spb)), self.max_bars)
        kind = np.zeros(MAX_INSTRUMENT_NUMBER + 1, np.uint8)
        coverage = np.zeros((total_bars, MAX_INSTRUMENT_NUMBER + 1), bool)
        for n in q.notes:
            i = n.instrument
            if i > MAX_INSTRUMENT_NUMBER:
                continue
            inferred = (
                DRUMS
                if n.is_drum
                else MEL
                if n.program in MEL_PROGRAMS
                else BASS
                if n.program in BASS_PROGRAMS
                else INVALID
            )
            if not kind[i]:
                kind[i] = inferred
            elif kind[i] != inferred:
                kind[i] = INVALID
            start_bar = n.quantized_start_step // spb
            end_bar = int(np.ceil(n.quantized_end_step / spb))
            if start_bar >= total_bars:
                continue
            coverage[start_bar : min(end_bar, total_bars), i] = True
        by_type = collections.defaultdict(list)
        for i, t in enumerate(kind):
            if t not in (UNK, INVALID):
                by_type[int(t)].append(i)
        if len(by_type) < 3:
            return []
        full = copy.deepcopy(ns)
        full.total_time = total_bars * spb * 60 / full.tempos[0].qpm / self.steps_per_quarter
        encoded = {}
        for i in by_type[MEL] + by_type[BASS] + by_type[DRUMS]:
            conv = self.drums if kind[i] == DRUMS else self.melody
            classes = self._part_classes(conv, _only(full, i), total_bars * spb)
            if classes is None:
                coverage[:, i] = False
            else:
                encoded[i] = classes
        og = coverage.copy()
        g = self.gap_bars
        for j in range(total_bars):
            coverage[j] = np.any(og[max(0, j - g) : min(total_bars, j + g) + 1], axis=0)
        windows = []
        for grp in itertools.product(by_type[MEL], by_type[BASS], by_type[DRUMS]):
            cov = np.all(coverage[:, grp], axis=1)
            cov[:g] = np.any(coverage[:g, grp])
            cov[-g:] = np.any(coverage[-g:, grp])
            for j in range(total_bars - self.slice_bars + 1):
                if np.all(cov[j : j + self.slice_bars]) and all(i in encoded for i in grp):
                    a, b = j * spb, (j + self.slice_bars) * spb
                    windows.append(TrioWindow(piece, a, np.stack([encoded[i][a:b] for i in grp], -1), tuple(grp)))
        return windows

    def _pieces(self, ns):
        return sequences_lib.split_note_sequence_on_time_changes(ns)

    def windows(self, ns) -> list[TrioWindow]:
        """Every window magenta's converter makes, in its order (part, instrument triple, bar)."""
        out = []
        for i, piece in enumerate(self._pieces(ns)):
            out.extend(self._piece_windows(i, piece))
        return out

    def to_tensors(self, ns) -> Tensors:
        """Magenta's ``to_tensors``: the first ``max_tensors`` windows of each part, then overall."""
        chosen = []
        for i, piece in enumerate(self._pieces(ns)):
            w = self._piece_windows(i, piece)
            chosen.extend(w[: self.max_tensors] if self.max_tensors else w)
        if self.max_tensors:
            chosen = chosen[: self.max_tensors]
        ys = [self.onehot(w.classes) for w in chosen]
        return Tensors(ys, ys)

    def onehot(self, classes) -> np.ndarray:
        """[T, 692] bool from classes [T, 3]."""
        parts = [np.eye(d, dtype=bool)[classes[:, k]] for k, d in enumerate(self.splits)]
        return np.concatenate(parts, axis=-1)

    def encode_window(self, window: TrioWindow):
        y = self.onehot(window.classes).astype(np.float32)
        return y, y

    def explain(self, ns) -> str:
        """Why ``ns`` gives no trio window, for a 422."""
        kinds = {"melody": False, "bass": False, "drums": False}
        for n in ns.notes:
            if n.is_drum:
                kinds["drums"] = True
            elif n.program in MEL_PROGRAMS:
                kinds["melody"] = True
            elif n.program in BASS_PROGRAMS:
                kinds["bass"] = True
        missing = [k for k, v in kinds.items() if not v]
        if missing:
            return (
                f"a trio model needs a melody (programs 0..31), a bass (programs 32..39) and drums; the input "
                f"has no {' and no '.join(missing)}"
            )
        pieces = self._pieces(ns)
        if all(self._quantize(p) is None for p in pieces):
            return f"the input cannot be cut into {self.steps_per_bar}-step bars: a trio model needs 4/4 time"
        return (
            f"the input has no {self.slice_bars}-bar stretch where melody, bass and drums all play "
            f"(gaps of up to {self.gap_bars} bars are allowed)"
        )

    # -- classes -> NoteSequence ----------------------------------------------------------------
    def from_classes(self, classes, qpm: float = DEFAULT_QPM) -> list:
        """NoteSequences from class indices [B, T, 3]: melody instrument 0, bass 1 (program 33), drums 9."""
        out = []
        for row in np.asarray(classes):
            mel = self.melody.from_classes(row[None, :, 0], qpm)[0]
            bass = self.melody.from_classes(row[None, :, 1], qpm)[0]
            drums = self.drums.from_classes(row[None, :, 2], qpm)[0]
            for n in bass.notes:
                n.instrument, n.program = 1, ELECTRIC_BASS_PROGRAM
            for n in drums.notes:
                n.instrument = 9
            mel.notes.extend(bass.notes)
            mel.notes.extend(drums.notes)
            mel.total_time = max(mel.total_time, bass.total_time, drums.total_time)
            out.append(mel)
        return out


def _only(ns, instrument):
    """``data._extract_instrument``: a copy with the notes of one instrument."""
    out = type(ns)()
    out.CopyFrom(ns)
    del out.notes[:]
    out.notes.extend(n for n in ns.notes if n.instrument == instrument)
    return out
