"""The musicvae family on the general engine: 16-bar hierarchical melodies, trios, chord conditioning,
Magenta.js config.json layouts, and the configurations it refuses (503 checkpoint_incompatible)."""

import copy

import jsonschema
import numpy as np
import pytest
from musicvae_support import load, melody, request, seq_json
from test_musicvae_trio import load_sequence

from magenta_api.checkpoint import Checkpoint
from magenta_api.errors import Unprocessable
from magenta_api.family import ModelSpec
from magenta_api.music import sequence_to_json
from magenta_api.testing import run_family
from magenta_api_musicvae.family import MusicVAEFamily
from magenta_api_musicvae.groove_family import GrooVAEFamily
from magenta_api_musicvae.hierarchy import VAEModel


def make(name, hparams=None, meta=None, variables=None):
    spec = ModelSpec(id=name, family="musicvae", hparams=hparams or {})
    return MusicVAEFamily(spec, Checkpoint(variables or load(name)[0], "native", meta or {}, "sha"))


@pytest.fixture(scope="module")
def mel16():
    return make("hierdec_mel", {"config": "hierdec-mel_16bar"})


@pytest.fixture(scope="module")
def trio():
    return make("hierdec_trio", {"config": "hierdec-trio_16bar"})


@pytest.fixture(scope="module")
def chords():
    return make("mel_chords", {"config": "cat-mel_2bar_med_chords"})


def test_16bar_sample_is_seeded_and_256_steps(mel16):
    assert isinstance(mel16.engine, VAEModel) and mel16.engine.level_lengths == [16, 16]
    a = run_family(mel16, request("sample", num_outputs=2, seed=5)).sequences
    b = run_family(mel16, request("sample", num_outputs=2, seed=5)).sequences
    assert [s.SerializeToString() for s in a] == [s.SerializeToString() for s in b]
    assert all(s.total_time == pytest.approx(32.0) for s in a)  # 16 bars at 120 qpm
    assert any(n.start_time >= 16.0 for n in a[0].notes)  # notes in the second half too


def test_decode_with_magentas_z_gives_magentas_argmax(mel16, trio):
    for fam, name in ((mel16, "hierdec_mel"), (trio, "hierdec_trio")):
        _, ref, _ = load(name)
        seqs = run_family(fam, request("decode", temperature=0, z=ref["z"].tolist())).sequences
        want = fam._sequences(ref["greedy"].astype(np.int64), 120.0)
        assert [s.SerializeToString() for s in seqs] == [s.SerializeToString() for s in want]


def test_16bar_interpolate_and_encode(mel16):
    a, b = melody(16), melody(16, offset=5)
    out = run_family(mel16, request("interpolate", num_outputs=3, inputs=[a, b], temperature=0))
    assert len(out.sequences) == 3 and out.extra["inputs_used"][0]["windows"] == 1
    enc = run_family(mel16, request("encode", inputs=[a]))
    assert np.array(enc.extra["mu"]).shape == (1, 16)
    with pytest.raises(Unprocessable, match="16 bars"):
        run_family(mel16, request("encode", inputs=[melody(4)]))


def test_trio_sample_has_melody_bass_and_drums(trio):
    seqs = run_family(trio, request("sample", num_outputs=2, seed=1, temperature=1.0)).sequences
    for s in seqs:
        parts = {(n.instrument, n.program, n.is_drum) for n in s.notes}
        assert {i for i, _, _ in parts} <= {0, 1, 9}
        assert all(d == (i == 9) for i, _, d in parts) and all(p == 33 for i, p, _ in parts if i == 1)
    assert {n.instrument for s in seqs for n in s.notes} == {0, 1, 9}


def test_trio_encodes_a_real_trio(trio):
    ns = load_sequence("synthetic:trio_18bar")
    out = run_family(trio, request("encode", inputs=[sequence_to_json(ns)]))
    used = out.extra["inputs_used"][0]
    assert used["instruments"] == [0, 1, 9] and used["windows"] == 3 and used["start_step"] == 0
    x, _ = trio.converter.encode_window(trio.converter.windows(ns)[0])
    mu, _ = trio.engine.encode(x[None])
    np.testing.assert_allclose(out.extra["mu"], mu, atol=1e-6)
    no_drums = copy.deepcopy(ns)
    del no_drums.notes[:]
    no_drums.notes.extend(n for n in ns.notes if not n.is_drum)
    with pytest.raises(Unprocessable, match="no drums"):
        run_family(trio, request("encode", inputs=[sequence_to_json(no_drums)]))


