"""The musicvae family: modes, hparams, and 422s for inputs the converter cannot use."""

import base64
import json

import jsonschema
import numpy as np
import pytest
import yaml
from musicvae_support import FIX, drums, family, melody, request, seq_json

from magenta_api.app import status_of
from magenta_api.errors import Unprocessable
from magenta_api.music import sequence_from_json, sequence_to_midi
from magenta_api.testing import run_family
from magenta_api_musicvae.family import MusicVAEFamily, slerp

# note-seq's testdata: 18 instruments, drums on instrument 3, a tempo change (so two pieces)
COMPLEX = FIX / "midi" / "example_complex.mid"
MAGENTA = json.loads((FIX / "converters.json").read_text())
MAGENTA_TENSORS = np.load(FIX / "converters.npz")


@pytest.fixture(scope="module")
def mel():
    return family("mel_tiny")


@pytest.fixture(scope="module")
def drm():
    return family("drums_tiny")


def classes_of(fam, seqs):
    """Back to class indices through the converter (every output is exactly one 2-bar window)."""
    out = []
    for s in seqs:
        w = fam.converter.windows(s)
        out.append(fam.converter.encode_window(w[0])[1].argmax(-1) if w else None)
    return out


def test_sample_shapes_and_seed_reproducibility(mel):
    a = run_family(mel, request("sample", num_outputs=4, seed=11)).sequences
    b = run_family(mel, request("sample", num_outputs=4, seed=11)).sequences
    c = run_family(mel, request("sample", num_outputs=4, seed=12)).sequences
    assert len(a) == 4
    assert [s.SerializeToString() for s in a] == [s.SerializeToString() for s in b]
    assert [s.SerializeToString() for s in a] != [s.SerializeToString() for s in c]
    for s in a:
        assert s.total_time == pytest.approx(4.0)  # 2 bars at 120 qpm, even with a trailing rest
        assert s.tempos[0].qpm == 120 and s.ticks_per_quarter == 220
        assert all(21 <= n.pitch <= 108 and not n.is_drum for n in s.notes)


def test_sample_length_and_qpm(drm):
    req = request("sample", num_outputs=2, seed=3, length=16)
    req.qpm = 60.0
    seqs = run_family(drm, req).sequences
    assert all(s.total_time == pytest.approx(4.0) for s in seqs)  # 16 steps at 60 qpm
    assert all(n.is_drum and n.end_time <= 4.0 for s in seqs for n in s.notes)
    with pytest.raises(Unprocessable, match="over this model's 32 steps"):
        run_family(drm, request("sample", length=33))


def test_sample_at_temperature_zero_is_the_argmax_decode(mel):
    seqs = run_family(mel, request("sample", num_outputs=3, temperature=0, seed=9)).sequences
    z = np.random.Generator(np.random.PCG64(np.random.SeedSequence(9))).standard_normal((3, mel.engine.z_size))
    expected = mel.engine.sample(z.astype(np.float32), 32, 0)
    got = mel.converter.from_classes(expected)
    assert [[(n.pitch, n.start_time) for n in s.notes] for s in seqs] == [
        [(n.pitch, n.start_time) for n in s.notes] for s in got
    ]


def test_encode_returns_z_mu_sigma_like_the_engine(mel):
    inputs = [melody(2), melody(2, offset=5)]
    res = run_family(mel, request("encode", inputs=inputs, seed=1))
    assert res.sequences == []
    mu, sigma, z = (np.array(res.extra[k]) for k in ("mu", "sigma", "z"))
    assert mu.shape == sigma.shape == z.shape == (2, 16) and res.extra["z_size"] == 16
    x = np.stack([mel.converter.encode_window(mel.converter.windows(sequence_from_json(i))[0])[0] for i in inputs])
    emu, esigma = mel.engine.encode(x)
    np.testing.assert_allclose(mu, emu, atol=1e-6)
    np.testing.assert_allclose(sigma, esigma, atol=1e-6)
    assert np.abs(z - mu).max() > 0 and np.all(np.abs(z - mu) < 6 * sigma)
    assert res.extra["inputs_used"][0] == {
        "windows": 1,
        "piece": 0,
        "start_step": 0,
        "instrument": 0,
        "instruments": [0],
        "program": 0,
        "name": None,
    }


