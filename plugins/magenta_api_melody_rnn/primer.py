"""A request's ``primer`` as the event track Magenta's sequence generators would start from, and the
step where they start generating.

Forms: Magenta's event list (melody: pitch, -1 note-off, -2 hold; drums: a list of pitch lists, ``[]``
a rest), NoteSequence JSON or base64 MIDI. Sequences are quantized (``steps_per_quarter``) and the
melody / drum track extracted as ``melody_rnn_sequence_generator`` / ``drums_rnn_sequence_generator``
do (magenta's ``extract_melodies`` / ``extract_drum_tracks`` with ``min_bars=0``,
``gap_bars=inf``, polyphony resolved to the highest pitch).

Where generation starts (:func:`generator_start_step`): the sequence generators are given a generate
section that begins at the primer's end, and they start at ``quantize_to_step(start_time,
steps_per_second, quantize_cutoff=0)``: the first step *after* that time, never before the last note
ends. A primer ending exactly on step ``k`` (an event list of ``k`` events, any MIDI file) therefore
starts at ``k + 1`` (step ``k`` is a rest); one ending at step 15.4 starts at 16. A request's
``start_step`` moves the start to any step from the primer's end on (:meth:`Primer.align`).
"""

import math
from dataclasses import dataclass
from typing import Any

from note_seq import DrumTrack, Melody, sequences_lib

from magenta_api import Unprocessable
from magenta_api.music import parse_sequence

FIELD = "/primer"
DEFAULT_QPM = 120.0  # note_seq.DEFAULT_QUARTERS_PER_MINUTE, what the generators use without a tempo


@dataclass
class Primer:
    """A parsed primer: its events, where it ends, and where Magenta's generator would start."""

    track: Any  # note_seq Melody or DrumTrack (start_step, steps_per_bar, ...), or None: no notes
    end_step: int  # the step the primer ends on (exclusive), counted from the primer's time 0
    start_step: int  # where the sequence generators start generating this primer
    steps_per_bar: int = 16
    steps_per_quarter: int = 4
    drums: bool = False
    qpm: float | None = None  # the primer sequence's own tempo, if it has one

    def align(self, start_step: int | None, length: int):
        """The track the model continues: the primer's events up to ``start_step`` (default: the
        generator's start), padded as the generators pad it (``set_length``: a held melody note ends,
        then rests). ``length`` counts the track's events from its first step, generated ones included.
        Returns (track, start_step)."""
        start = self.start_step if start_step is None else int(start_step)
        if start_step is not None and start < self.end_step:
            raise Unprocessable(
                f"start_step {start} is inside the primer, which ends at step {self.end_step}: generation can "
                f"start at step {self.end_step} or later (by default it starts at step {self.start_step}, "
                "as Magenta's sequence generator does)",
                {"field": "/start_step", "primer_end_step": self.end_step, "default_start_step": self.start_step},
                code="invalid_primer",
            )
        track = self.track
        if track is None:
            # As the sequence generators: an empty track 1 step before the start, so 1 step of silence.
            cls = DrumTrack if self.drums else Melody
            track = cls(
                [],
                start_step=max(0, start - 1),
                steps_per_bar=self.steps_per_bar,
                steps_per_quarter=self.steps_per_quarter,
            )
        steps = start - track.start_step
        if steps >= length:
            raise primer_too_long(self.steps_before(start, track), steps, start, length)
        track.set_length(steps)
        return track, start

    def steps_before(self, start: int, track=None) -> int:
        """How many of the aligned track's steps are the primer's own (the rest is padding)."""
        track = self.track if track is None else track
        first = track.start_step if track is not None else start
        return max(0, min(self.end_step, start) - first)


def primer_too_long(primer_steps: int, steps: int, start: int, length: int) -> Unprocessable:
    return Unprocessable(
        f"primer is {primer_steps} steps and generation starts at step {start} ({steps} steps before it), "
        f"but length is {length}: length counts every step before generation too and must be greater than {steps}",
        {"field": "/length", "primer_steps": primer_steps, "start_step": start},
        code="primer_too_long",
    )


def _bad(message, **details):
    return Unprocessable(message, {"field": FIELD, **details}, code="invalid_primer")


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def melody_from_events(events) -> Melody:
    for i, e in enumerate(events):
        if isinstance(e, (list, tuple)):
            raise _bad(
                f"primer event {i} is a chord {e}: a melody primer is one pitch, -1 (note-off) or -2 (hold) per step",
                index=i,
            )
        if not _is_int(e) or not -2 <= e <= 127:
            raise _bad(f"primer event {i} is {e!r}: expected a MIDI pitch 0..127, -1 (note-off) or -2 (hold)", index=i)
    return Melody(list(events))


def drums_from_events(events) -> DrumTrack:
    out = []
    for i, e in enumerate(events):
        pitches = [e] if _is_int(e) else e
        if not isinstance(pitches, (list, tuple)) or not all(_is_int(p) and 0 <= p <= 127 for p in pitches):
            raise _bad(f"primer event {i} is {e!r}: expected a list of MIDI drum pitches 0..127 ([] = rest)", index=i)
        out.append(frozenset(pitches))
    return DrumTrack(out)


