"""A request's ``primer`` as the Performance that ``PerformanceRnnSequenceGenerator`` starts from.

Forms: an event list (``[["note_on", 60], ["velocity", 20], ["time_shift", 50], ["note_off", 60]]``),
NoteSequence JSON or base64 MIDI. Sequences are quantized to 100 steps per second
(``quantize_note_sequence_absolute``) and turned into one Performance as Magenta's
``extract_performances`` does (one program only; velocities in the config's bins).

Where generation starts: the generator is given a generate section from the primer's end, and starts
at ``quantize_to_step(end, 100, quantize_cutoff=0)`` (the first step *after* the end: a primer ending
exactly on step ``k`` is padded with one 10 ms step); a missing or empty primer starts at step 1 with
up to a second of silence (``set_length(min(max_shift_steps, total))``), as the generator does.
"""

from dataclasses import dataclass

from note_seq import sequences_lib
from note_seq.performance_lib import Performance, PerformanceEvent

from magenta_api import Unprocessable
from magenta_api.music import parse_sequence

from .configs import STEPS_PER_SECOND

FIELD = "/primer"
EVENT_TYPES = {
    "note_on": PerformanceEvent.NOTE_ON,
    "note_off": PerformanceEvent.NOTE_OFF,
    "time_shift": PerformanceEvent.TIME_SHIFT,
    "velocity": PerformanceEvent.VELOCITY,
}
EVENT_NAMES = {v: k for k, v in EVENT_TYPES.items()}


def _bad(message: str, **details) -> Unprocessable:
    return Unprocessable(message, {"field": FIELD, **details}, code="invalid_primer")


@dataclass
class Primer:
    performance: Performance  # the events the model continues, padded to the generation start
    start_step: int  # the time step where generation starts (the performance's end)
    total_steps: int  # the output's length in time steps from the performance's start (the generator's)


def events_json(performance) -> list:
    return [[EVENT_NAMES[e.event_type], int(e.event_value)] for e in performance]


def quantize_to_step(seconds: float, cutoff: float) -> int:
    return int(sequences_lib.quantize_to_step(seconds, STEPS_PER_SECOND, quantize_cutoff=cutoff))


def end_step(length: int) -> int:
    """performance_rnn_generate's end of generation for ``--num_steps`` = ``length`` (10 ms steps):
    ``length * (1 / steps_per_second)`` seconds, quantized down as the generator does."""
    return quantize_to_step(length * (1.0 / STEPS_PER_SECOND), 1.0)


def from_events(raw: list, num_velocity_bins: int) -> Performance:
    perf = Performance(steps_per_second=STEPS_PER_SECOND, start_step=0, num_velocity_bins=num_velocity_bins)
    limits = {
        PerformanceEvent.NOTE_ON: (0, 127),
        PerformanceEvent.NOTE_OFF: (0, 127),
        PerformanceEvent.TIME_SHIFT: (1, perf.max_shift_steps),
        PerformanceEvent.VELOCITY: (1, num_velocity_bins),
    }
    for i, e in enumerate(raw):
        ok = isinstance(e, (list, tuple)) and len(e) == 2 and e[0] in EVENT_TYPES
        ok = ok and isinstance(e[1], int) and not isinstance(e[1], bool)
        if not ok:
            raise _bad(
                f"primer event {i} is {e!r}: expected [type, value] with type one of {', '.join(EVENT_TYPES)}",
                index=i,
            )
        kind = EVENT_TYPES[e[0]]
        lo, hi = limits[kind]
        if not lo <= e[1] <= hi:
            extra = " (this model has no velocity events)" if kind == PerformanceEvent.VELOCITY and not hi else ""
            raise _bad(f"primer event {i}: {e[0]} value {e[1]} is outside {lo}..{hi}{extra}", index=i)
        perf.append(PerformanceEvent(kind, e[1]))
    return perf


def from_sequence(seq, num_velocity_bins: int) -> tuple:
    """(Performance or None, end time in seconds) of a primer NoteSequence."""
    programs = sorted({n.program for n in seq.notes})
    if len(programs) > 1:
        raise _bad(
            f"primer plays {len(programs)} programs ({', '.join(map(str, programs))}); PerformanceRNN reads "
            "one instrument's performance (Magenta discards sequences with more than one program)",
            programs=programs,
        )
    try:
        q = sequences_lib.quantize_note_sequence_absolute(seq, STEPS_PER_SECOND)
        perf = Performance(q, start_step=0, num_velocity_bins=num_velocity_bins)
    except Exception as exc:  # NegativeTimeError and the like
        raise _bad(f"primer sequence cannot be quantized as Magenta does: {exc}", reason=type(exc).__name__) from exc
    end = max([seq.total_time] + [n.end_time for n in seq.notes])
    return (perf if len(perf) else None), end


def parse_primer(raw, num_velocity_bins: int, length: int) -> Primer:
    """The performance to continue for ``length`` total 10 ms steps (``None``: start from silence)."""
    if raw is None:
        perf, end = None, 0.0
    elif isinstance(raw, list):
        if not raw:
            raise _bad("primer is an empty event list; give at least one event (or no primer)")
        perf = from_events(raw, num_velocity_bins)
        end = perf.num_steps / STEPS_PER_SECOND
    else:
        perf, end = from_sequence(parse_sequence(raw, FIELD), num_velocity_bins)
    start = quantize_to_step(end, 0.0)
    if isinstance(raw, list) and perf is not None:
        start = perf.num_steps + 1  # an event list ends exactly on its last step
    stop = end_step(length)
    if stop <= start:
        raise Unprocessable(
            f"length {length} (10 ms steps, the primer included) ends at step {stop}, but generation starts at step "
            f"{start}, after the primer: ask for a length over {start}",
            {"field": "/length", "start_step": start},
            code="invalid_primer",
        )
    if perf is None:
        perf = Performance(steps_per_second=STEPS_PER_SECOND, start_step=start, num_velocity_bins=num_velocity_bins)
    perf.set_length(start - perf.start_step)
    total = perf.num_steps + (stop - start)
    if not len(perf):  # "Primer is empty; let's just start with silence."
        perf.set_length(min(perf.max_shift_steps, total))
    return Primer(perf, start, total)
