"""Where Magenta 2.1.4's sequence generators start a continuation, and what they generate from there.

Run in the reference environment (never imported by the service), after melody_rnn_reference.py:

    TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 .venv-ref/bin/python reference/melody_rnn_start_reference.py

For each config it loads the committed bundle ``tests/fixtures/melody_rnn/<name>/<name>.mag`` (written by
melody_rnn_reference.py) into magenta's own ``MelodyRnnSequenceGenerator`` / ``DrumsRnnSequenceGenerator``
and continues primers in the three forms a client sends:

- Magenta's event lists, as ``melody_rnn_generate --primer_melody`` turns them into a NoteSequence
  (``Melody(events).to_sequence(qpm=120)``), lasting their ``len(events)`` steps (``total_time``);
- NoteSequence JSON that ends on a step boundary, just after one (rounds down) and just before one
  (rounds up), with trailing silence, with another tempo, and starting after a bar of silence;
- MIDI: real files (copies of ../shared/compat/midi, see that folder's README for their sources) and
  MIDI that note-seq itself writes from an event list.

The generate section starts where the primer ends (its ``total_time``, never before its last note ends:
the earliest start the generators accept) and ends at ``END_STEP``. Each case records the step magenta
starts at (``quantize_to_step(start_time, steps_per_second, quantize_cutoff=0)``), the first step of the
track it extracts, and the notes of a greedy (temperature 1e-6: a one-hot softmax) and a seeded
(``np.random.seed`` before the call) continuation. Written to ``tests/fixtures/melody_rnn/<name>/start.json``;
the bundles and the other fixtures are only read.
"""

import base64
import copy
import json
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import note_seq
import numpy as np
from google.protobuf import json_format
from magenta.models.shared import sequence_generator_bundle
from magenta.pipelines import drum_pipelines, melody_pipelines
from melody_rnn_reference import CONFIGS, DRUM_PRIMERS, MELODY_PRIMERS, OUT, make_config, make_generator
from note_seq.protobuf import generator_pb2

MIDI_DIR = os.path.join(OUT, "midi")
END_STEP = 64  # the generate section ends here (absolute steps)
SAMPLE = (1, 1.0)  # (seed, temperature) of the seeded continuation


def _notes(seq):
    return [[n.pitch, round(n.start_time, 6), round(n.end_time, 6), bool(n.is_drum)] for n in seq.notes]


def _json_sequence(notes, qpm=120.0, total_steps=None, drums=False):
    """NoteSequence JSON from (pitch, start_step, end_step) with fractional steps allowed."""
    step = 60.0 / qpm / 4
    seq = note_seq.NoteSequence()
    seq.ticks_per_quarter = 220
    seq.tempos.add(qpm=qpm)
    for pitch, start, end in notes:
        seq.notes.add(
            pitch=pitch,
            velocity=100,
            start_time=start * step,
            end_time=end * step,
            is_drum=drums,
            instrument=9 if drums else 0,
        )
    seq.total_time = (max(e for _, _, e in notes) if total_steps is None else total_steps) * step
    return json_format.MessageToDict(seq)


def _midi_file(name):
    with open(os.path.join(MIDI_DIR, name), "rb") as f:
        return base64.b64encode(f.read()).decode()


