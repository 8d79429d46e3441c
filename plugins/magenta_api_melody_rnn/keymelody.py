"""Incremental inputs of note-seq's ``KeyMelodyEncoderDecoder`` (attention_rnn's encoding).

``KeyMelodyEncoderDecoder.events_to_input`` rebuilds a ``Melody`` of the whole history and its key
histograms for every position, so generating T steps costs O(T^2). :class:`KeyMelodyTracker` keeps the
same quantities as running state (current note, attack, direction, last three notes, key histogram)
and yields the identical vector per new event; tests check it against note-seq's method.
"""

import collections

import numpy as np
from note_seq.constants import DEFAULT_STEPS_PER_BAR, MELODY_NO_EVENT, MELODY_NOTE_OFF, NOTE_KEYS, NOTES_PER_OCTAVE

# KEY_MATRIX[pc] = 1 for every major key containing pitch class pc (NOTE_KEYS as a matrix).
KEY_MATRIX = np.zeros((NOTES_PER_OCTAVE, NOTES_PER_OCTAVE))
for _pc, _keys in enumerate(NOTE_KEYS):
    KEY_MATRIX[_pc, _keys] = 1.0


def _key_flags(note_counts):
    hist = note_counts @ KEY_MATRIX
    return (hist == hist.max()).astype(np.float32)


_RECENT_FLAGS: dict[tuple, np.ndarray] = {}


def _recent_key_flags(last3):
    """:func:`_key_flags` of the pitch classes of (up to) the last three notes, memoised: there are
    at most a few hundred such sets."""
    key = tuple(sorted(note % NOTES_PER_OCTAVE for note in last3))
    flags = _RECENT_FLAGS.get(key)
    if flags is None:
        counts = np.zeros(NOTES_PER_OCTAVE)
        for pc in key:
            counts[pc] += 1
        flags = _RECENT_FLAGS[key] = _key_flags(counts)
    return flags


class KeyMelodyTracker:
    """Running state of one melody for a ``KeyMelodyEncoderDecoder``; :meth:`push` each event."""

    __slots__ = ("ascending", "attack", "current", "enc", "flags", "hist", "last3", "length", "recent")

    def __init__(self, encoder):
        self.enc = encoder
        # Only the lookback window of past events is needed (the longest lookback distance + 1).
        self.recent = collections.deque(maxlen=max(encoder._lookback_distances, default=0) + 1)
        self.length = 0
        self.current = None
        self.attack = False
        self.ascending = None
        self.last3 = collections.deque(maxlen=3)
        self.hist = np.zeros(NOTES_PER_OCTAVE)  # pitch-class counts @ KEY_MATRIX, kept up to date note by note
        self.flags = self._flags()

    def _flags(self):
        """Key flags of the whole melody and of its last three notes (change only on a note)."""
        hist = self.hist
        return np.concatenate([(hist == hist.max()).astype(np.float32), _recent_key_flags(self.last3)])

    def copy(self):
        other = KeyMelodyTracker.__new__(KeyMelodyTracker)
        other.enc = self.enc
        other.recent = collections.deque(self.recent, maxlen=self.recent.maxlen)
        other.length = self.length
        other.current, other.attack, other.ascending = self.current, self.attack, self.ascending
        other.last3 = collections.deque(self.last3, maxlen=3)
        other.hist = self.hist.copy()
        other.flags = self.flags
        return other

    def push(self, note):
        """Add the next event and return the input vector for its position."""
        note = int(note)
        self.recent.append(note)
        self.length += 1
        if note == MELODY_NO_EVENT:
            self.attack = False
        elif note == MELODY_NOTE_OFF:
            self.current = None
        else:
            self.attack = True
            self.current = note
            if self.last3:
                if note > self.last3[-1]:
                    self.ascending = True
                if note < self.last3[-1]:
                    self.ascending = False
            if note in self.last3:
                self.last3.remove(note)
            self.last3.append(note)
            self.hist += KEY_MATRIX[note % NOTES_PER_OCTAVE]
            self.flags = self._flags()
        return self._vector()

    def _vector(self):
        enc = self.enc
        rng = enc._note_range
        out = np.zeros(enc.input_size, np.float32)
        if self.current:  # as note-seq: a current pitch of 0 counts as silence
            out[self.current - enc._min_note] = 1.0
            out[rng] = 1.0
        else:
            out[rng + 1] = 1.0
        off = rng + 2
        if self.attack:
            out[off] = 1.0
        off += 1
        if self.ascending is not None:
            out[off] = 1.0 if self.ascending else -1.0
        off += 1
        recent = self.recent
        for distance in enc._lookback_distances:
            if self.length - 1 - distance >= 0 and recent[-1] == recent[-1 - distance]:
                out[off] = 1.0
            off += 1
        n = self.length
        for i in range(enc._binary_counter_bits):
            out[off] = 1.0 if (n // 2**i) % 2 else -1.0
            off += 1
        if n % DEFAULT_STEPS_PER_BAR == 0:
            out[off] = 1.0
        off += 1
        out[off:] = self.flags
        return out