def test_base64_midi_input_and_longer_inputs_use_their_first_window(mel):
    midi = base64.b64encode(sequence_to_midi(sequence_from_json(melody(4)))).decode()
    res = run_family(mel, request("encode", inputs=[midi, melody(2)], seed=1))
    assert res.extra["inputs_used"][0]["windows"] == 3
    first = run_family(mel, request("encode", inputs=[melody(2)], seed=1)).extra["mu"][0]
    np.testing.assert_allclose(res.extra["mu"][0], first, atol=1e-5)  # melody(4) starts with melody(2)


def test_decode_reproduces_encode_then_decode(mel):
    mu = run_family(mel, request("encode", inputs=[melody(2)])).extra["mu"]
    res = run_family(mel, request("decode", z=mu + mu, temperature=0))
    assert len(res.sequences) == 2
    expected = mel.engine.sample(np.array(mu, np.float32), 32, 0)
    assert classes_of(mel, res.sequences)[0].tolist() == expected[0].tolist()
    with pytest.raises(Unprocessable, match="16 numbers"):
        run_family(mel, request("decode", z=[[0.0] * 15]))
    with pytest.raises(Unprocessable, match="decode needs"):
        run_family(mel, request("decode"))


def test_interpolate_endpoints_are_the_reconstructions(mel):
    a, b = melody(2), melody(2, offset=7)
    res = run_family(mel, request("interpolate", inputs=[a, b], num_outputs=5, temperature=0))
    assert len(res.sequences) == 5
    mu = np.array(run_family(mel, request("encode", inputs=[a, b])).extra["mu"], np.float32)
    recon = mel.engine.sample(mu, 32, 0)
    got = classes_of(mel, res.sequences)
    assert got[0].tolist() == recon[0].tolist() and got[-1].tolist() == recon[1].tolist()
    assert got[0].tolist() != got[-1].tolist()
    with pytest.raises(Unprocessable, match="exactly 2 inputs"):
        run_family(mel, request("interpolate", inputs=[a], num_outputs=3))
    with pytest.raises(Unprocessable, match="num_outputs >= 2"):
        run_family(mel, request("interpolate", inputs=[a, b], num_outputs=1))


def test_slerp_matches_magentas_formula_and_keeps_ends():
    rng = np.random.default_rng(0)
    p0, p1 = rng.standard_normal(8), rng.standard_normal(8)
    np.testing.assert_allclose(slerp(p0, p1, 0.0), p0)
    np.testing.assert_allclose(slerp(p0, p1, 1.0), p1)
    omega = np.arccos(np.dot(p0 / np.linalg.norm(p0), p1 / np.linalg.norm(p1)))
    mid = np.sin(0.5 * omega) / np.sin(omega) * (p0 + p1)
    np.testing.assert_allclose(slerp(p0, p1, 0.5), mid)
    np.testing.assert_allclose(slerp(p0, 2 * p0, 0.5), 1.5 * p0)  # parallel: no NaN


def test_similar(mel):
    a = melody(2)
    mu = np.array(run_family(mel, request("encode", inputs=[a])).extra["mu"], np.float32)
    same = run_family(mel, request("similar", inputs=[a], similarity=1.0, temperature=0, num_outputs=3, seed=4))
    recon = mel.engine.sample(mu, 32, 0)[0].tolist()
    assert [c.tolist() for c in classes_of(mel, same.sequences)] == [recon] * 3
    assert same.extra["similarity"] == 1.0
    # similarity 0 is a plain sample with the same seed (z = N(0, 1) noise, drawn first)
    zero = run_family(mel, request("similar", primer=a, similarity=0.0, num_outputs=2, seed=4))
    plain = run_family(mel, request("sample", num_outputs=2, seed=4))
    assert [s.SerializeToString() for s in zero.sequences] == [s.SerializeToString() for s in plain.sequences]
    with pytest.raises(Unprocessable, match="exactly one input"):
        run_family(mel, request("similar", inputs=[a, a]))


def test_similarity_moves_z_toward_the_input(mel):
    a = melody(2)
    mu = np.array(run_family(mel, request("encode", inputs=[a])).extra["mu"][0])
    rng_noise = np.random.Generator(np.random.PCG64(np.random.SeedSequence(8))).standard_normal((1, 16))
    for s in (0.2, 0.9):
        z = s * mu + (1 - s) * rng_noise
        res = run_family(mel, request("similar", inputs=[a], similarity=s, temperature=0, seed=8))
        assert classes_of(mel, res.sequences)[0].tolist() == mel.engine.sample(z.astype(np.float32), 32, 0)[0].tolist()


