"""Multitrack MusicVAE (hier-multiperf_vel_1bar_*) against magenta 2.1.4: the engine on its hierarchy of
8 tracks x 64 events with per-track lengths, and MultiInstrumentPerformanceConverter on real and
synthetic multi-instrument MIDI, both directions (reference/musicvae_hier_reference.py)."""

import json
from functools import cache

import note_seq
import numpy as np
import pytest
from google.protobuf import json_format
from musicvae_support import FIX, load

from magenta_api_musicvae.hierarchy import VAEModel
from magenta_api_musicvae.multitrack import MultitrackConverter

TOL = 1e-4
CHORD_SOURCES = {"synthetic:four_parts_sustain", "synthetic:trio_4bar", "synthetic:nine_parts", "melody.mid"}


@pytest.fixture(scope="module", params=["multiperf", "multiperf_chords"])
def model(request):
    variables, ref, _ = load(request.param)
    return VAEModel(variables, level_lengths=[8, 64], padded_segments=True), ref


def test_engine_matches_magenta(model):
    m, ref = model
    controls = ref.get("controls")
    mu, sigma = m.encode(ref["inputs"], controls)  # track lengths read from the zero padding
    np.testing.assert_allclose(mu, ref["mu"], atol=TOL, rtol=0)
    np.testing.assert_allclose(sigma, ref["sigma"], atol=TOL, rtol=0)
    given, _ = m.encode(ref["inputs"], controls, lengths=ref["lengths"])
    np.testing.assert_allclose(given, mu, atol=1e-6, rtol=0)
    logits = m.decode_logits(ref["z"], ref["targets"], controls)
    lengths = ref["lengths"][0]  # TF's outputs of a track are as long as its (batch-wide) length
    got = np.concatenate([logits[:, k * 64 : k * 64 + n] for k, n in enumerate(lengths)], 1)
    np.testing.assert_allclose(got, ref["logits"], atol=TOL, rtol=0)
    classes, greedy = m.sample(ref["z"], 512, 0, controls=None if controls is None else controls[0], return_logits=True)
    np.testing.assert_array_equal(classes, ref["greedy"])
    np.testing.assert_allclose(greedy, ref["greedy_logits"], atol=TOL, rtol=0)


@cache
def fixtures():
    return (
        json.loads((FIX / "converters_multitrack.json").read_text()),
        dict(np.load(FIX / "converters_multitrack.npz")),
    )


@cache
def sources():
    meta, _ = fixtures()
    out = {p.name: note_seq.midi_file_to_note_sequence(str(p)) for p in sorted((FIX / "midi").glob("*.mid"))}
    out.update(
        {f"synthetic:{k}": json_format.ParseDict(v, note_seq.NoteSequence()) for k, v in meta["synthetic"].items()}
    )
    return out


def row_classes(x):
    x = np.asarray(x)
    return np.where(x.any(-1), x.argmax(-1), -1)


@pytest.mark.parametrize("chords", [False, True])
def test_converter_matches_magenta(chords):
    meta, arrays = fixtures()
    name = "hier-multiperf_vel_1bar_med" + ("_chords" if chords else "")
    conv = MultitrackConverter(chord_encoding=note_seq.TriadChordOneHotEncoding() if chords else None)
    checked = 0
    for fname, ns in sources().items():
        if chords and fname not in CHORD_SOURCES:  # note-seq's chord inference takes seconds per piece
            continue
        key = f"{name}/{fname}"
        t = conv.to_tensors(ns)
        assert len(t.inputs) == meta[key]["count"], key
        if not t.inputs:
            continue
        np.testing.assert_array_equal(
            np.stack([row_classes(x) for x in t.inputs]), arrays[f"{key}/inputs"], err_msg=key
        )
        if chords:
            np.testing.assert_array_equal(
                np.stack([row_classes(c) for c in t.controls]), arrays[f"{key}/controls"], err_msg=key
            )
        back = conv.from_classes(np.maximum(arrays[f"{key}/inputs"][:2], 0))
        got = [
            sorted(
                [n.instrument, n.program, n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6), n.is_drum]
                for n in b.notes
            )
            for b in back
        ]
        assert got == meta[key]["from_tensors"], key
        checked += 1
    assert checked >= (2 if chords else 6)