def test_chords_condition_the_melody(chords):
    with pytest.raises(Unprocessable) as e:
        run_family(chords, request("sample", seed=1))
    assert e.value.code == "chords_required"
    c = run_family(chords, request("sample", seed=1, temperature=0, chords=["C", "G"])).sequences[0]
    f = run_family(chords, request("sample", seed=1, temperature=0, chords=["F#m", "Bb"])).sequences[0]
    assert [(a.time, a.text) for a in c.text_annotations] == [(0.0, "C"), (2.0, "G")]
    # the family decodes with the one-hot controls of those chords: C for bar 1, G for bar 2
    enc = chords.chord_encoding
    controls = np.zeros((32, enc.num_classes), np.float32)
    controls[:16, enc.encode_event("C")] = controls[16:, enc.encode_event("G")] = 1
    z = request("sample", seed=1).rng.standard_normal((1, chords.engine.z_size)).astype(np.float32)
    want = chords._sequences(chords.engine.sample(z, 32, 0, controls=controls), 120.0)[0]
    assert [(n.pitch, n.start_time) for n in c.notes] == [(n.pitch, n.start_time) for n in want.notes]
    _, with_c = chords.engine.sample(z, 32, 0, controls=controls, return_logits=True)
    _, with_f = chords.engine.sample(
        z, 32, 0, controls=chords._chord_controls(["F#m"] * 16 + ["Bb"] * 16), return_logits=True
    )
    assert np.abs(with_c - with_f).max() > 1e-2  # the chords change the decoder's outputs
    assert f.text_annotations[1].text == "Bb"
    for bad, code in ((["C", "Hm"], "invalid_chord"), (["C", "Csus4"], "invalid_chord")):
        with pytest.raises(Unprocessable) as e:
            run_family(chords, request("sample", chords=bad))
        assert e.value.code == code and e.value.details["field"] == "/chords/1"


def test_chord_models_encode_with_given_or_inferred_chords(chords):
    triad = seq_json([(p, t, t + 4) for t in range(0, 32, 4) for p in (60 + t % 5,)])
    given = run_family(chords, request("encode", inputs=[triad], chords=["Am", "E"]))
    inferred = run_family(chords, request("encode", inputs=[triad]))
    assert given.extra["mu"] != inferred.extra["mu"]
    with pytest.raises(Unprocessable, match="not conditioned on chords"):
        run_family(make("mel_tiny"), request("sample", chords=["C"]))


def test_magentajs_config_json_describes_the_hierarchy():
    variables = load("hierdec_mel")[0]
    cfg = {
        "type": "MusicVAE",
        "dataConverter": {
            "type": "MelodyConverter",
            "args": {"numSteps": 256, "numSegments": 16, "minPitch": 21, "maxPitch": 108},
        },
    }
    fam = make("hierdec_mel", meta={"config": cfg}, variables=variables)
    assert fam.engine.level_lengths == [16, 16] and fam.steps == 256
    four = make(
        "hier_mel4_ar",
        {"autoregressive": True, "valid_programs": None},
        meta={"config": {"dataConverter": {"type": "MelodyConverter", "args": {"numSteps": 64, "numSegments": 4}}}},
    )
    assert four.engine.level_lengths == [4, 16] and four.engine.autoregressive == {0}
    seqs = run_family(four, request("sample", seed=2, num_outputs=1)).sequences
    assert seqs[0].total_time == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("hparams", "meta", "match"),
    [
        ({"config": "groovae_2bar_humanize"}, {}, "GrooVAE"),
        ({}, {"config": {"dataConverter": {"type": "GrooveConverter", "args": {"numSteps": 32}}}}, "GrooVAE"),
        ({"config": "hierdec-mel_16bar", "segments": 5}, {}, "do not split"),
        ({"config": "hierdec-mel_16bar", "z_size": 99}, {}, "z_size=99"),
        ({"config": "hierdec-mel_16bar", "converter": "drums"}, {}, "input/output depth"),
    ],
)
def test_what_the_family_cannot_run_is_refused_with_a_reason(hparams, meta, match):
    with pytest.raises(ValueError, match=match):
        make("hierdec_mel", hparams, meta)