def test_drum_model_modes(drm):
    res = run_family(drm, request("interpolate", inputs=[drums(2), drums(4)], num_outputs=3, seed=2))
    assert len(res.sequences) == 3 and all(n.is_drum for s in res.sequences for n in s.notes)
    enc = run_family(drm, request("encode", inputs=[drums(2)]))
    assert np.array(enc.extra["mu"]).shape == (1, 12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (melody(1), "too short: this model needs 2 bars"),
        (seq_json([(60, 0, 8), (64, 0, 8), (67, 8, 16)] + [(62, t, t + 1) for t in range(16, 32)]), "polyphonic input"),
        (seq_json([(110, t, t + 2) for t in range(0, 32, 2)]), r"outside this model's range 21\.\.108"),
        (seq_json([(60 + t % 5, t, t + 2) for t in range(0, 48, 2)], numerator=3), "4/4"),
        (drums(2), "no melody notes"),
    ],
)
def test_unusable_melody_inputs_are_422_with_a_reason(mel, bad, message):
    with pytest.raises(Unprocessable, match=message) as err:
        run_family(mel, request("encode", inputs=[melody(2), bad]))
    assert status_of(err.value) == 422
    assert err.value.details["field"] == "/inputs/1"


def test_lenient_inputs_follow_magenta(mel):
    chords = seq_json([(p, t, t + 4) for t in range(0, 32, 4) for p in (60, 64, 67)])
    with pytest.raises(Unprocessable):
        run_family(mel, request("encode", inputs=[chords]))
    res = run_family(mel, request("encode", inputs=[chords], strict_inputs=False))
    assert res.extra["inputs_used"][0]["windows"] == 1


def test_drum_model_refuses_melodies(drm):
    with pytest.raises(Unprocessable, match="no drum notes") as err:
        run_family(drm, request("similar", primer=melody(2)))
    assert err.value.details["field"] == "/primer"


def test_hparams_from_magentajs_config_and_checks():
    cfg = {
        "type": "MusicVAE",
        "dataConverter": {"type": "MelodyConverter", "args": {"numSteps": 32, "minPitch": 21, "maxPitch": 108}},
    }
    fam = family("mel_tiny", meta={"config": cfg})
    assert fam.hparams["converter"] == "melody" and fam.hparams["max_pitch"] == 108
    dcfg = {"type": "MusicVAE", "dataConverter": {"type": "DrumsOneHotConverter", "args": {"numSteps": 32}}}
    assert family("drums_tiny", meta={"config": dcfg}).hparams["converter"] == "drums"
    assert family("drums_tiny").hparams["converter"] == "drums"  # inferred from the weights
    with pytest.raises(ValueError, match="depth"):
        family("drums_tiny", hparams={"converter": "melody"})
    with pytest.raises(ValueError, match="z_size"):
        family("mel_tiny", hparams={"z_size": 256})
    with pytest.raises(ValueError, match="depth"):
        family("mel_tiny", hparams={"min_pitch": 48, "max_pitch": 83})


def test_models_yaml_musicvae_entries_validate():
    doc = yaml.safe_load((FIX.parents[2] / "models.yaml").read_text())
    ours = {k: v for k, v in (doc.get("models") or {}).items() if v.get("family") == "musicvae"}
    assert {
        "cat-mel_2bar_big",
        "cat-drums_2bar_small.lokl",
        "cat-drums_2bar_small.hikl",
        "mel_2bar_small",
        "drums_2bar_lokl_small",
        "drums_2bar_hikl_small",
    } <= set(ours)
    for entry in ours.values():
        jsonschema.validate(entry.get("hparams", {}), MusicVAEFamily.hparams_schema)
        assert entry["defaults"]["temperature"] == 0.5
        assert entry["limits"]["num_outputs"] <= 32 and entry["limits"]["length"] >= entry["hparams"].get("steps", 0)
        assert entry["checkpoint"]["format"] in ("tf-tar", "magentajs")


def test_params_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(MusicVAEFamily.params_schema)
    jsonschema.Draft202012Validator.check_schema(MusicVAEFamily.hparams_schema)
    v = jsonschema.Draft202012Validator(MusicVAEFamily.params_schema)
    assert not list(v.iter_errors({"similarity": 0.5, "z": [[0.1, 0.2]]}))
    assert list(v.iter_errors({"similarity": 1.5}))
    assert list(v.iter_errors({"z": [["a"]]}))