def _written_midi(seq):
    """MIDI bytes as note-seq writes them (pretty_midi underneath), base64."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "primer.mid")
        note_seq.sequence_proto_to_midi_file(seq, path)
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()


def melody_cases():
    twinkle, offs = MELODY_PRIMERS["twinkle"], MELODY_PRIMERS["offs"]
    quarter_notes = [(60 + 2 * i, 4 * i, 4 * i + 4) for i in range(4)]  # ends on step 16
    return {
        "events_held_to_the_end": ("events", twinkle, "reference.json primer twinkle"),
        "events_ending_with_a_note_off": ("events", offs, "reference.json primer offs"),
        "events_single_note": ("events", [60], "melody_rnn_generate's default primer"),
        "json_on_a_boundary": ("json", _json_sequence(quarter_notes), "four quarter notes, last ends on step 16"),
        "json_just_after_a_boundary": (
            "json",
            _json_sequence(quarter_notes[:-1] + [(66, 12, 15.44)]),
            "last note ends at step 15.44 (quantized to 15)",
        ),
        "json_just_before_a_boundary": (
            "json",
            _json_sequence(quarter_notes[:-1] + [(66, 12, 15.76)]),
            "last note ends at step 15.76 (quantized to 16)",
        ),
        "json_trailing_silence": (
            "json",
            _json_sequence(quarter_notes, total_steps=20),
            "notes end on step 16, total_time at step 20",
        ),
        "json_tempo_90": ("json", _json_sequence(quarter_notes, qpm=90.0), "on a boundary at 90 qpm"),
        "json_after_a_bar_of_silence": (
            "json",
            _json_sequence([(p, s + 16, e + 16) for p, s, e in quarter_notes]),
            "first note on step 16 (the track starts at bar 1), last ends on step 32",
        ),
        "midi_melody_rnn_primer": ("midi", _midi_file("melody_rnn_primer.mid"), "midi/melody_rnn_primer.mid"),
        "midi_melody": ("midi", _midi_file("melody.mid"), "midi/melody.mid"),
        "midi_example_off_a_boundary": ("midi", _midi_file("example.mid"), "midi/example.mid (ends at step 31.8)"),
        "midi_written_from_events": (
            "midi",
            _written_midi(note_seq.Melody(twinkle).to_sequence(qpm=120)),
            "note_seq.sequence_proto_to_midi_file(Melody(twinkle).to_sequence(qpm=120))",
        ),
        "json_one_bar_of_silence": ("json", _json_sequence([], total_steps=16), "no notes, total_time one bar"),
        # A later start, as a request's start_step asks for it (the generate section half a step before it).
        "events_ending_with_a_note_off_from_its_end": ("events", offs, "offs, started on step 19", 19),
        "json_on_a_boundary_from_step_20": ("json", _json_sequence(quarter_notes), "started on step 20", 20),
        "midi_melody_from_step_16": ("midi", _midi_file("melody.mid"), "midi/melody.mid, started on step 16", 16),
    }


def drum_cases():
    beat = DRUM_PRIMERS["beat"]
    hits = [(36, 0, 1), (42, 2, 3), (38, 4, 5), (42, 6, 7), (36, 8, 9), (42, 10, 11), (38, 12, 13), (42, 14, 16)]
    return {
        "events_ending_with_a_rest": ("events", beat, "reference.json primer beat"),
        "events_ending_with_a_hit": ("events", beat[:-1], "reference.json primer beat without its last rest"),
        "json_on_a_boundary": ("json", _json_sequence(hits, drums=True), "eighth-note beat, last hit ends on 16"),
        "json_just_after_a_boundary": (
            "json",
            _json_sequence(hits[:-1] + [(42, 14, 15.3)], drums=True),
            "last hit ends at step 15.3",
        ),
        "json_just_before_a_boundary": (
            "json",
            _json_sequence(hits[:-1] + [(42, 14, 15.8)], drums=True),
            "last hit ends at step 15.8",
        ),
        "midi_melody_rnn_primer": ("midi", _midi_file("melody_rnn_primer.mid"), "midi/melody_rnn_primer.mid"),
        "midi_written_from_events": (
            "midi",
            _written_midi(note_seq.DrumTrack([frozenset(e) for e in beat]).to_sequence(qpm=120)),
            "note_seq.sequence_proto_to_midi_file(DrumTrack(beat).to_sequence(qpm=120))",
        ),
        "json_one_bar_of_silence": ("json", _json_sequence([], total_steps=16, drums=True), "no notes, one bar"),
        "events_ending_with_a_rest_from_its_end": ("events", beat, "beat, started on step 16", 16),
        "json_on_a_boundary_from_step_20": ("json", _json_sequence(hits, drums=True), "started on step 20", 20),
    }


def primer_sequence(name, form, primer):
    """The NoteSequence magenta's generator is given for a primer in one of the request forms."""
    if form == "events":
        if CONFIGS[name][2]:
            seq = note_seq.DrumTrack([frozenset(e) for e in primer]).to_sequence(qpm=120)
        else:
            seq = note_seq.Melody(primer).to_sequence(qpm=120)
        seq.total_time = len(primer) * 60.0 / 120 / 4  # the list lasts all its steps, rests included
        return seq
    if form == "json":
        return json_format.ParseDict(primer, note_seq.NoteSequence())
    return note_seq.midi_to_note_sequence(base64.b64decode(primer))


