"""NoteSequence <-> tensors give exactly magenta 2.1.4's converter results (compat MIDI + edge cases)."""

import json

import note_seq
import numpy as np
import pytest
from google.protobuf import json_format
from musicvae_support import FIX

from magenta_api_musicvae.converters import DrumsConverter, MelodyConverter

META = json.loads((FIX / "converters.json").read_text())
ARRAYS = np.load(FIX / "converters.npz")
CASES = sorted(k for k in META if k != "synthetic")


def load_source(name):
    if name.startswith("synthetic:"):
        return json_format.ParseDict(META["synthetic"][name.split(":", 1)[1]], note_seq.NoteSequence())
    return note_seq.midi_file_to_note_sequence(str(FIX / "midi" / name))


def notes_of(seq):
    return [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6), bool(n.is_drum)] for n in seq.notes]


def test_fixture_covers_every_midi_file_and_both_converters():
    files = {p.name for p in (FIX / "midi").glob("*.mid")}
    assert len(files) >= 10
    for kind in ("melody", "drums"):
        assert {k.split("/", 2)[2] for k in CASES if k.startswith(kind + "/all/")} >= files
    # the fixture has real content on both sides
    assert sum(META[k].get("count", 0) for k in CASES if k.startswith("melody/all")) > 100
    assert sum(META[k].get("count", 0) for k in CASES if k.startswith("drums/all")) > 15


@pytest.mark.parametrize("key", CASES)
def test_tensors_equal_magentas(key):
    kind, mode, name = key.split("/", 2)
    cls = MelodyConverter if kind == "melody" else DrumsConverter
    conv = cls(max_tensors=5 if mode == "default" else None)
    expected = META[key]
    assert "error" not in expected  # magenta converted every file (possibly to nothing)
    got = conv.to_tensors(load_source(name))
    assert len(got.inputs) == expected["count"]
    assert got.lengths == expected["lengths"]
    if expected["count"]:
        np.testing.assert_array_equal(np.stack(got.inputs), ARRAYS[f"{key}/inputs"].astype(bool))
        np.testing.assert_array_equal(np.stack(got.outputs), ARRAYS[f"{key}/outputs"].astype(bool))
    if expected.get("from_tensors"):
        back = conv.from_classes(np.stack(got.outputs).argmax(-1))
        assert [notes_of(s) for s in back] == [f["notes"] for f in expected["from_tensors"]]
        assert [s.total_time for s in back] == pytest.approx([f["total_time"] for f in expected["from_tensors"]])
        assert all(s.tempos[0].qpm == 120 and s.ticks_per_quarter == 220 for s in back)


def test_depths():
    mel, dr = MelodyConverter(), DrumsConverter()
    assert (mel.input_depth, mel.output_depth, mel.num_steps) == (90, 90, 32)
    assert (dr.input_depth, dr.output_depth, dr.num_steps) == (10, 512, 32)


def test_windows_are_in_time_order_and_match_tensors():
    conv = MelodyConverter(max_tensors=None)
    ns = load_source("synthetic:mono_4bar")
    windows = conv.windows(ns)
    assert [w.start_step for w in windows] == sorted(w.start_step for w in windows)
    assert windows[0].start_step == 0 and len(windows) == 3
    tensors = {conv.encode_window(w)[1].tobytes() for w in windows}
    assert tensors == {t.astype(np.float32).tobytes() for t in conv.to_tensors(ns).outputs}


def test_drum_classes_round_trip():
    conv = DrumsConverter()
    classes = np.array([[0, 1, 2, 3, 511, 256, 5] + [0] * 25])
    seq = conv.from_classes(classes)[0]
    by_step = {}
    for n in seq.notes:
        assert n.is_drum and n.velocity == 80
        by_step.setdefault(round(n.start_time / 0.125), set()).add(n.pitch)
    assert by_step[1] == {36} and by_step[2] == {38} and by_step[3] == {36, 38}
    assert by_step[4] == {36, 38, 42, 46, 45, 48, 50, 49, 51} and by_step[5] == {51} and by_step[6] == {36, 42}
    windows = conv.windows(seq)
    assert len(windows) == 0  # a bar of silence at the end: only 1 bar + padding, under 2 bars
    back = conv.from_classes(classes)
    assert notes_of(back[0]) == notes_of(seq)


def test_melody_classes_decode_pitches_and_rests():
    conv = MelodyConverter()
    classes = np.zeros((1, 32), int)
    classes[0, 0], classes[0, 4], classes[0, 6] = 2 + 60 - 21, 1, 2 + 64 - 21  # C4, off, E4 to the end
    seq = conv.from_classes(classes, qpm=60)[0]
    assert notes_of(seq) == [[60, 80, 0.0, 1.0, False], [64, 80, 1.5, 8.0, False]]
    assert seq.tempos[0].qpm == 60


def test_explain_says_why():
    mel = MelodyConverter()
    assert "too short" in mel.explain(load_source("synthetic:mono_1bar"))
    gap = note_seq.NoteSequence()
    gap.CopyFrom(load_source("synthetic:mono_2bar"))
    for n in gap.notes:
        if n.start_time >= 2.0:
            n.start_time += 2.0
            n.end_time += 2.0
    gap.total_time = max(n.end_time for n in gap.notes)
    assert mel.windows(gap) == []
    assert "2-bar stretch" in mel.explain(gap)
    assert "21..108" in mel.explain(load_source("synthetic:out_of_range_2bar"))
    assert "4/4" in mel.explain(load_source("synthetic:waltz_3bar"))
    assert "drum" in DrumsConverter().explain(load_source("synthetic:mono_2bar"))