def test_models_yaml_declares_every_published_musicvae():
    """Every MusicVAE of Magenta.js's checkpoints.json and every TF tar of magenta's music_vae README."""
    import json
    import pathlib

    import yaml

    root = pathlib.Path(__file__).parent.parent
    declared = yaml.safe_load((root / "models.yaml").read_text())["models"]
    urls = {m["checkpoint"]["url"].rstrip("/"): m for m in declared.values() if m.get("checkpoint")}
    js = json.loads((root / "tests/fixtures/musicvae/magentajs/checkpoints.json").read_text())
    tars = [
        "cat-mel_2bar_big",
        "hierdec-mel_16bar",
        "hierdec-trio_16bar",
        "cat-drums_2bar_small.lokl",
        "cat-drums_2bar_small.hikl",
        "nade-drums_2bar_full",
        "groovae_4bar",
        "groovae_2bar_humanize",
        "groovae_2bar_tap_fixed_velocity",
        "groovae_2bar_add_closed_hh",
        "groovae_2bar_hits_control",
    ]
    for t in tars:
        m = urls[f"https://storage.googleapis.com/magentadata/models/music_vae/checkpoints/{t}.tar"]
        assert m["family"] == ("groovae" if t.startswith("groovae") else "musicvae")
        assert m["checkpoint"]["format"] == "tf-tar"
    vae = [c for c in js if c["model"] == "MusicVAE"]
    assert len(vae) == 25
    for c in vae:
        m = urls[c["url"].rstrip("/")]
        groove = c["id"].startswith(("groovae", "tap2drum"))
        assert m["family"] == ("groovae" if groove else "musicvae") and m["checkpoint"]["format"] == "magentajs"
    for m in declared.values():
        if m["family"] == "musicvae":
            jsonschema.validate(m.get("hparams", {}), MusicVAEFamily.hparams_schema)
        elif m["family"] == "groovae":
            jsonschema.validate(m.get("hparams", {}), GrooVAEFamily.hparams_schema)


def test_long_form_chains_latent_codes(mel16):
    """64 bars from a 16-bar model: 4 chunks on a slerp path between seeded anchors, joined in time."""
    out = run_family(mel16, request("sample", seed=8, bars=64, num_outputs=2, temperature=0))
    assert out.extra["long_form"] == {"chunks": 4, "bars": 64, "blend": 4}
    a, b = out.sequences
    assert a.total_time == pytest.approx(128.0) and max(n.start_time for n in a.notes) >= 96.0
    again = run_family(mel16, request("sample", seed=8, bars=64, num_outputs=2, temperature=0))
    assert [s.SerializeToString() for s in again.sequences] == [a.SerializeToString(), b.SerializeToString()]
    # chunk k of output o decodes slerp(anchor k // 4, anchor k // 4 + 1, (k % 4) / 4) of that output
    z = mel16._long_z(request("sample", seed=8, bars=64, num_outputs=2), 4)
    first = mel16._sequences(mel16.engine.sample(z[4:5], 256, 0), 120.0)[0]
    assert [(n.pitch, n.start_time) for n in first.notes] == [
        (n.pitch, n.start_time) for n in b.notes if n.start_time < 32.0
    ]
    # a length that is not a multiple of the model's: cut at the last bar
    ten = run_family(make("mel_tiny"), request("sample", seed=1, bars=9, blend=2))
    assert ten.sequences[0].total_time == pytest.approx(18.0) and ten.extra["long_form"]["chunks"] == 5
    assert all(n.end_time <= 18.0 for n in ten.sequences[0].notes)
    short = run_family(make("mel_tiny"), request("sample", seed=1, bars=1))
    assert short.sequences[0].total_time == pytest.approx(2.0) and "long_form" not in short.extra
    for bad, match in (
        (request("sample", bars=64, length=16), "not both"),
        (request("decode", bars=64, z=[[0.0] * 16]), "mode sample"),
    ):
        with pytest.raises(Unprocessable, match=match):
            run_family(mel16, bad)
    with pytest.raises(Unprocessable, match="at most 256"):
        run_family(make("mel_tiny"), request("sample", bars=512, num_outputs=2))


def test_long_form_of_a_chord_model_follows_the_progression(chords):
    out = run_family(chords, request("sample", seed=3, bars=4, chords=["C", "G", "Am", "F"], temperature=0))
    (s,) = out.sequences
    assert [(a.time, a.text) for a in s.text_annotations] == [(0.0, "C"), (2.0, "G"), (4.0, "Am"), (6.0, "F")]
    # the second chunk is decoded with the chords of bars 3-4
    z = chords._long_z(request("sample", seed=3, bars=4), 2)
    ctl = chords._chord_controls(["Am"] * 16 + ["F"] * 16)
    second = chords._sequences(chords.engine.sample(z[1:2], 32, 0, controls=ctl), 120.0)[0]
    assert [(n.pitch, n.start_time + 4.0) for n in second.notes] == [
        (n.pitch, n.start_time) for n in s.notes if n.start_time >= 4.0
    ]