def generator_start_step(end_time: float, qpm: float, steps_per_quarter: int) -> int:
    """The first step ``MelodyRnnSequenceGenerator`` / ``DrumsRnnSequenceGenerator`` generate for a
    generate section starting at ``end_time`` seconds: note-seq's ``quantize_to_step`` with
    ``quantize_cutoff=0`` (the same floating-point arithmetic, so the same step)."""
    steps_per_second = sequences_lib.steps_per_quarter_to_steps_per_second(steps_per_quarter, qpm)
    return int(sequences_lib.quantize_to_step(end_time, steps_per_second, quantize_cutoff=0.0))


def sequence_end_time(seq) -> float:
    """Where a primer sequence ends: its total_time, and never before its last note ends."""
    return max([seq.total_time] + [n.end_time for n in seq.notes])


def _quantize(seq, steps_per_quarter):
    try:
        return sequences_lib.quantize_note_sequence(seq, steps_per_quarter)
    except Exception as exc:  # MultipleTempoError, MultipleTimeSignatureError, NegativeTimeError
        raise _bad(f"primer sequence cannot be quantized as Magenta does: {exc}", reason=type(exc).__name__) from exc


def _melody_from_sequence(q) -> Melody | None:
    melodies = []
    for instrument in sorted({n.instrument for n in q.notes}):
        mel = Melody()
        mel.from_quantized_sequence(
            q,
            search_start_step=0,
            instrument=instrument,
            gap_bars=math.inf,
            ignore_polyphonic_notes=True,
            pad_end=False,
            filter_drums=True,
        )
        if mel:
            melodies.append((instrument, mel))
    if len(melodies) > 1:
        raise _bad(
            f"primer has melodies on {len(melodies)} instruments "
            f"({', '.join(str(i) for i, _ in melodies)}); send one melody line",
            instruments=[i for i, _ in melodies],
        )
    return melodies[0][1] if melodies else None


def _drums_from_sequence(q) -> DrumTrack | None:
    drums = DrumTrack()
    drums.from_quantized_sequence(q, search_start_step=0, gap_bars=math.inf, pad_end=False, ignore_is_drum=True)
    return drums if drums else None


def _times_from_steps(seq):
    """A quantized sequence given in steps only (as Magenta.js sends them: quantizedStartStep, no
    startTime) gets its times back, so quantizing it again gives the same steps."""
    spq = seq.quantization_info.steps_per_quarter
    if not spq or not seq.notes or any(n.end_time for n in seq.notes):
        return seq
    qpm = seq.tempos[0].qpm if seq.tempos and seq.tempos[0].qpm else DEFAULT_QPM
    seconds = 60.0 / qpm / spq
    out = type(seq)()
    out.CopyFrom(seq)
    for n in out.notes:
        n.start_time, n.end_time = n.quantized_start_step * seconds, n.quantized_end_step * seconds
    out.total_time = max(out.total_quantized_steps, max(n.quantized_end_step for n in out.notes)) * seconds
    return out


def _default_velocity(seq):
    """Magenta skips velocity-0 notes; a JSON primer that gives no velocities at all (Magenta.js
    sequences often don't) means "unspecified", not "silent"."""
    if seq.notes and not any(n.velocity for n in seq.notes):
        out = type(seq)()
        out.CopyFrom(seq)
        for n in out.notes:
            n.velocity = 100
        return out
    return seq


def from_sequence(seq, drums: bool, steps_per_quarter: int) -> Primer:
    seq = _default_velocity(_times_from_steps(seq))
    q = _quantize(seq, steps_per_quarter)
    try:
        track = _drums_from_sequence(q) if drums else _melody_from_sequence(q)
    except Unprocessable:
        raise
    except Exception as exc:  # NonIntegerStepsPerBarError and the like
        raise _bad(f"cannot extract a {'drum track' if drums else 'melody'} from the primer: {exc}") from exc
    end_step = int(q.total_quantized_steps)
    if track is None and end_step == 0:
        raise _bad("primer sequence has no notes and no length")
    # The generators' tempo: the sequence's first tempo, else 120 qpm (as they quantize with).
    qpm = seq.tempos[0].qpm if seq.tempos else DEFAULT_QPM
    return Primer(
        track,
        end_step=end_step,
        start_step=generator_start_step(sequence_end_time(seq), qpm, steps_per_quarter),
        steps_per_bar=int(sequences_lib.steps_per_bar_in_quantized_sequence(q)),
        steps_per_quarter=steps_per_quarter,
        drums=drums,
        qpm=seq.tempos[0].qpm if seq.tempos and seq.tempos[0].qpm else None,
    )


def from_events(events, drums: bool, steps_per_quarter: int) -> Primer:
    """An event list of ``n`` events lasts ``n`` steps from step 0: it ends exactly on step ``n``, so the
    generators start at ``n + 1`` (its sequence, ``to_sequence`` with ``total_time`` at step ``n``)."""
    if not events:
        raise _bad("primer is an empty event list; give at least one event (or no primer)")
    track = drums_from_events(events) if drums else melody_from_events(events)
    return Primer(
        track,
        end_step=len(events),
        start_step=len(events) + 1,
        steps_per_bar=track.steps_per_bar,
        steps_per_quarter=steps_per_quarter,
        drums=drums,
    )


def parse_primer(raw, drums: bool, steps_per_quarter: int, default: list) -> Primer:
    """The primer for a request value (``None`` = the model's default primer)."""
    if raw is None:
        raw = default
    if isinstance(raw, list):
        return from_events(raw, drums, steps_per_quarter)
    return from_sequence(parse_sequence(raw, FIELD), drums, steps_per_quarter)
