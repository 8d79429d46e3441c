"""The groovae family: humanize, drumify / tap2drum and groove as Magenta Studio does them, on weights made
by magenta (reference/musicvae_hier_reference.py), and through the HTTP API from a TF checkpoint."""

import note_seq
import numpy as np
import pytest
from google.protobuf import json_format
from musicvae_support import FIX, load, request, seq_json

import magenta_api_musicvae
from magenta_api.checkpoint import Checkpoint
from magenta_api.errors import Unprocessable
from magenta_api.family import ModelSpec
from magenta_api.music import sequence_to_json
from magenta_api.testing import run_family
from magenta_api_musicvae.configs import Unsupported
from magenta_api_musicvae.groove_family import GrooVAEFamily, converter_options


def make(name, hparams, meta=None):
    spec = ModelSpec(id=name, family="groovae", hparams=hparams)
    return GrooVAEFamily(spec, Checkpoint(load(name)[0], "native", meta or {}, "sha"))


def quantized_beat(bars=4, qpm=120.0):
    """Kick, snare and closed hi-hat on the grid at one velocity: what humanize expects."""
    notes = []
    for t in range(bars * 16):
        notes += [(36, t, t + 1)] if t % 8 == 0 else []
        notes += [(38, t, t + 1)] if t % 8 == 4 else []
        notes += [(42, t, t + 1)] if t % 2 == 0 else []
    return seq_json(notes, qpm=qpm, drums=True)


@pytest.fixture(scope="module")
def humanizer():
    return make("groove_2bar", {"config": "groovae_2bar_humanize"})


def test_humanize_moves_hits_off_the_grid_and_changes_velocities(humanizer):
    beat = quantized_beat(4)
    out = run_family(humanizer, request("humanize", inputs=[beat], temperature=0))
    (seq,) = out.sequences
    assert out.extra["inputs_used"] == [{"windows": 2, "start_step": 0, "qpm": 120.0}]
    assert 8.0 <= seq.total_time < 8.2  # both 2-bar windows, joined (a late last hit may end after 8 s)
    step = 0.125
    offsets = [abs(n.start_time / step - round(n.start_time / step)) for n in seq.notes]
    assert max(offsets) > 0.05  # expressive timing
    assert len({n.velocity for n in seq.notes}) > 3 and all(n.is_drum and n.instrument == 9 for n in seq.notes)
    # what magenta's pipeline gives: converter windows -> encoder mu -> decoder -> from_tensors
    ns = json_format.ParseDict(beat, note_seq.NoteSequence())
    windows = humanizer.converter.windows(ns)
    assert np.all(windows[0].inputs[:, 9:] == 0)  # the humanize input has no velocities or offsets
    mu, _ = humanizer.engine.encode(np.stack([w.inputs for w in windows]))
    outputs = humanizer.engine.sample(mu, 32, 0)
    want = humanizer._sequences(outputs.reshape(1, 64, 27), 120.0)[0]
    assert [(n.pitch, n.velocity, n.start_time) for n in seq.notes] == [
        (n.pitch, n.velocity, n.start_time) for n in want.notes
    ]


def test_humanize_keeps_the_inputs_tempo_and_is_seeded(humanizer):
    beat = quantized_beat(2, qpm=90.0)
    a = run_family(humanizer, request("humanize", inputs=[beat], seed=4))
    b = run_family(humanizer, request("humanize", inputs=[beat], seed=4))
    assert a.sequences[0].SerializeToString() == b.sequences[0].SerializeToString()
    assert a.sequences[0].tempos[0].qpm == 90.0 and a.extra["inputs_used"][0]["qpm"] == 90.0


def test_drumify_takes_a_tapped_melody(humanizer):
    tapper = make("groove_2bar", {"config": "groovae_2bar_tap_fixed_velocity"})
    taps = seq_json([(60 + t % 5, t, t + 1) for t in range(0, 32, 3)])  # a pitched line, not drums
    out = run_family(tapper, request("drumify", inputs=[taps], seed=1))
    assert out.sequences[0].notes and all(n.is_drum for n in out.sequences[0].notes)
    assert run_family(tapper, request("tap2drum", inputs=[taps], seed=1)).sequences[0] == out.sequences[0]
    with pytest.raises(Unprocessable, match="not a tap model"):
        run_family(humanizer, request("drumify", inputs=[taps]))
    with pytest.raises(Unprocessable, match="does not humanize"):
        run_family(tapper, request("humanize", inputs=[quantized_beat(2)]))


