"""A request's ``primer`` as the event track Magenta's sequence generators would start from.

Forms: Magenta's event list (melody: pitch, -1 note-off, -2 hold; drums: a list of pitch lists, ``[]``
a rest), NoteSequence JSON or base64 MIDI. Sequences are quantized (``steps_per_quarter``) and the
melody / drum track extracted as ``melody_rnn_sequence_generator`` / ``drums_rnn_sequence_generator``
do (magenta's ``extract_melodies`` / ``extract_drum_tracks`` with ``min_bars=0``,
``gap_bars=inf``, polyphony resolved to the highest pitch); generation starts where the quantized
primer ends.
"""

import math
from dataclasses import dataclass
from typing import Any

from note_seq import DrumTrack, Melody, sequences_lib

from magenta_api import Unprocessable
from magenta_api.music import parse_sequence

FIELD = "/primer"


@dataclass
class Primer:
    track: Any  # note_seq Melody or DrumTrack (start_step, steps_per_bar, ...); note-seq has no types
    qpm: float | None = None  # the primer sequence's own tempo, if it has one


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
    qpm = seq.tempos[0].qpm if seq.tempos and seq.tempos[0].qpm else 120.0
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
    start_step = int(q.total_quantized_steps)  # the generate section starts where the primer ends
    if track is None:
        if start_step == 0:
            raise _bad("primer sequence has no notes and no length")
        # As the sequence generators: one step of silence just before generation starts.
        steps_per_bar = int(sequences_lib.steps_per_bar_in_quantized_sequence(q))
        cls = DrumTrack if drums else Melody
        track = cls([], start_step=start_step - 1, steps_per_bar=steps_per_bar, steps_per_quarter=steps_per_quarter)
    track.set_length(start_step - track.start_step)
    qpm = seq.tempos[0].qpm if seq.tempos and seq.tempos[0].qpm else None
    return Primer(track, qpm)


def parse_primer(raw, drums: bool, steps_per_quarter: int, default: list) -> Primer:
    """The primer track for a request value (``None`` = the model's default primer)."""
    if raw is None:
        raw = default
    if isinstance(raw, list):
        if not raw:
            raise _bad("primer is an empty event list; give at least one event (or no primer)")
        track = drums_from_events(raw) if drums else melody_from_events(raw)
        return Primer(track)
    return from_sequence(parse_sequence(raw, FIELD), drums, steps_per_quarter)
