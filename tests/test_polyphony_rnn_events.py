"""PolyphonyRNN's events (magenta's polyphony_lib rewritten): the encoding's classes, set_length and
to_sequence on hand-made sequences."""

import pytest
from note_seq import quantize_note_sequence
from note_seq.protobuf import music_pb2

from magenta_api_polyphony_rnn.events import (
    CONTINUED_NOTE,
    END,
    NEW_NOTE,
    START,
    STEP_END,
    PolyphonicEvent,
    PolyphonicSequence,
    PolyphonyOneHotEncoding,
    events_json,
    from_quantized,
)


def test_every_class_decodes_and_encodes_back():
    enc = PolyphonyOneHotEncoding()
    assert enc.num_classes == 259 and enc.default_event == PolyphonicEvent(STEP_END, 0)
    for i in range(enc.num_classes):
        assert enc.encode_event(enc.decode_event(i)) == i
    assert enc.decode_event(3 + 60) == PolyphonicEvent(NEW_NOTE, 60)
    assert enc.decode_event(3 + 128 + 60) == PolyphonicEvent(CONTINUED_NOTE, 60)
    assert (
        enc.event_to_num_steps(PolyphonicEvent(STEP_END)) == 1 and enc.event_to_num_steps(PolyphonicEvent(START)) == 0
    )
    with pytest.raises(ValueError, match="Unknown event index"):
        enc.decode_event(259)
    with pytest.raises(ValueError, match="Unknown event type"):
        enc.encode_event(PolyphonicEvent(9, 0))


def test_set_length_pads_and_trims_in_steps():
    seq = PolyphonicSequence(steps_per_quarter=4)
    seq.events += [PolyphonicEvent(NEW_NOTE, 60), PolyphonicEvent(STEP_END), PolyphonicEvent(CONTINUED_NOTE, 60)]
    seq.set_length(4)
    assert seq.num_steps == 4 and seq[-1].event_type == END
    seq.set_length(1)
    assert [e.event_type for e in seq] == [START, NEW_NOTE, STEP_END, END]
    seq.set_length(0)
    assert [e.event_type for e in seq] == [START, END]


def test_to_sequence_holds_continued_notes_and_ignores_stray_markers():
    ev = [
        PolyphonicEvent(START),
        PolyphonicEvent(NEW_NOTE, 64),
        PolyphonicEvent(NEW_NOTE, 60),
        PolyphonicEvent(STEP_END),
        PolyphonicEvent(START),  # ignored: not the first event
        PolyphonicEvent(CONTINUED_NOTE, 64),
        PolyphonicEvent(CONTINUED_NOTE, 50),  # ignored: not sounding
        PolyphonicEvent(END),  # ignored: not the last event
        PolyphonicEvent(STEP_END),
        PolyphonicEvent(END),
    ]
    out = PolyphonicSequence(steps_per_quarter=4, start_step=4, events=ev).to_sequence(qpm=120)
    notes = sorted((n.pitch, n.start_time, n.end_time) for n in out.notes)
    assert notes == [(60, 0.5, 0.625), (64, 0.5, 0.75)]
    assert out.total_time == pytest.approx(0.75)
    assert events_json(ev[:3]) == [["start"], ["new_note", 64], ["new_note", 60]]
    with pytest.raises(ValueError, match="still held"):
        PolyphonicSequence(steps_per_quarter=4, events=ev[:3]).to_sequence()


def test_extraction_refuses_more_than_one_program():
    seq = music_pb2.NoteSequence()
    seq.tempos.add(qpm=120)
    seq.notes.add(pitch=60, start_time=0, end_time=0.5, velocity=80, program=0)
    seq.notes.add(pitch=64, start_time=0, end_time=0.5, velocity=80, program=40)
    seq.total_time = 0.5
    assert from_quantized(quantize_note_sequence(seq, 4)) is None