def test_windows_and_reasons():
    conv = MultitrackConverter()
    seqs = sources()
    w = conv.windows(seqs["synthetic:four_parts_sustain"])
    assert len(w) == 3 and w[0].inputs.shape == (512, conv.output_depth) and len(w[0].instruments) == 5
    assert not conv.windows(seqs["synthetic:nine_parts"]) and "2 to 8" in conv.explain(seqs["synthetic:nine_parts"])
    assert "2 to 8 instruments in a bar" in conv.explain(seqs["synthetic:one_part"])


def family(name, config):
    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import ModelSpec
    from magenta_api_musicvae.family import MusicVAEFamily

    spec = ModelSpec(id=name, family="musicvae", hparams={"config": config})
    return MusicVAEFamily(spec, Checkpoint(load(name)[0], "native", {}, "sha"))


def test_multitrack_through_the_family():
    from musicvae_support import request

    from magenta_api.errors import Unprocessable
    from magenta_api.music import sequence_to_json
    from magenta_api.testing import run_family

    fam = family("multiperf", "hier-multiperf_vel_1bar_med")
    assert fam.converter.kind == "multitrack" and fam.engine.padded_segments
    (s,) = run_family(fam, request("sample", seed=3, temperature=1.0)).sequences
    assert s.total_time >= 2.0 and s.notes and {n.instrument for n in s.notes} <= set(range(8))
    _, ref, _ = load("multiperf")
    dec = run_family(fam, request("decode", temperature=0, z=ref["z"][:1].tolist())).sequences[0]
    want = fam.converter.from_classes(ref["greedy"][:1, :, 0])[0]
    assert [(n.instrument, n.pitch, n.start_time) for n in dec.notes] == [
        (n.instrument, n.pitch, n.start_time) for n in want.notes
    ]
    four = sequence_to_json(sources()["synthetic:four_parts_sustain"])
    enc = run_family(fam, request("encode", inputs=[four]))
    x = fam.converter.windows(sources()["synthetic:four_parts_sustain"])[0].inputs
    np.testing.assert_allclose(enc.extra["mu"], fam.engine.encode(x[None])[0], atol=1e-6)
    assert enc.extra["inputs_used"][0]["windows"] == 3
    long = run_family(fam, request("sample", seed=3, bars=4, temperature=0.5))
    assert long.extra["long_form"]["chunks"] == 4 and 6.0 < long.sequences[0].total_time <= 8.0
    with pytest.raises(Unprocessable, match="2 to 8"):
        run_family(fam, request("encode", inputs=[sequence_to_json(sources()["synthetic:one_part"])]))


def test_multitrack_chords_follow_the_request():
    from musicvae_support import request

    from magenta_api.testing import run_family

    fam = family("multiperf_chords", "hier-multiperf_vel_1bar_med_chords")
    out = run_family(fam, request("sample", seed=1, chords=[{"symbol": "C", "step": 0}, {"symbol": "G", "step": 8}]))
    (s,) = out.sequences
    assert [(a.time, a.text) for a in s.text_annotations] == [(0.0, "C"), (1.0, "G")]
    symbols = fam._multitrack_symbols(
        request("sample", chords=[{"symbol": "C", "step": 0}, {"symbol": "G", "step": 8}]), 1
    )
    assert len(symbols) == 512 and symbols[0] == "N.C." and symbols[1:32] == ["C"] * 31 and symbols[63] == "G"
    inferred = run_family(fam, request("encode", inputs=[sequence_to_json_of("synthetic:four_parts_sustain")]))
    given = run_family(
        fam, request("encode", inputs=[sequence_to_json_of("synthetic:four_parts_sustain")], chords=["Am"])
    )
    assert inferred.extra["mu"] != given.extra["mu"]
    long = run_family(fam, request("sample", seed=1, bars=2, chords=["C", "F"]))
    assert [a.text for a in long.sequences[0].text_annotations] == ["C", "F"]


def sequence_to_json_of(name):
    from magenta_api.music import sequence_to_json

    return sequence_to_json(sources()[name])
