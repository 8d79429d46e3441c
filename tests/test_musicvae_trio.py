"""The 16-bar melody and trio converters against magenta 2.1.4's on real MIDI and synthetic trios, both
directions (fixtures from reference/musicvae_hier_reference.py --only converters)."""

import copy
import json
from functools import cache

import note_seq
import numpy as np
import pytest
from google.protobuf import json_format
from musicvae_support import FIX

from magenta_api_musicvae.converters import MelodyConverter
from magenta_api_musicvae.trio import TrioConverter


@cache
def fixtures():
    meta = json.loads((FIX / "converters_hier.json").read_text())
    return meta, dict(np.load(FIX / "converters_hier.npz"))


def sources():
    meta, _ = fixtures()
    names = sorted(p.name for p in (FIX / "midi").glob("*.mid")) + [f"synthetic:{k}" for k in meta["synthetic"]]
    return names


def load_sequence(name):
    meta, _ = fixtures()
    if name.startswith("synthetic:"):
        return json_format.ParseDict(meta["synthetic"][name[10:]], note_seq.NoteSequence())
    return note_seq.midi_file_to_note_sequence(str(FIX / "midi" / name))


CONVERTERS = {
    "mel_16bar": lambda mt: MelodyConverter(valid_programs=None, slice_bars=16, max_tensors=mt),
    "trio_16bar": lambda mt: TrioConverter(slice_bars=16, max_tensors=mt),
    "trio_4bar": lambda mt: TrioConverter(slice_bars=4, max_tensors=mt),
}


def classes_of(conv, tensors):
    y = np.stack(tensors.outputs).astype(np.float32)
    splits = getattr(conv, "splits", [conv.output_depth])
    offsets = np.cumsum([0, *splits[:-1]])
    return np.stack([y[..., o : o + d].argmax(-1) for o, d in zip(offsets, splits)], -1)


@pytest.mark.parametrize("kind", list(CONVERTERS))
@pytest.mark.parametrize("mode", ["default", "all"])
def test_tensors_match_magenta(kind, mode):
    meta, arrays = fixtures()
    for name in sources():
        key = f"{kind}/{mode}/{name}"
        conv = CONVERTERS[kind](5 if mode == "default" else None)
        t = conv.to_tensors(load_sequence(name))
        assert len(t.outputs) == meta[key]["count"], key
        if t.outputs:
            np.testing.assert_array_equal(classes_of(conv, t), arrays[key], err_msg=key)
            np.testing.assert_array_equal(np.stack(t.inputs), np.stack(t.outputs))


@pytest.mark.parametrize("kind", ["trio_16bar", "trio_4bar"])
def test_decoded_sequences_match_magenta(kind):
    meta, arrays = fixtures()
    conv = CONVERTERS[kind](None)
    checked = 0
    for name in sources():
        key = f"{kind}/all/{name}"
        if key not in arrays:
            continue
        back = conv.from_classes(arrays[key][:3])
        got = [
            sorted(
                [n.instrument, n.program, n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6), n.is_drum]
                for n in s.notes
            )
            for s in back
        ]
        assert got == meta[key]["from_tensors"], key
        checked += 1
    assert checked >= 4


def test_windows_say_which_instruments_and_why_not():
    conv = TrioConverter(slice_bars=16)
    ns = load_sequence("synthetic:trio_two_melodies")
    windows = conv.windows(ns)
    assert {w.instruments for w in windows} == {(0, 1, 9), (2, 1, 9)}
    assert all(w.classes.shape == (256, 3) for w in windows)
    no_bass = copy.deepcopy(ns)
    del no_bass.notes[:]
    no_bass.notes.extend(n for n in ns.notes if n.instrument != 1)
    assert not conv.windows(no_bass) and "no bass" in conv.explain(no_bass)
    assert "16-bar stretch" in conv.explain(load_sequence("synthetic:trio_4bar"))
    assert "4/4" in conv.explain(load_sequence("synthetic:trio_waltz"))
