"""PolyphonyRNN's event representation, as magenta's ``polyphony_rnn/polyphony_lib.py`` and
``polyphony_encoder_decoder.py`` define it (magenta's own module needs TensorFlow; this is the same
arithmetic on plain Python).

A polyphonic sequence is ``START``, then per 16th step the step's notes (``NEW_NOTE`` for a note that
starts, ``CONTINUED_NOTE`` for one still held, highest pitch first) and a ``STEP_END``, then ``END``.
The one-hot encoding has 3 + 2 × 128 = 259 classes: START, END, STEP_END, then NEW_NOTE and
CONTINUED_NOTE for each pitch.
"""

import collections
import copy
from typing import NamedTuple

from note_seq import constants, sequences_lib
from note_seq import encoder_decoder as ed
from note_seq.protobuf import music_pb2

START, END, STEP_END, NEW_NOTE, CONTINUED_NOTE = range(5)
NAMES = {START: "start", END: "end", STEP_END: "step_end", NEW_NOTE: "new_note", CONTINUED_NOTE: "continued_note"}
WITHOUT_PITCH = [START, END, STEP_END]
WITH_PITCH = [NEW_NOTE, CONTINUED_NOTE]
PITCH_CLASSES = constants.MAX_MIDI_PITCH + 1


class PolyphonicEvent(NamedTuple):
    """One event; ``pitch`` is None for START / END / STEP_END made by a sequence (0 when decoded)."""

    event_type: int
    pitch: int | None = None