def test_sample_encode_decode_interpolate(humanizer):
    s = run_family(humanizer, request("sample", num_outputs=2, seed=3, temperature=1.0)).sequences
    assert len(s) == 2 and all(x.total_time >= 4.0 for x in s)
    enc = run_family(humanizer, request("encode", inputs=[quantized_beat(2)]))
    assert np.array(enc.extra["mu"]).shape == (1, 12)
    dec = run_family(humanizer, request("decode", z=enc.extra["mu"], temperature=0))
    assert len(dec.sequences) == 1
    with pytest.raises(Unprocessable, match="finite"):
        run_family(humanizer, request("decode", z=[[0.0] * 3]))
    inter = run_family(
        humanizer, request("interpolate", inputs=[quantized_beat(2), quantized_beat(4)], num_outputs=3, temperature=0)
    )
    assert len(inter.sequences) == 3
    sim = run_family(humanizer, request("similar", inputs=[quantized_beat(2)], num_outputs=2, similarity=0.9))
    assert len(sim.sequences) == 2
    for bad in (request("humanize"), request("interpolate", inputs=[quantized_beat(2)]), request("decode")):
        with pytest.raises(Unprocessable):
            run_family(humanizer, bad)
    with pytest.raises(Unprocessable) as e:
        run_family(humanizer, request("humanize", inputs=[seq_json([(60, 0, 4)])]))
    assert e.value.code == "unusable_input"
    with pytest.raises(Unprocessable, match="over this model"):
        run_family(humanizer, request("sample", length=33))


def test_hits_control_model_keeps_the_inputs_hits():
    fam = make("groove_hits", {"config": "groovae_2bar_hits_control"})
    beat = quantized_beat(2)
    out = run_family(fam, request("groove", inputs=[beat], temperature=1.0, seed=2))
    assert out.sequences[0].notes
    with pytest.raises(Unprocessable, match="conditioned on the input's hits"):
        run_family(fam, request("sample"))
    assert len(run_family(fam, request("interpolate", inputs=[beat, beat], num_outputs=2)).sequences) == 2
    assert len(run_family(fam, request("similar", inputs=[beat], num_outputs=2)).sequences) == 2


def test_converter_options_from_configs_and_magentajs():
    assert converter_options({"config": "groovae_2bar_tap_fixed_velocity", "bars": 3}, None)["split_bars"] == 3
    js = {"dataConverter": {"type": "GrooveConverter", "args": {"numSteps": 16, "tapify": True}}}
    assert converter_options({}, js) == {"split_bars": 1, "tapify": True}
    with pytest.raises(Unsupported, match="splitInstruments"):
        converter_options({}, {"dataConverter": {"type": "GrooveConverter", "args": {"splitInstruments": True}}})
    with pytest.raises(Unsupported, match="MelodyConverter"):
        converter_options({}, {"dataConverter": {"type": "MelodyConverter"}})
    with pytest.raises(ValueError, match="converter makes"):
        make("groove_2bar", {"config": "groovae_2bar_hits_control"})
    with pytest.raises(ValueError, match="z_size=3"):
        make("groove_2bar", {"config": "groovae_2bar_humanize", "z_size": 3})


def test_humanize_through_the_http_api(tmp_path):
    from magenta_api.store import CheckpointStore
    from magenta_api.testing import make_app

    model = {
        "family": "groovae",
        "hparams": {"config": "groovae_2bar_humanize"},
        "defaults": {"mode": "humanize", "temperature": 1.0},
        "limits": {"num_outputs": 4},
        "checkpoint": {"url": (FIX / "groove_2bar.ckpt").as_uri(), "sha256": "", "format": "tf"},
    }
    app = make_app(
        tmp_path, plugins=[magenta_api_musicvae], models={"groove": model}, store=CheckpointStore(tmp_path / "models")
    )
    client = app.test_client()
    r = client.post("/v1/generate", json={"model": "groove", "inputs": [quantized_beat(2)], "seed": 1})
    assert r.status_code == 200, r.get_json()
    notes = r.get_json()["sequences"][0]["notes"]
    assert notes and len({n["velocity"] for n in notes}) > 1
    r2 = client.post("/v1/generate", json={"model": "groove", "inputs": [quantized_beat(2)], "seed": 1})
    assert r2.get_json()["sequences"] == r.get_json()["sequences"]
    assert client.post("/v1/generate", json={"model": "groove", "seed": 1}).status_code == 422
    midi = client.post("/v1/generate", json={"model": "groove", "inputs": [quantized_beat(2)], "format": "midi"})
    assert midi.status_code == 200 and note_seq.midi_to_note_sequence(midi.data).notes[0].is_drum
    assert sequence_to_json  # the JSON renderer is what the API used above
