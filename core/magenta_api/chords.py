"""Chord progressions: the request field ``chords`` that every chord-conditioned family takes.

Magenta's chord-conditioned models (ImprovRNN, MusicVAE ``*_chords``, multitrack ``*_chords``) read one
chord symbol per quantized step, as note-seq's ``chord_symbols_lib`` parses it ("C", "G7", "Am",
"F#m7b5", "Bb/D"; "N.C." for no chord). The core owns the field so that every family reads it alike:

- JSON: ``"chords": ["C", "G7", "Am", "F"]`` (one chord per bar, from bar 0), or a list of objects
  with an explicit position, ``[{"symbol": "C", "step": 0}, {"symbol": "G7", "step": 8}]`` (16th steps
  of the model's grid) or ``[{"symbol": "C", "time": 0}, {"symbol": "G7", "time": 1.0}]`` (seconds at
  the request's ``qpm``). One list uses one form. A chord lasts until the next; the last one holds to
  the end; steps before the first chord are "N.C.".
- Families put :data:`CHORDS_SCHEMA` in their ``params_schema`` (``{"properties": {"chords":
  CHORDS_SCHEMA}}``), call :func:`parse_chords` on ``request.params.get("chords")`` (an unparseable
  symbol is a 422 ``invalid_chord`` naming it, with ``details.field`` pointing at it), then
  :meth:`ChordProgression.per_step` for the symbol at each step of the grid they generate on.
- :meth:`ChordProgression.check` runs a model's own chord encoding over every symbol, so a symbol the
  model cannot encode (``Csus4`` for a triad one-hot encoding) is a 422 naming it as well.
- :func:`from_sequence` reads the chord annotations of a NoteSequence, and :func:`annotate` writes a
  progression into an output NoteSequence as Magenta's generators do (``CHORD_SYMBOL`` text annotations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from note_seq import chord_symbols_lib, sequences_lib
from note_seq.constants import NO_CHORD
from note_seq.protobuf import music_pb2

from .errors import Unprocessable

__all__ = ["CHORDS_SCHEMA", "NO_CHORD", "ChordProgression", "annotate", "from_sequence", "parse_chords"]

MAX_CHORDS = 4096  # more changes than any generation has steps

_SYMBOL = {"type": "string", "minLength": 1, "maxLength": 32}

CHORDS_SCHEMA: dict = {
    "description": (
        "chord symbols as note-seq parses them ('C', 'G7', 'Am', 'N.C.'): one per bar from bar 0, or "
        "objects {symbol, step} (16th steps) or {symbol, time} (seconds); a chord holds until the next"
    ),
    "oneOf": [
        {"type": "array", "minItems": 1, "maxItems": MAX_CHORDS, "items": _SYMBOL},
        {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_CHORDS,
            "items": {
                "type": "object",
                "properties": {"symbol": _SYMBOL, "step": {"type": "integer", "minimum": 0, "maximum": 1 << 20}},
                "required": ["symbol", "step"],
                "additionalProperties": False,
            },
        },
        {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_CHORDS,
            "items": {
                "type": "object",
                "properties": {"symbol": _SYMBOL, "time": {"type": "number", "minimum": 0, "maximum": 3600}},
                "required": ["symbol", "time"],
                "additionalProperties": False,
            },
        },
    ],
}


def _check_symbol(symbol: str, pointer: str) -> str:
    if symbol == NO_CHORD:
        return symbol
    try:
        chord_symbols_lib.chord_symbol_pitches(symbol)
    except chord_symbols_lib.ChordSymbolError:
        raise Unprocessable(
            f"chord {symbol!r} is not a chord symbol note-seq can parse (e.g. 'C', 'G7', 'Am', 'F#m7b5', "
            f"'Bb/D', or '{NO_CHORD}' for no chord)",
            {"field": pointer, "symbol": symbol},
            code="invalid_chord",
        ) from None
    return symbol


@dataclass(frozen=True)
class ChordProgression:
    """Chord changes in time order. ``unit`` says what a position counts: ``"bar"`` (one chord per bar),
    ``"step"`` (16th steps of the model's grid) or ``"time"`` (seconds). ``changes`` holds
    ``(position, symbol)`` pairs; ``pointers`` the JSON pointer of each change in the request."""

    unit: str
    changes: tuple[tuple[float, str], ...]
    pointers: tuple[str, ...] = ()

    @property
    def symbols(self) -> list[str]:
        """The chord symbols in order of their changes."""
        return [s for _, s in self.changes]

    def start_steps(self, steps_per_quarter: int = 4, quarters_per_bar: int = 4, qpm: float = 120.0) -> list[int]:
        """The step at which each change starts, on a grid of ``steps_per_quarter`` per quarter note."""
        if self.unit == "bar":
            return [int(p) * steps_per_quarter * quarters_per_bar for p, _ in self.changes]
        if self.unit == "step":
            return [int(p) for p, _ in self.changes]
        steps_per_second = steps_per_quarter * qpm / 60.0
        return [sequences_lib.quantize_to_step(p, steps_per_second) for p, _ in self.changes]

    def per_step(
        self,
        num_steps: int,
        steps_per_quarter: int = 4,
        quarters_per_bar: int = 4,
        qpm: float = 120.0,
        start_step: int = 0,
    ) -> list[str]:
        """The chord symbol at each of ``num_steps`` steps from ``start_step``: the latest change at or
        before the step (the last one holds to the end), ``"N.C."`` before the first."""
        starts = self.start_steps(steps_per_quarter, quarters_per_bar, qpm)
        out, current, i = [], NO_CHORD, 0
        for step in range(start_step, start_step + num_steps):
            while i < len(starts) and starts[i] <= step:
                current = self.changes[i][1]
                i += 1
            out.append(current)
        return out

    def check(self, encode: Callable[[str], object], what: str = "this model") -> None:
        """Run ``encode`` (a model's chord encoding, e.g. ``TriadChordOneHotEncoding().encode_event``)
        on every symbol; a symbol it refuses is a 422 ``invalid_chord`` naming the symbol."""
        for k, symbol in enumerate(self.symbols):
            try:
                encode(symbol)
            except Exception as exc:  # note-seq raises ChordEncodingError, ChordSymbolError, ValueError
                pointer = self.pointers[k] if k < len(self.pointers) else "/chords"
                raise Unprocessable(
                    f"chord {symbol!r} cannot be encoded by {what}: {exc}",
                    {"field": pointer, "symbol": symbol},
                    code="invalid_chord",
                ) from None


def parse_chords(value, pointer: str = "/chords") -> ChordProgression | None:
    """The progression a request's ``chords`` value names (already checked against
    :data:`CHORDS_SCHEMA`), or ``None`` when it is absent. Positions must not go back in time."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise Unprocessable("chords must be a non-empty list", {"field": pointer}, code="invalid_chord")
    items = list(value)
    if all(isinstance(v, str) for v in items):
        unit, changes = "bar", [(float(i), v) for i, v in enumerate(items)]
        pointers = [f"{pointer}/{i}" for i in range(len(items))]
    else:
        unit = "step" if isinstance(items[0], dict) and "step" in items[0] else "time"
        changes, pointers = [], []
        for i, v in enumerate(items):
            if not isinstance(v, dict) or unit not in v or "symbol" not in v:
                raise Unprocessable(
                    f"chord {i}: every item must be an object with 'symbol' and '{unit}' (one form per list)",
                    {"field": f"{pointer}/{i}"},
                    code="invalid_chord",
                )
            changes.append((float(v[unit]), v["symbol"]))
            pointers.append(f"{pointer}/{i}/symbol")
        for i in range(1, len(changes)):
            if changes[i][0] < changes[i - 1][0]:
                raise Unprocessable(
                    f"chord {i} starts at {unit} {changes[i][0]:g}, before chord {i - 1} ({changes[i - 1][0]:g}): "
                    "list the chords in time order",
                    {"field": f"{pointer}/{i}/{unit}"},
                    code="invalid_chord",
                )
    for (_, symbol), p in zip(changes, pointers):
        _check_symbol(symbol, p)
    return ChordProgression(unit, tuple(changes), tuple(pointers))


def from_sequence(sequence) -> ChordProgression | None:
    """The chord annotations (``CHORD_SYMBOL`` text annotations) of a NoteSequence as a progression in
    seconds, or ``None`` when it has none. Unparseable symbols are a 422 naming them."""
    kind = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
    found = sorted((a.time, a.text) for a in sequence.text_annotations if a.annotation_type == kind)
    if not found:
        return None
    pointers = [f"/textAnnotations/{i}" for i in range(len(found))]
    for (_, s), p in zip(found, pointers):
        _check_symbol(s, p)
    return ChordProgression("time", tuple(found), tuple(pointers))


def annotate(sequence, symbols: list[str], steps_per_quarter: int = 4, qpm: float = 120.0, start_step: int = 0):
    """Write per-step chord symbols into ``sequence`` as ``CHORD_SYMBOL`` text annotations at each change
    (times in seconds at ``qpm``), the way Magenta's generators leave the backing chords in their output."""
    seconds_per_step = 60.0 / qpm / steps_per_quarter
    previous = None
    for i, symbol in enumerate(symbols):
        if symbol != previous:
            a = sequence.text_annotations.add()
            a.time = (start_step + i) * seconds_per_step
            a.text = symbol
            a.annotation_type = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
            previous = symbol
    return sequence
