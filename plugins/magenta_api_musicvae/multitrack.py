"""NoteSequence <-> multitrack tensors with the semantics of magenta 2.1.4's
``MultiInstrumentPerformanceConverter`` (music_vae/data_hierarchical.py), as the
``hier-multiperf_vel_1bar_*`` configs set it up: 24 steps per quarter, 1-bar windows, 2 to 8
instruments, at most 64 events per instrument, 8 velocity bins, optionally triad chords.

Each 1-bar window (the input split every bar, after sustain pedal is applied) holds one track per
instrument, sorted by (drums last, program): a program token (128 programs + one for drums), the
performance events (128 note-ons, 128 note-offs, 96 time shifts, 8 velocities: 360 classes) and an end
token, one-hot in 490 classes, padded with zero rows to 64 steps; missing tracks are a lone end token. The window is
the 8 tracks one after the other ([512, 490]); a chord model's controls give each event the chord
active at its step (the program token a "no chord" pad, the end token the last chord).

Decoding reads each track up to its end token: the first program token names the instrument (program
or drums), the events play on instrument k (the track's index).
"""

from __future__ import annotations

import note_seq
import numpy as np
from note_seq import chords_lib, performance_lib, sequences_lib

from .converters import DEFAULT_QPM, Tensors

__all__ = ["MultitrackConverter", "MultitrackWindow"]

NUM_PROGRAMS = note_seq.MAX_MIDI_PROGRAM - note_seq.MIN_MIDI_PROGRAM + 1  # 128; token 128 is drums
_QUANTIZE_ERRORS = (note_seq.BadTimeSignatureError, note_seq.NonIntegerStepsPerBarError, note_seq.NegativeTimeError)


class MultitrackWindow:
    """One bar of an input as the encoder reads it: [512, 490] one-hots (and chord controls)."""

    def __init__(self, piece, bar, inputs, controls, instruments):
        self.piece, self.start_step = piece, bar * 16
        self.inputs, self.controls = inputs, controls
        self.instrument, self.instruments = None, tuple(instruments)