class PolyphonyOneHotEncoding(ed.OneHotEncoding):
    """magenta's PolyphonyOneHotEncoding."""

    @property
    def num_classes(self):
        return len(WITHOUT_PITCH) + len(WITH_PITCH) * PITCH_CLASSES

    @property
    def default_event(self):
        return PolyphonicEvent(STEP_END, 0)

    def encode_event(self, event):
        if event.event_type in WITHOUT_PITCH:
            return WITHOUT_PITCH.index(event.event_type)
        if event.event_type in WITH_PITCH:
            return len(WITHOUT_PITCH) + WITH_PITCH.index(event.event_type) * PITCH_CLASSES + event.pitch
        raise ValueError(f"Unknown event type: {event.event_type}")

    def decode_event(self, index):
        if index < len(WITHOUT_PITCH):
            return PolyphonicEvent(WITHOUT_PITCH[index], 0)
        pitched = index - len(WITHOUT_PITCH)
        if pitched < len(WITH_PITCH) * PITCH_CLASSES:
            return PolyphonicEvent(len(WITHOUT_PITCH) + pitched // PITCH_CLASSES, pitched % PITCH_CLASSES)
        raise ValueError(f"Unknown event index: {index}")

    def event_to_num_steps(self, event):
        return 1 if event.event_type == STEP_END else 0


def make_encoder():
    return ed.OneHotEventSequenceEncoderDecoder(PolyphonyOneHotEncoding())


class PolyphonicSequence:
    """magenta's PolyphonicSequence: events from a quantized NoteSequence, set_length, to_sequence."""

    def __init__(self, quantized_sequence=None, steps_per_quarter=None, start_step=0, events=None):
        if quantized_sequence is not None:
            self.events = self._from_quantized_sequence(quantized_sequence, start_step)
            self.steps_per_quarter = quantized_sequence.quantization_info.steps_per_quarter
        else:
            self.events = list(events) if events is not None else [PolyphonicEvent(START)]
            self.steps_per_quarter = steps_per_quarter
        self.start_step = start_step

    def __len__(self):
        return len(self.events)

    def __iter__(self):
        return iter(self.events)

    def __getitem__(self, i):
        return self.events[i]

    @property
    def num_steps(self) -> int:
        return sum(1 for e in self.events if e.event_type == STEP_END)

    def trim_trailing_end_events(self):
        while self.events[-1].event_type == END:
            del self.events[-1]

    def _trim_steps(self, num_steps):
        trimmed = 0
        for i in reversed(range(len(self.events))):
            if self.events[i].event_type == STEP_END:
                if trimmed == num_steps:
                    del self.events[i + 1 :]
                    break
                trimmed += 1
            elif i == 0:
                self.events = [PolyphonicEvent(START)]
                break

    def set_length(self, steps: int):
        self.trim_trailing_end_events()
        self.events.append(PolyphonicEvent(STEP_END))
        if self.num_steps < steps:
            self.events.extend(PolyphonicEvent(STEP_END) for _ in range(steps - self.num_steps))
        elif self.num_steps > steps:
            self._trim_steps(self.num_steps - steps)
        self.events.append(PolyphonicEvent(END))
        assert self.num_steps == steps

    @staticmethod
    def _from_quantized_sequence(q, start_step=0):
        starts, ends = collections.defaultdict(list), collections.defaultdict(list)
        for note in q.notes:
            if note.quantized_start_step < start_step:
                continue
            starts[note.quantized_start_step].append(note.pitch)
            ends[note.quantized_end_step].append(note.pitch)
        events = [PolyphonicEvent(START)]
        active = []
        for step in range(start_step, q.total_quantized_steps):
            step_events = []
            for pitch in ends[step]:
                active.remove(pitch)
            for pitch in active:
                step_events.append(PolyphonicEvent(CONTINUED_NOTE, pitch))
            for pitch in starts[step]:
                active.append(pitch)
                step_events.append(PolyphonicEvent(NEW_NOTE, pitch))
            events.extend(sorted(step_events, key=lambda e: e.pitch, reverse=True))
            events.append(PolyphonicEvent(STEP_END))
        events.append(PolyphonicEvent(END))
        return events

    def to_sequence(self, velocity=100, instrument=0, program=0, qpm=120.0, base_note_sequence=None):
        seconds_per_step = 60.0 / qpm / self.steps_per_quarter
        start_time = self.start_step * seconds_per_step
        if base_note_sequence is not None:
            sequence = copy.deepcopy(base_note_sequence)
        else:
            sequence = music_pb2.NoteSequence()
            sequence.tempos.add().qpm = qpm
            sequence.ticks_per_quarter = constants.STANDARD_PPQ
        step = 0
        pitch_start_steps = []
        pitches_to_end = []
        for i, event in enumerate(self.events):
            kind = event.event_type
            if kind == START or (kind == END and i < len(self.events) - 1):
                continue  # magenta ignores a START after the first event and an END before the last
            if kind == NEW_NOTE:
                pitch_start_steps.append((event.pitch, step))
            elif kind == CONTINUED_NOTE:
                if event.pitch in pitches_to_end:
                    pitches_to_end.remove(event.pitch)
            else:  # STEP_END, or the final END
                for pitch, start in list(pitch_start_steps):
                    if pitch in pitches_to_end:
                        pitches_to_end.remove(pitch)
                        pitch_start_steps.remove((pitch, start))
                        note = sequence.notes.add()
                        note.start_time = start * seconds_per_step + start_time
                        note.end_time = step * seconds_per_step + start_time
                        note.pitch, note.velocity, note.instrument, note.program = pitch, velocity, instrument, program
                step += 1
                pitches_to_end = [ps[0] for ps in pitch_start_steps]
        if pitch_start_steps:
            raise ValueError("sequence ended with notes still held (set_length first)")
        sequence.total_time = seconds_per_step * (step - 1) + start_time
        return sequence


def from_quantized(q, start_step: int = 0) -> PolyphonicSequence | None:
    """extract_polyphonic_sequences: one sequence, or None when the notes use more than one program."""
    sequences_lib.assert_is_relative_quantized_sequence(q)
    if len({n.program for n in q.notes}) > 1:
        return None
    return PolyphonicSequence(q, start_step=start_step)


class PrimerInjection:
    """magenta's ``_inject_melody`` (PolyphonyRNN's primer injection) worked out for every step at once.

    After an event that ends a step, magenta counts the sequence's STEP_ENDs and walks the primer
    (``melody``, whose step count starts at ``start_step``) to the first position where its own count
    equals that number, then injects the primer's events from there to its next STEP_END. ``table``
    holds that answer per step count, as (class index, event) pairs, so a generation looks it up
    (:meth:`follow`) instead of counting and walking at every step."""

    def __init__(self, melody, start_step: int, index):
        self.table: dict = {}
        count = start_step
        for j, event in enumerate(melody):
            if event.event_type == STEP_END:
                count += 1
            if count not in self.table:  # magenta stops at the first match
                out, at = [], j + 1
                while at < len(melody) and melody[at].event_type != STEP_END:
                    out.append(melody[at])
                    at += 1
                self.table[count] = tuple((index(e), e) for e in out)
        self.step_end = index(PolyphonicEvent(STEP_END))

    def follow(self, events):
        """``after(class index) -> ((index, event), ...)``: what to inject after each class sampled onto
        ``events`` (a generation's primer, itself injected already). Injected events hold no STEP_END,
        so the step count moves only with the sampled ones."""
        table, step_end = self.table, self.step_end
        steps = sum(1 for e in events if e.event_type == STEP_END)
        empty = ()

        def after(i):
            nonlocal steps
            if i != step_end:
                return empty
            steps += 1
            return table.get(steps, empty)

        return after


def events_json(events) -> list:
    """``[type]`` or ``[type, pitch]`` per event (pitches only where they mean something)."""
    return [
        [NAMES[e.event_type], int(e.pitch)] if e.event_type in WITH_PITCH else [NAMES[e.event_type]] for e in events
    ]
