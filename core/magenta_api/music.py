"""NoteSequence in and out: protobuf JSON (camelCase, as Magenta.js reads it), base64 MIDI, MIDI files.

Plugins call :func:`parse_sequence` on a request's ``primer`` / ``inputs`` items and return
``note_seq`` NoteSequence protobufs; the core renders them with :func:`sequence_to_json` or
:func:`sequence_to_midi`.
"""

import base64
import binascii
import io

from google.protobuf import json_format
from note_seq import midi_io
from note_seq.protobuf import music_pb2

from .errors import InvalidRequest, Unprocessable

NoteSequence = music_pb2.NoteSequence


def sequence_to_json(seq) -> dict:
    """Protobuf JSON mapping (camelCase field names, int64 as strings as the mapping says)."""
    return json_format.MessageToDict(seq)


def sequence_from_json(data: dict, pointer: str = ""):
    """A NoteSequence from its protobuf JSON form (camelCase or snake_case field names)."""
    seq = NoteSequence()
    try:
        json_format.ParseDict(data, seq, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise InvalidRequest(f"not a NoteSequence: {exc}", {"field": pointer}, code="invalid_sequence") from exc
    # Hand-written JSON often leaves totalTime out; note-seq quantizes up to it, so derive it.
    last_end = max((n.end_time for n in seq.notes), default=0.0)
    if seq.total_time < last_end:
        seq.total_time = last_end
    return seq


def sequence_from_midi_bytes(data: bytes, pointer: str = ""):
    """A NoteSequence from the bytes of a standard MIDI file."""
    try:
        return midi_io.midi_to_note_sequence(data)
    except Exception as exc:  # note_seq raises MIDIConversionError and mido's errors
        raise Unprocessable(f"not a readable MIDI file: {exc}", {"field": pointer}, code="invalid_midi") from exc


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
    """Standard MIDI file bytes of a NoteSequence."""
    buf = io.BytesIO()
    midi_io.note_sequence_to_pretty_midi(seq).write(buf)
    return buf.getvalue()