class MultitrackConverter:
    kind = "multitrack"

    def __init__(
        self,
        num_velocity_bins=8,
        hop_size_bars=1,
        steps_per_quarter=24,
        quarters_per_bar=4,
        min_num_instruments=2,
        max_num_instruments=8,
        min_total_events=8,
        max_events_per_instrument=64,
        max_tensors=None,
        chord_encoding=None,
    ):
        self.encoding = note_seq.PerformanceOneHotEncoding(
            num_velocity_bins=num_velocity_bins,
            max_shift_steps=performance_lib.DEFAULT_MAX_SHIFT_QUARTERS * steps_per_quarter,
            min_pitch=performance_lib.MIN_MIDI_PITCH,
            max_pitch=performance_lib.MAX_MIDI_PITCH,
        )
        self.num_velocity_bins = num_velocity_bins
        self.hop_size_bars = hop_size_bars
        self.steps_per_quarter = 4  # the family's grid (16ths) for bars; the converter's own is 24
        self.track_steps_per_quarter = steps_per_quarter
        self.steps_per_bar = 4 * quarters_per_bar
        self.track_steps_per_bar = steps_per_quarter * quarters_per_bar
        self.min_num_instruments, self.max_num_instruments = min_num_instruments, max_num_instruments
        self.min_total_events, self.max_events = min_total_events, max_events_per_instrument
        self.max_steps_truncate = self.track_steps_per_bar * hop_size_bars
        self.end_token = self.encoding.num_classes + NUM_PROGRAMS + 1
        self.input_depth = self.output_depth = self.end_token + 1
        self.num_steps = max_num_instruments * max_events_per_instrument
        self.max_tensors = max_tensors
        self.chord_encoding = chord_encoding
        self.control_depth = chord_encoding.num_classes if chord_encoding else 0
        self.slice_bars = hop_size_bars

    # -- NoteSequence -> tensors ----------------------------------------------------------------
    def _new_performance(self, quantized_sequence, start_step, track):
        return performance_lib.MetricPerformance(
            quantized_sequence=quantized_sequence,
            steps_per_quarter=self.track_steps_per_quarter if quantized_sequence is None else None,
            start_step=start_step,
            num_velocity_bins=self.num_velocity_bins,
            program=track.program,
            is_drum=track.is_drum,
        )

    def _one_chunk(self, track):
        """``split_performance(track, steps_per_segment, ..., clip_tied_notes=True)`` for one segment
        as long as the track: the events up to the segment's end, re-quantized so tied notes end."""
        seg = self._new_performance(None, 0, track)
        step = 0
        steps = self.max_steps_truncate
        shift = performance_lib.PerformanceEvent.TIME_SHIFT
        for e in track:
            if e.event_type != shift:
                if step == steps and e.event_type != performance_lib.PerformanceEvent.NOTE_OFF:
                    break  # would start a second segment
                seg.append(e)
            elif step + e.event_value <= steps:
                seg.append(e)
                step += e.event_value
            else:
                if steps - step > 0:
                    seg.append(performance_lib.PerformanceEvent(event_type=shift, event_value=steps - step))
                break
        q = note_seq.quantize_note_sequence(seg.to_sequence(), steps_per_quarter=seg.steps_per_quarter)
        seg = self._new_performance(q, 0, track)
        seg.set_length(steps)
        return seg

    def _bar_tensors(self, q):
        """(track one-hots, chord one-hots, instruments) of one quantized bar, or None when magenta
        rejects it (pitches, instrument count, events per track, total events)."""
        if any(not 0 <= n.pitch <= 127 for n in q.notes):
            return None
        tracks = []
        for instrument in {n.instrument for n in q.notes}:  # magenta's set order, then a stable sort
            perf = performance_lib.MetricPerformance(
                q, start_step=0, num_velocity_bins=self.num_velocity_bins, instrument=instrument
            )
            if perf.num_steps > self.max_steps_truncate:
                perf.set_length(self.max_steps_truncate)
            tracks.append((instrument, perf))
        if not self.min_num_instruments <= len(tracks) <= self.max_num_instruments:
            return None
        tracks.sort(key=lambda t: (t[1].is_drum, t[1].program))
        chunks, total = [], 0
        for _, track in tracks:
            track.set_length(self.max_steps_truncate)
            chunk = self._one_chunk(track)
            if len(chunk) > self.max_events - 2:
                return None
            if not chunk.is_drum and not note_seq.MIN_MIDI_PROGRAM <= chunk.program <= note_seq.MAX_MIDI_PROGRAM:
                return None
            total += len(chunk)
            chunks.append(chunk)
        if total < self.min_total_events:
            return None
        ones = np.eye(self.output_depth, dtype=np.float32)
        encoded = []
        for chunk in chunks:
            program = NUM_PROGRAMS if chunk.is_drum else chunk.program
            tokens = [self.encoding.num_classes + program]
            tokens += [self.encoding.encode_event(e) for e in chunk]
            tokens.append(self.end_token)
            encoded.append(ones[tokens])
        controls = None
        if self.chord_encoding is not None:
            try:
                per_track = chords_lib.event_list_chords(q, chunks)
                pad = self.chord_encoding.encode_event(note_seq.NO_CHORD)
                cones = np.eye(self.control_depth, dtype=np.float32)
                controls = []
                for chords in per_track:
                    tokens = [pad] + [self.chord_encoding.encode_event(c) for c in chords]
                    tokens.append(tokens[-1])
                    controls.append(cones[tokens])
            except (chords_lib.CoincidentChordsError, note_seq.ChordSymbolError, note_seq.ChordEncodingError):
                return None
        return encoded, controls, [t[0] for t in tracks]

    def _pad(self, tracks, fill):
        """Pad to ``max_num_instruments`` tracks of ``max_events`` rows ([512, depth]); None if too long."""
        if len(tracks) > self.max_num_instruments or any(len(t) > self.max_events for t in tracks):
            return None
        tracks = tracks + [fill] * (self.max_num_instruments - len(tracks))
        return np.concatenate([np.pad(t, ((0, self.max_events - len(t)), (0, 0))) for t in tracks])

    def _piece_windows(self, piece, ns):
        ns = note_seq.apply_sustain_control_changes(ns)
        if self.chord_encoding is not None and not chords_lib_has_chords(ns):
            try:
                q = note_seq.quantize_note_sequence(ns, self.track_steps_per_quarter)
                if sequences_lib.steps_per_bar_in_quantized_sequence(q) != self.track_steps_per_bar:
                    return []
                note_seq.infer_chords_for_sequence(q)
            except (*_QUANTIZE_ERRORS, note_seq.ChordInferenceError):
                return []
            kind = note_seq.NoteSequence.TextAnnotation.CHORD_SYMBOL
            for qta in q.text_annotations:
                if qta.annotation_type == kind:
                    ns.text_annotations.add(annotation_type=kind, time=qta.time, text=qta.text)
        qpm = ns.tempos[0].qpm if ns.tempos else note_seq.DEFAULT_QUARTERS_PER_MINUTE
        hop_seconds = 60.0 * (self.track_steps_per_bar / self.track_steps_per_quarter) * self.hop_size_bars / qpm
        windows = []
        end_row = np.eye(self.output_depth, dtype=np.float32)[[self.end_token]]
        pad_row = None
        if self.chord_encoding is not None:
            pad_row = np.eye(self.control_depth, dtype=np.float32)[
                [self.chord_encoding.encode_event(note_seq.NO_CHORD)]
            ]
        for bar, sub in enumerate(sequences_lib.split_note_sequence(ns, hop_seconds)):
            try:
                q = note_seq.quantize_note_sequence(sub, self.track_steps_per_quarter)
                if sequences_lib.steps_per_bar_in_quantized_sequence(q) != self.track_steps_per_bar:
                    return []
            except _QUANTIZE_ERRORS:
                return []
            got = self._bar_tensors(q)
            if got is None:
                continue
            encoded, controls, instruments = got
            x = self._pad(encoded, end_row)
            if x is None:
                continue
            c = self._pad(controls, pad_row) if controls is not None else None
            windows.append(MultitrackWindow(piece, bar, x, c, instruments))
        return windows

    def windows(self, ns) -> list[MultitrackWindow]:
        out = []
        for i, piece in enumerate(sequences_lib.split_note_sequence_on_time_changes(ns)):
            out.extend(self._piece_windows(i, piece))
        return out

    def to_tensors(self, ns) -> Tensors:
        chosen = []
        for i, piece in enumerate(sequences_lib.split_note_sequence_on_time_changes(ns)):
            w = self._piece_windows(i, piece)
            chosen.extend(w[: self.max_tensors] if self.max_tensors else w)
        if self.max_tensors:
            chosen = chosen[: self.max_tensors]
        t = Tensors([w.inputs for w in chosen], [w.inputs for w in chosen])
        t.controls = [w.controls for w in chosen]  # type: ignore[attr-defined]
        return t

    def encode_window(self, window):
        return window.inputs, window.inputs

    def explain(self, ns) -> str:
        instruments = {n.instrument for n in ns.notes}
        if len(instruments) < self.min_num_instruments:
            lo, hi = self.min_num_instruments, self.max_num_instruments
            return f"a multitrack model needs {lo} to {hi} instruments in a bar"
        return (
            f"no bar of the input has {self.min_num_instruments} to {self.max_num_instruments} instruments with at "
            f"most {self.max_events - 2} performance events each (and 4/4 time)"
        )

    # -- classes -> NoteSequence ----------------------------------------------------------------
    def from_classes(self, classes, qpm: float = DEFAULT_QPM) -> list:
        """NoteSequences from class indices [B, 512] (8 tracks of 64 steps), as ``from_tensors``."""
        out = []
        n_perf = self.encoding.num_classes
        spq = self.track_steps_per_quarter
        for row in np.asarray(classes).reshape(len(classes), self.max_num_instruments, self.max_events):
            seq = note_seq.NoteSequence(ticks_per_quarter=note_seq.STANDARD_PPQ)
            seq.tempos.add().qpm = qpm
            for instrument, tokens in enumerate(row):
                tokens = tokens.tolist()
                if self.end_token in tokens:
                    tokens = tokens[: tokens.index(self.end_token)]
                programs = [t for t in tokens if t >= n_perf]
                events = [t for t in tokens if t < n_perf]
                program, is_drum = 0, False
                if programs:
                    program = programs[0] - n_perf
                    if program == note_seq.MAX_MIDI_PROGRAM + 1:
                        program, is_drum = 0, True
                track = performance_lib.MetricPerformance(
                    quantized_sequence=None,
                    steps_per_quarter=spq,
                    start_step=0,
                    num_velocity_bins=self.num_velocity_bins,
                    program=program,
                    is_drum=is_drum,
                )
                for t in events:
                    track.append(self.encoding.decode_event(t))
                track.set_length(self.track_steps_per_bar * self.hop_size_bars)
                seq.notes.extend(track.to_sequence(instrument=instrument, qpm=qpm).notes)
            if seq.notes:
                seq.total_time = max(n.end_time for n in seq.notes)
            out.append(seq)
        return out


def chords_lib_has_chords(ns) -> bool:
    kind = note_seq.NoteSequence.TextAnnotation.CHORD_SYMBOL
    return any(ta.annotation_type == kind for ta in ns.text_annotations)