def extracted_start(name, quantized, start_step):
    """The first step of the track magenta's generator extracts (its own extraction call), or of the
    empty track it makes one step before the start when there is nothing to extract."""
    if CONFIGS[name][2]:
        tracks, _ = drum_pipelines.extract_drum_tracks(
            quantized, search_start_step=0, min_bars=0, gap_bars=float("inf"), ignore_is_drum=True
        )
    else:
        tracks, _ = melody_pipelines.extract_melodies(
            quantized,
            search_start_step=0,
            min_bars=0,
            min_unique_pitches=1,
            gap_bars=float("inf"),
            ignore_polyphonic_notes=True,
        )
    assert len(tracks) <= 1
    return int(tracks[0].start_step) if tracks and tracks[0] else max(0, start_step - 1)


def continue_with(gen, seq, start_time, end_time, temperature):
    opts = generator_pb2.GeneratorOptions()
    opts.generate_sections.add(start_time=start_time, end_time=end_time)
    opts.args["temperature"].float_value = temperature
    return gen.generate(seq, opts)


def run_config(name):
    config = make_config(name)
    bundle = sequence_generator_bundle.read_bundle_file(os.path.join(OUT, name, f"{name}.mag"))
    gen = make_generator(name, copy.deepcopy(config), bundle=bundle)
    gen.initialize()
    # The bundle is the model reference.json was made with: its own sequence-generator case again.
    with open(os.path.join(OUT, name, "reference.json")) as f:
        reference = json.load(f)
    known = reference["sequence_generator"]
    seq = json_format.ParseDict(known["primer_sequence"], note_seq.NoteSequence())
    step = 60.0 / 120 / config.steps_per_quarter
    again = continue_with(gen, seq, (known["start_step"] - 0.5) * step, reference["num_steps"] * step, 1e-6)
    assert _notes(again) == known["notes"], name

    cases = {}
    for case, (form, primer, source, *requested) in (drum_cases() if CONFIGS[name][2] else melody_cases()).items():
        seq = primer_sequence(name, form, primer)
        qpm = seq.tempos[0].qpm if seq.tempos else note_seq.DEFAULT_QUARTERS_PER_MINUTE
        steps_per_second = note_seq.steps_per_quarter_to_steps_per_second(config.steps_per_quarter, qpm)
        # The earliest start the generators accept: the primer's end, never before its last note ends.
        end_time = max([seq.total_time] + [n.end_time for n in seq.notes])
        start_time = (requested[0] - 0.5) / steps_per_second if requested else end_time
        section_end = (END_STEP + 0.5) / steps_per_second  # quantize_cutoff=1 rounds down: END_STEP exactly
        quantized = note_seq.quantize_note_sequence(seq, config.steps_per_quarter)
        greedy = continue_with(gen, seq, start_time, section_end, 1e-6)
        np.random.seed(SAMPLE[0])
        sampled = continue_with(gen, seq, start_time, section_end, SAMPLE[1])
        end_steps = end_time * steps_per_second
        start_step = int(note_seq.quantize_to_step(start_time, steps_per_second, quantize_cutoff=0))
        cases[case] = {
            "form": form,
            "source": source,
            "primer": primer,
            "requested_start_step": requested[0] if requested else None,
            "qpm": qpm,
            "primer_end_time": end_time,
            "end_steps": end_steps,
            "start_time": start_time,
            "end_time": section_end,
            "on_a_boundary": bool(abs(end_steps - round(end_steps)) < 1e-9),
            "primer_end_step": int(quantized.total_quantized_steps),
            "events_start_step": extracted_start(name, quantized, start_step),
            "start_step": start_step,
            "end_step": int(note_seq.quantize_to_step(section_end, steps_per_second, quantize_cutoff=1.0)),
            "greedy": {"notes": _notes(greedy), "total_time": greedy.total_time},
            "sample": {
                "seed": SAMPLE[0],
                "temperature": SAMPLE[1],
                "notes": _notes(sampled),
                "total_time": sampled.total_time,
            },
        }
        assert not requested or cases[case]["start_step"] == requested[0], case
    gen.close()
    ref = {"config": name, "end_step": END_STEP, "cases": cases}
    text = json.dumps(ref, indent=1)
    # One line per note and per event: the innermost lists of numbers.
    text = re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    with open(os.path.join(OUT, name, "start.json"), "w") as f:
        f.write(text + "\n")
    boundary = sum(c["on_a_boundary"] for c in cases.values())
    print(name, "ok:", len(cases), "cases,", boundary, "ending on a step boundary")


def main(argv):
    for name in argv[1:] or list(CONFIGS):
        run_config(name)


if __name__ == "__main__":
    main(sys.argv)
