"""NoteSequence in and out: protobuf JSON (camelCase, as Magenta.js reads it), base64 MIDI, MIDI files.

Plugins call :func:`parse_sequence` on a request's ``primer`` / ``inputs`` items and return
``note_seq`` NoteSequence protobufs; the core renders them with :func:`sequence_to_json` or
:func:`sequence_to_midi`.
"""

import base64
import binascii
import io
import math

from google.protobuf import json_format
from note_seq import midi_io
from note_seq.protobuf import music_pb2

from .errors import InvalidRequest, Unprocessable

NoteSequence = music_pb2.NoteSequence

MAX_NOTES = 10_000  # per input sequence; a 2 MB body holds about this many notes anyway
MAX_SECONDS = 3600.0  # the latest time a note may end
QPM_RANGE = (4.0, 1000.0)  # what a MIDI tempo (24-bit microseconds per quarter) can carry, as the request's qpm


def _int64_objects_to_numbers(value):
    """Magenta.js's ``toObject`` writes int64 fields (``quantizedStartStep``...) as protobuf.js Longs,
    ``{low, high, unsigned}``; the protobuf JSON mapping wants numbers."""
    if isinstance(value, dict):
        if set(value) == {"low", "high", "unsigned"} and all(isinstance(value[k], int) for k in ("low", "high")):
            number = (value["high"] << 32) | (value["low"] & 0xFFFFFFFF)
            return number if value["unsigned"] or number < 1 << 63 else number - (1 << 64)
        return {k: _int64_objects_to_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_int64_objects_to_numbers(v) for v in value]
    return value


def check_sequence(seq, pointer: str = ""):
    """Refuse what note-seq and MIDI cannot hold: pitches and velocities outside 0..127, times that are
    not finite, negative or past :data:`MAX_SECONDS`, more than :data:`MAX_NOTES` notes, tempos outside
    :data:`QPM_RANGE`. Returns ``seq``."""

    def bad(message, **details):
        return Unprocessable(message, {"field": pointer, **details}, code="invalid_sequence")

    if len(seq.notes) > MAX_NOTES:
        raise Unprocessable(
            f"the sequence has {len(seq.notes)} notes; at most {MAX_NOTES}",
            {"field": f"{pointer}/notes", "limit": MAX_NOTES},
            code="over_limit",
        )
    for i, n in enumerate(seq.notes):
        if not (0 <= n.pitch <= 127 and 0 <= n.velocity <= 127):
            raise bad(f"note {i}: pitch {n.pitch} and velocity {n.velocity} must be MIDI values 0..127", note=i)
        if not (
            math.isfinite(n.start_time) and math.isfinite(n.end_time) and 0 <= n.start_time <= n.end_time <= MAX_SECONDS
        ):
            raise bad(
                f"note {i}: times {n.start_time}..{n.end_time} must satisfy 0 <= start <= end <= "
                f"{MAX_SECONDS:g} seconds",
                note=i,
            )
    for t in seq.tempos:
        if not (math.isfinite(t.qpm) and QPM_RANGE[0] <= t.qpm <= QPM_RANGE[1]):
            raise bad(f"tempo {t.qpm} qpm is outside {QPM_RANGE[0]:g}..{QPM_RANGE[1]:g}")
    if not (math.isfinite(seq.total_time) and 0 <= seq.total_time <= MAX_SECONDS):
        raise bad(f"totalTime {seq.total_time} must be between 0 and {MAX_SECONDS:g} seconds")
    return seq


JSON_STYLES = ("proto", "magentajs")


def sequence_to_json(seq, style: str = "proto") -> dict:
    """A NoteSequence as JSON. ``proto``: the protobuf JSON mapping (camelCase, zero values and empty lists
    left out, int64 as strings). ``magentajs``: every field spelt out (zero times, empty lists, int64 and
    enums as numbers), which Magenta.js functions such as ``sequenceProtoToMidi`` read as is."""
    if style == "magentajs":
        return json_format.MessageToDict(
            seq, always_print_fields_with_no_presence=True, use_integers_for_enums=True, unquote_int64_if_possible=True
        )
    return json_format.MessageToDict(seq)


def sequence_from_json(data: dict, pointer: str = ""):
    """A NoteSequence from its protobuf JSON form (camelCase or snake_case field names)."""
    seq = NoteSequence()
    try:
        json_format.ParseDict(_int64_objects_to_numbers(data), seq, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"not a NoteSequence: {exc}", {"field": pointer}, code="invalid_sequence") from exc
    # Hand-written JSON often leaves totalTime out; note-seq quantizes up to it, so derive it.
    check_sequence(seq, pointer)
    last_end = max((n.end_time for n in seq.notes), default=0.0)
    if seq.total_time < last_end:
        seq.total_time = last_end
    return seq


def sequence_from_midi_bytes(data: bytes, pointer: str = ""):
    """A NoteSequence from the bytes of a standard MIDI file."""
    try:
        seq = midi_io.midi_to_note_sequence(data)
    except Exception as exc:  # note_seq raises MIDIConversionError and mido's errors
        raise Unprocessable(f"not a readable MIDI file: {exc}", {"field": pointer}, code="invalid_midi") from exc
    return check_sequence(seq, pointer)


def parse_sequence(value, pointer: str = ""):
    """A NoteSequence from a request value: a JSON object (NoteSequence JSON) or a string of
    base64 MIDI (``data:audio/midi;base64,`` prefix allowed)."""
    if isinstance(value, dict):
        return sequence_from_json(value, pointer)
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest("expected base64-encoded MIDI", {"field": pointer}, code="invalid_base64") from exc
        return sequence_from_midi_bytes(raw, pointer)
    raise InvalidRequest(
        "expected a NoteSequence JSON object or base64 MIDI string", {"field": pointer}, code="invalid_sequence"
    )


def sequence_to_midi(seq) -> bytes:
    """Standard MIDI file bytes of a NoteSequence (tempos outside :data:`QPM_RANGE` cannot be written)."""
    bad = [t.qpm for t in seq.tempos if not (math.isfinite(t.qpm) and QPM_RANGE[0] <= t.qpm <= QPM_RANGE[1])]
    if bad:
        raise Unprocessable(
            f"a tempo of {bad[0]} qpm cannot be written as MIDI ({QPM_RANGE[0]:g}..{QPM_RANGE[1]:g})",
            {"field": "/qpm"},
            code="unrenderable",
        )
    buf = io.BytesIO()
    midi_io.note_sequence_to_pretty_midi(seq).write(buf)
    return buf.getvalue()