def test_quantized_magentajs_style_input_is_accepted(mel):
    """Magenta.js sends quantized sequences: steps, no times; they encode like the timed equivalent."""
    quantized = {
        "quantizationInfo": {"stepsPerQuarter": 4},
        "totalQuantizedSteps": 32,
        "notes": [
            {"pitch": 60 + (t * 7) % 12, "quantizedStartStep": t, "quantizedEndStep": t + 2} for t in range(0, 32, 2)
        ],
    }
    a = run_family(mel, request("encode", inputs=[quantized])).extra["mu"]
    b = run_family(mel, request("encode", inputs=[melody(2)])).extra["mu"]
    np.testing.assert_allclose(a, b, atol=1e-6)


# -- inputs with several instruments (tracks) -----------------------------------------------------


def _b64(path):
    return base64.b64encode(path.read_bytes()).decode()


def two_parts():
    """A melody on instrument 0 ("Flute") and a lower line on instrument 1 ("Bass"), both usable."""
    top = seq_json([(72 + (t * 5) % 7, t, t + 2) for t in range(0, 32, 2)])
    low = seq_json([(40 + (t * 3) % 5, t, t + 4) for t in range(0, 32, 4)])
    for n in low["notes"]:
        n["instrument"], n["program"] = 1, 0
    top["notes"] += low["notes"]
    top["instrumentInfos"] = [{"instrument": 0, "name": "Flute"}, {"instrument": 1, "name": "Bass"}]
    return top


def test_several_usable_melodies_are_ambiguous_where_magenta_raises(mel):
    assert MAGENTA["melody/all/example_complex.mid"]["count"] > 1  # magenta: MultipleExtractedExamplesError
    with pytest.raises(Unprocessable, match=r'usable melody on 8 instruments.*send "instrument"') as err:
        run_family(mel, request("encode", inputs=[_b64(COMPLEX)]))
    assert err.value.code == "ambiguous_input" and err.value.details["field"] == "/inputs/0"
    choices = err.value.details["instruments"]
    assert [c["instrument"] for c in choices] == [2, 4, 5, 6, 8, 9, 15, 16]
    assert choices[0] == {"instrument": 2, "program": 25, "name": None, "windows": 99, "start_step": 96}


@pytest.mark.parametrize("instrument", [2, 4, 9])
def test_the_chosen_instrument_encodes_one_of_magentas_windows(mel, instrument):
    res = run_family(mel, request("encode", inputs=[_b64(COMPLEX)], instrument=instrument))
    used = res.extra["inputs_used"][0]
    assert used["instrument"] == instrument and used["instruments"] == [instrument]
    assert used["program"] == {2: 25, 4: 5, 9: 29}[instrument]
    # The window encoded is one of the examples magenta's converter extracts from the whole file.
    window = next(
        w
        for w in mel.converter.windows(sequence_from_json(_only(COMPLEX, instrument)))
        if (w.piece, w.start_step) == (used["piece"], used["start_step"])
    )
    x, _ = mel.converter.encode_window(window)
    magentas = MAGENTA_TENSORS["melody/all/example_complex.mid/inputs"].astype(np.float32)
    assert any(np.array_equal(x, m) for m in magentas)
    mu, _ = mel.engine.encode(x[None])
    np.testing.assert_allclose(res.extra["mu"][0], mu[0], atol=1e-6)


def _only(path, instrument):
    from google.protobuf import json_format
    from note_seq import midi_io

    ns = midi_io.midi_to_note_sequence(path.read_bytes())
    keep = [n for n in ns.notes if n.instrument == instrument]
    del ns.notes[:]
    ns.notes.extend(keep)
    return json_format.MessageToDict(ns)


def test_one_usable_part_among_others_is_used_and_named(mel):
    """Drums and an out-of-range line yield no melody: the one usable part is taken, and only it is
    checked (a chord on the unused part is not the input's problem)."""
    seq = seq_json([(60 + (t * 7) % 12, t, t + 2) for t in range(0, 32, 2)])
    seq["notes"] += [
        {
            "pitch": 36,
            "velocity": 90,
            "startTime": t * 0.125,
            "endTime": t * 0.125 + 0.1,
            "isDrum": True,
            "instrument": 9,
        }
        for t in range(0, 32, 4)
    ]
    seq["notes"] += [
        {"pitch": p, "velocity": 90, "startTime": 0.0, "endTime": 4.0, "instrument": 3, "program": 40} for p in (50, 54)
    ]
    res = run_family(mel, request("encode", inputs=[seq]))
    assert res.extra["inputs_used"][0]["instrument"] == 0
    alone = run_family(mel, request("encode", inputs=[melody(2)]))  # the same line on its own
    np.testing.assert_allclose(res.extra["mu"], alone.extra["mu"], atol=1e-6)


