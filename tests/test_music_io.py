"""NoteSequence input parsing shared by every plugin."""

import base64

import note_seq
import pytest
from conftest import ROOT

from magenta_api.errors import InvalidRequest, Unprocessable
from magenta_api.music import parse_sequence, sequence_to_json, sequence_to_midi

MIDI = ROOT / "tests" / "fixtures" / "musicvae" / "midi" / "melody.mid"


def test_json_without_total_time_gets_it_from_the_notes():
    seq = parse_sequence({"notes": [{"pitch": 60, "startTime": 0, "endTime": 1.5}, {"pitch": 62, "endTime": 0.5}]})
    assert seq.total_time == 1.5
    kept = parse_sequence({"notes": [{"pitch": 60, "endTime": 1}], "totalTime": 4})
    assert kept.total_time == 4


def test_base64_midi_round_trip_and_data_url():
    original = note_seq.midi_file_to_note_sequence(str(MIDI))
    encoded = base64.b64encode(sequence_to_midi(original)).decode()
    for value in (encoded, "data:audio/midi;base64," + encoded):
        seq = parse_sequence(value, "/inputs/0")
        assert [n.pitch for n in seq.notes] == [n.pitch for n in original.notes]
    assert sequence_to_json(seq)["notes"][0]["pitch"] == original.notes[0].pitch


def test_bad_inputs_are_400_or_422_with_the_field():
    with pytest.raises(InvalidRequest) as info:
        parse_sequence({"notes": [{"pitch": "high"}]}, "/primer")
    assert info.value.details["field"] == "/primer"
    with pytest.raises(InvalidRequest, match="base64"):
        parse_sequence("not base64 !!", "/inputs/1")
    with pytest.raises(Unprocessable, match="MIDI"):
        parse_sequence(base64.b64encode(b"MThd garbage").decode(), "/inputs/1")
    with pytest.raises(InvalidRequest):
        parse_sequence(42, "/primer")
