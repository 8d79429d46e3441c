"""The core chord type: the request field ``chords`` as families read it."""

import jsonschema
import pytest
from note_seq import TriadChordOneHotEncoding
from note_seq.protobuf import music_pb2

from magenta_api.chords import CHORDS_SCHEMA, NO_CHORD, annotate, from_sequence, parse_chords
from magenta_api.errors import Unprocessable


def test_one_chord_per_bar_holds_the_last_chord():
    prog = parse_chords(["C", "G7", "Am"])
    assert prog.unit == "bar" and prog.symbols == ["C", "G7", "Am"]
    steps = prog.per_step(64)
    assert steps[:16] == ["C"] * 16 and steps[16:32] == ["G7"] * 16 and steps[32:] == ["Am"] * 32
    # a 3/4 bar of 4 steps per quarter is 12 steps; start_step shifts the window
    assert prog.per_step(4, quarters_per_bar=3, start_step=10) == ["C", "C", "G7", "G7"]


def test_explicit_steps_and_times():
    prog = parse_chords([{"symbol": "Dm7", "step": 4}, {"symbol": "G7", "step": 8}])
    assert prog.per_step(10) == [NO_CHORD] * 4 + ["Dm7"] * 4 + ["G7"] * 2
    # seconds at qpm 60, 4 steps per quarter: 1 s = 4 steps; note-seq's rounding (cutoff 0.5)
    prog = parse_chords([{"symbol": "C", "time": 0}, {"symbol": "F", "time": 0.9}])
    assert prog.start_steps(qpm=60.0) == [0, 4]
    assert prog.per_step(6, qpm=60.0) == ["C"] * 4 + ["F"] * 2


@pytest.mark.parametrize(
    ("value", "pointer", "symbol"),
    [(["C", "H7"], "/chords/1", "H7"), ([{"symbol": "c", "step": 0}], "/chords/0/symbol", "c")],
)
def test_an_unparseable_symbol_is_a_422_naming_it(value, pointer, symbol):
    with pytest.raises(Unprocessable) as e:
        parse_chords(value)
    assert e.value.code == "invalid_chord" and symbol in e.value.message
    assert e.value.details == {"field": pointer, "symbol": symbol}


def test_positions_go_forward_and_forms_do_not_mix():
    with pytest.raises(Unprocessable, match="time order"):
        parse_chords([{"symbol": "C", "step": 8}, {"symbol": "F", "step": 4}])
    with pytest.raises(Unprocessable, match="one form per list"):
        parse_chords([{"symbol": "C", "step": 0}, {"symbol": "F", "time": 1.0}])
    with pytest.raises(Unprocessable, match="non-empty"):
        parse_chords([])
    assert parse_chords(None) is None


def test_the_schema_takes_each_form_and_refuses_a_mix():
    for ok in (["C"], [{"symbol": "C", "step": 0}], [{"symbol": "C", "time": 0.5}]):
        jsonschema.validate(ok, CHORDS_SCHEMA)
    for bad in ([], ["C", {"symbol": "C", "step": 0}], [{"symbol": "C"}], [{"symbol": "C", "step": -1}], "C"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, CHORDS_SCHEMA)


def test_check_runs_the_models_encoding():
    encoding = TriadChordOneHotEncoding()
    parse_chords(["C", "Am", NO_CHORD, "G7"]).check(encoding.encode_event)
    with pytest.raises(Unprocessable) as e:
        parse_chords(["C", "Csus4"]).check(encoding.encode_event, "a triad encoding")
    assert e.value.details == {"field": "/chords/1", "symbol": "Csus4"} and "a triad encoding" in e.value.message


def test_annotations_round_trip():
    seq = annotate(music_pb2.NoteSequence(), ["C"] * 8 + ["G"] * 8, qpm=120.0)
    assert [(a.time, a.text) for a in seq.text_annotations] == [(0.0, "C"), (1.0, "G")]
    prog = from_sequence(seq)
    assert prog.unit == "time" and prog.per_step(16) == ["C"] * 8 + ["G"] * 8
    assert from_sequence(music_pb2.NoteSequence()) is None
    bad = music_pb2.NoteSequence()
    bad.text_annotations.add(text="X9", annotation_type=music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL)
    with pytest.raises(Unprocessable, match="X9"):
        from_sequence(bad)