def test_instrument_per_input_and_names_from_the_midi_tracks(mel):
    parts = two_parts()
    midi = base64.b64encode(sequence_to_midi(sequence_from_json(parts))).decode()
    with pytest.raises(Unprocessable, match=r"0 'Flute' .program 0.*1 'Bass' .program 0.") as err:
        run_family(mel, request("similar", inputs=[midi]))
    assert [c["name"] for c in err.value.details["instruments"]] == ["Flute", "Bass"]
    res = run_family(mel, request("interpolate", inputs=[midi, parts], instrument=[1, 0], num_outputs=3, seed=1))
    first, second = res.extra["inputs_used"]
    assert (first["instrument"], first["name"]) == (1, "Bass") and (second["instrument"], second["name"]) == (
        0,
        "Flute",
    )
    one = run_family(mel, request("encode", inputs=[parts, parts], instrument=1)).extra
    assert one["mu"][0] == one["mu"][1] and [u["instrument"] for u in one["inputs_used"]] == [1, 1]
    with pytest.raises(Unprocessable, match="2 instruments for 1 inputs"):
        run_family(mel, request("encode", inputs=[parts], instrument=[0, 1]))
    with pytest.raises(Unprocessable, match=r"no notes on instrument 7; its instruments are .0, 1.") as err:
        run_family(mel, request("encode", inputs=[parts], instrument=7))
    assert err.value.details == {"field": "/inputs/0", "instruments": [0, 1]}


def test_drum_parts_merge_as_magenta_merges_them_unless_one_is_chosen():
    drm = family("drums_tiny")
    seq = seq_json([(36, t, t + 1) for t in range(0, 32, 4)], drums=True)
    seq["notes"] += [
        dict(n, pitch=42, instrument=10)
        for n in seq_json([(42, t, t + 1) for t in range(2, 32, 4)], drums=True)["notes"]
    ]
    merged = run_family(drm, request("encode", inputs=[seq])).extra
    assert merged["inputs_used"][0]["instrument"] is None and merged["inputs_used"][0]["instruments"] == [9, 10]
    kick = run_family(drm, request("encode", inputs=[seq], instrument=9)).extra
    assert kick["inputs_used"][0]["instrument"] == 9 and kick["inputs_used"][0]["instruments"] == [9]
    assert not np.allclose(kick["mu"], merged["mu"])
    with pytest.raises(Unprocessable, match="instrument 0: the input has no drum notes"):
        run_family(family("drums_tiny"), request("encode", inputs=[_b64(COMPLEX)], instrument=0))


def test_melody_sequences_are_built_as_note_seq_builds_them():
    """``MelodyConverter.from_classes`` writes the NoteSequences ``Melody.to_sequence`` writes (the same
    bytes), for random rows of holds, note-offs and note-ons, at any qpm; classes outside the encoding's
    range take note-seq's own route."""
    from magenta_api_musicvae.converters import MelodyConverter

    conv, rng = MelodyConverter(), np.random.default_rng(0)
    for _ in range(60):
        kind = rng.choice(3, size=(int(rng.integers(1, 4)), int(rng.integers(1, 40))), p=rng.dirichlet(np.ones(3)))
        classes = np.where(kind == 2, rng.integers(2, conv.output_depth, kind.shape), kind)
        qpm = float(rng.choice([120.0, 97.3, 60.0]))
        got, want = conv.from_classes(classes, qpm), conv._melody_sequences(classes, qpm)
        assert [s.SerializeToString(deterministic=True) for s in got] == [
            s.SerializeToString(deterministic=True) for s in want
        ]
    wide = np.array([[2, conv.output_depth, 1]])  # a pitch past max_pitch: note-seq's Melody decides
    assert conv.from_classes(wide)[0] == conv._melody_sequences(wide, 120.0)[0]
    assert conv.from_classes(np.zeros((2, 0), np.int64)) == conv._melody_sequences(np.zeros((2, 0), np.int64), 120.0)
