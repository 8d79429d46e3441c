"""The melody_rnn family end to end (below HTTP): primer forms, drums, beam search, seeding, 422s."""

import base64
import json

import numpy as np
import pytest
from google.protobuf import json_format
from melody_rnn_support import CONFIGS, FIX, family, reference, request, to_events, weights
from note_seq import DrumTrack, Melody

from magenta_api.app import status_of
from magenta_api.errors import Unprocessable
from magenta_api.music import sequence_to_midi
from magenta_api.store.readers.mag import read_mag
from magenta_api.testing import run_family
from magenta_api_melody_rnn.beam import tempered_softmax


def _notes(seq):
    return [[n.pitch, round(n.start_time, 6), round(n.end_time, 6), bool(n.is_drum)] for n in seq.notes]


@pytest.mark.parametrize("name", CONFIGS)
def test_notesequence_primer_matches_magentas_sequence_generator(name):
    """reference.json's generator call starts half a step before the primer sequence's end (step 18):
    start_step 18 asks for that start; by default the continuation starts where a generate section at
    the primer's end starts, one step later."""
    sg = reference(name)["sequence_generator"]
    fam = family(name)
    length = reference(name)["num_steps"]
    out = run_family(fam, request(sg["primer_sequence"], temperature=0.0, length=length, start_step=sg["start_step"]))
    assert _notes(out.sequences[0]) == sg["notes"]
    assert out.sequences[0].total_time == pytest.approx(sg["total_time"])
    assert out.extra["primer_steps"] == out.extra["start_step"] == sg["start_step"]
    default = run_family(fam, request(sg["primer_sequence"], temperature=0.0, length=length))
    assert default.extra["start_step"] == sg["start_step"] + 1 and default.extra["primer_steps"] == sg["start_step"]


@pytest.mark.parametrize("name", ["basic_rnn", "attention_rnn", "drum_kit_rnn"])
def test_event_list_json_and_midi_primers_agree(name):
    ref = reference(name)
    entry = next(iter(ref["primers"].values()))
    fam = family(name)
    by_events = run_family(fam, request(entry["primer"], temperature=0.0, start_step=len(entry["primer"])))
    assert by_events.extra["events"][0] == entry["greedy"]
    # A sequence ends with its last note, so compare on a primer whose last step is not a rest.
    primer = entry["primer"][:-1] if name.startswith("drum") else entry["primer"]
    by_events = run_family(fam, request(primer, temperature=0.0))
    assert by_events.extra["start_step"] == len(primer) + 1
    track = (DrumTrack if name.startswith("drum") else Melody)(to_events(name, primer))
    seq = track.to_sequence(qpm=120)
    assert seq.total_time == pytest.approx(len(primer) * 0.125)
    by_json = run_family(fam, request(json_format.MessageToDict(seq), temperature=0.0))
    midi = base64.b64encode(sequence_to_midi(seq)).decode()
    by_midi = run_family(fam, request(midi, temperature=0.0))
    by_data_url = run_family(fam, request("data:audio/midi;base64," + midi, temperature=0.0))
    for other in (by_json, by_midi, by_data_url):
        assert _notes(other.sequences[0]) == _notes(by_events.sequences[0])


def test_drums_continuation_outputs_drum_notes():
    ref = reference("drum_kit_rnn")
    entry = ref["primers"]["beat"]
    out = family("drum_kit_rnn").generate(request(entry["primer"], temperature=0.0, num_outputs=2, start_step=16))
    assert out.extra["events"] == [entry["greedy"], entry["greedy"]]
    seq = out.sequences[0]
    assert seq.notes and all(n.is_drum and n.instrument == 9 for n in seq.notes)
    assert seq.total_time == pytest.approx(ref["num_steps"] * 0.125)
    assert seq.tempos[0].qpm == 120 and seq.ticks_per_quarter == 220


def test_no_primer_starts_from_magentas_default():
    mel = family("basic_rnn").generate(request(None, length=16))
    assert mel.extra["events"][0][:2] == [60, -1] and len(mel.extra["events"][0]) == 16  # [60], then a rest
    drums = family("drum_kit_rnn").generate(request(None, mode="sample", length=16))
    assert drums.extra["events"][0][:2] == [[36], []] and len(drums.extra["events"][0]) == 16
    assert mel.extra["start_step"] == drums.extra["start_step"] == 2


def test_seeded_requests_are_reproducible():
    fam = family("lookback_rnn")
    primer = reference("lookback_rnn")["primers"]["twinkle"]["primer"]
    a = run_family(fam, request(primer, seed=11, num_outputs=3, length=48))
    b = run_family(fam, request(primer, seed=11, num_outputs=3, length=48))
    c = run_family(fam, request(primer, seed=12, num_outputs=3, length=48))
    assert a.extra["events"] == b.extra["events"]
    assert [_notes(s) for s in a.sequences] == [_notes(s) for s in b.sequences]
    assert a.extra["events"] != c.extra["events"]
    assert len({json.dumps(e) for e in a.extra["events"]}) == 3  # outputs are distinct samples


def _loglik(fam, events, temperature):
    """Log-likelihood of a full event list under the model, teacher-forced (magenta's scoring)."""
    enc = fam.encoder
    logits, _ = fam.model.run(enc.full(events[:-1])[None])
    labels = [enc.encoder.events_to_label(events, i) for i in range(1, len(events))]
    p = tempered_softmax(logits[0], temperature)
    return float(np.log(p[np.arange(len(labels)), labels]).sum())


@pytest.mark.parametrize("name", ["basic_rnn", "attention_rnn", "drum_kit_rnn"])
def test_beam_search_returns_its_best_scoring_candidate(name):
    fam = family(name)
    entry = next(iter(reference(name)["primers"].values()))
    events = to_events(name, entry["prepared"])
    # One iteration over the whole continuation: the result is the best of beam x branch samples.
    total = 40 - len(events)
    from magenta_api_melody_rnn.beam import generate

    best = generate(fam.model, fam.encoder, events, 40, 1, 1.0, np.random.RandomState(4), 1, 6, total)[0]
    singles = generate(fam.model, fam.encoder, events, 40, 6, 1.0, np.random.RandomState(4))
    assert best.score == pytest.approx(max(s.score for s in singles), abs=1e-4)
    if name != "attention_rnn":
        # One-hot labels: the score is the model's log-likelihood of the events. (With lookback
        # labels magenta scores the sampled class, which may differ from the events' label.)
        assert best.score == pytest.approx(_loglik(fam, best.events, 1.0), abs=1e-3)
    # Through the family: beam search runs, scores its result and prefers likelier outputs.
    out = run_family(fam, request(entry["primer"], seed=3, beam_size=4, branch_factor=2, steps_per_iteration=2))
    plain = run_family(fam, request(entry["primer"], seed=3, num_outputs=8))
    assert out.extra["log_likelihood"][0] > np.median(plain.extra["log_likelihood"])


def test_out_of_range_primer_is_squashed_as_magenta_does():
    primer = [30, -2, 100, -2, 72]
    out = family("basic_rnn").generate(request(primer, temperature=0.0, length=12))
    mel = Melody(primer)
    amount = mel.squash(48, 84, 0)
    mel.transpose(-amount)
    assert out.extra["events"][0][:5] == [int(e) for e in mel]


def test_qpm_follows_request_then_primer():
    fam = family("basic_rnn")
    seq = Melody([60, -2, 62, -2]).to_sequence(qpm=90)
    primer = json_format.MessageToDict(seq)
    assert run_family(fam, request(primer, length=8)).sequences[0].tempos[0].qpm == 90
    explicit = run_family(fam, request(primer, length=8, qpm=150))
    assert explicit.sequences[0].tempos[0].qpm == 150
    step = 60 / 150 / 4  # the primer is re-timed at the requested tempo, as magenta's to_sequence(qpm)
    assert [n.start_time for n in explicit.sequences[0].notes[:2]] == pytest.approx([0.0, 2 * step])
    assert explicit.sequences[0].total_time <= 8 * step + 1e-9


@pytest.mark.parametrize(
    "primer,length,match",
    [
        ([60, -2, 62, -2], 4, "length counts every step before generation"),
        ([60, 128], 16, "expected a MIDI pitch"),
        ([60, [60, 64]], 16, "chord"),
        ([60, "C4"], 16, "expected a MIDI pitch"),
        ([], 16, "empty event list"),
    ],
)
def test_unusable_melody_primers_are_422(primer, length, match):
    fam = family("basic_rnn")
    with pytest.raises(Unprocessable, match=match) as err:
        run_family(fam, request(primer, length=length))
    assert status_of(err.value) == 422 and err.value.details["field"] in ("/primer", "/length")


def test_unusable_drum_primers_and_modes_are_422():
    fam = family("drum_kit_rnn")
    with pytest.raises(Unprocessable, match="drum pitches"):
        run_family(fam, request([[36], ["kick"]]))
    with pytest.raises(Unprocessable, match="mode 'sample'"):
        run_family(fam, request([[36]], mode="sample"))
    with pytest.raises(Unprocessable, match="at most"):
        run_family(fam, request([[36]], num_outputs=16, beam_size=8, branch_factor=4))


def test_sequence_primers_magenta_cannot_use_are_422():
    fam = family("basic_rnn")
    two = Melody([60, -2, 62]).to_sequence(qpm=120)
    extra = two.notes.add(pitch=72, start_time=0.0, end_time=0.5, velocity=90, instrument=1)
    assert extra.instrument == 1
    with pytest.raises(Unprocessable, match="2 instruments"):
        run_family(fam, request(json_format.MessageToDict(two)))
    tempo = Melody([60, -2, 62]).to_sequence(qpm=120)
    tempo.tempos.add(qpm=90, time=0.1)
    with pytest.raises(Unprocessable, match="quantized") as err:
        run_family(fam, request(json_format.MessageToDict(tempo)))
    assert err.value.details["reason"] == "MultipleTempoError"
    long = Melody([60] * 50).to_sequence(qpm=120)
    with pytest.raises(Unprocessable, match="primer is 50 steps"):
        run_family(fam, request(json_format.MessageToDict(long), length=40))


def test_config_from_mag_generator_id_and_checkpoint_mismatch():
    variables, meta = read_mag(FIX / "drum_kit_rnn" / "drum_kit_rnn.mag")
    fam = family("drum_kit_rnn", variables=variables, meta=meta, hparams={}, fmt="mag")
    assert fam.config.name == "drum_kit_rnn" and fam.config.binary_counter_bits == 6
    with pytest.raises(ValueError, match=r"the weights fit config basic_rnn: set hparams.config"):
        family("basic_rnn", hparams={"config": "mono_rnn"})
    with pytest.raises(ValueError, match=r"pitch range is 36 pitches.*max_note 84 with min_note 48"):
        family("basic_rnn", hparams={"config": "basic_rnn", "max_note": 80})


def test_magentajs_basic_rnn_names_and_config():
    folder = FIX / "magentajs_basic_rnn"
    manifest = json.loads((folder / "weights_manifest.json").read_text())
    js_names = {w["name"] for group in manifest for w in group["weights"]}
    assert js_names == set(weights("basic_rnn"))  # Magenta.js keeps magenta's variable names
    config = json.loads((folder / "config.json").read_text())
    fam = family("basic_rnn", meta={"config": config}, hparams={"config": "basic_rnn"}, fmt="magentajs")
    assert (fam.config.min_note, fam.config.max_note) == (48, 84)  # maxPitch 83 is inclusive
    entry = reference("basic_rnn")["primers"]["twinkle"]
    out = run_family(fam, request(entry["primer"], temperature=0.0, start_step=len(entry["primer"])))
    assert out.extra["events"][0] == entry["greedy"]
    wide = {"type": "MusicRNN", "dataConverter": {"type": "MelodyConverter", "args": {"minPitch": 0, "maxPitch": 127}}}
    with pytest.raises(ValueError, match="38 classes"):
        family("basic_rnn", meta={"config": wide}, hparams={"config": "basic_rnn"}, fmt="magentajs")


def test_magentajs_style_quantized_primer_in_steps_only():
    fam = family("basic_rnn")
    entry = reference("basic_rnn")["primers"]["twinkle"]
    steps_only = {
        "quantizationInfo": {"stepsPerQuarter": 4},
        "totalQuantizedSteps": 16,
        "notes": [
            {"pitch": p, "quantizedStartStep": i, "quantizedEndStep": i + 2}
            for i, p in enumerate(entry["primer"])
            if p >= 0
        ],
    }
    steps_only["notes"][-1]["quantizedEndStep"] = 16
    out = run_family(fam, request(steps_only, temperature=0.0, start_step=16))
    assert out.extra["events"][0] == entry["greedy"]
    assert run_family(fam, request(steps_only, temperature=0.0)).extra["start_step"] == 17


def _write_magentajs(folder, variables, config):
    """A Magenta.js checkpoint folder (manifest + one float32 shard + config.json) holding ``variables``."""
    folder.mkdir()
    entries = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in variables.items()]
    (folder / "group1-shard1of1").write_bytes(b"".join(np.asarray(v, np.float32).tobytes() for v in variables.values()))
    (folder / "weights_manifest.json").write_text(json.dumps([{"paths": ["group1-shard1of1"], "weights": entries}]))
    (folder / "config.json").write_text(json.dumps(config))


def test_magentajs_attention_drum_checkpoint_through_the_store_reader(tmp_path):
    """Magenta.js's drum_kit_rnn layout: attention around the whole stack, attention_output_projection,
    attentionLength and the BinaryCounter aux input in config.json."""
    from magenta_api.store.readers.magentajs import read_magentajs

    # The stacked-attention fixture's weights, renamed as Magenta.js names them.
    js_vars = {
        k.replace("attn_output_projection", "attention_output_projection"): v
        for k, v in weights("attention_rnn_stacked").items()
    }
    config = {
        "type": "MusicRNN",
        "attentionLength": 40,
        "dataConverter": {"type": "MelodyConverter", "args": {"minPitch": 48, "maxPitch": 83}},
    }
    _write_magentajs(tmp_path / "js", js_vars, config)
    variables, meta = read_magentajs(tmp_path / "js")
    fam = family(
        "attention_rnn_stacked", variables=variables, meta=meta, hparams={"config": "attention_rnn"}, fmt="magentajs"
    )
    assert fam.model.wrapped == 2 and fam.model.attention.length == 40
    entry = reference("attention_rnn_stacked")["primers"]["twinkle"]
    out = run_family(fam, request(entry["primer"], temperature=0.0, start_step=len(entry["primer"])))
    assert out.extra["events"][0] == entry["greedy"]
    # A drum config takes its counter bits from the aux input spec.
    drums = {
        "type": "MusicRNN",
        "attentionLength": 32,
        "dataConverter": {"type": "DrumsOneHotConverter"},
        "auxInputs": [{"type": "BinaryCounter", "args": {"numBits": 6}}],
    }
    _write_magentajs(tmp_path / "drums", weights("drum_kit_rnn"), drums)
    variables, meta = read_magentajs(tmp_path / "drums")
    fam = family("drum_kit_rnn", variables=variables, meta=meta, hparams={"config": "drum_kit_rnn"}, fmt="magentajs")
    assert fam.config.binary_counter_bits == 6 and fam.config.attn_length == 32
    entry = reference("drum_kit_rnn")["primers"]["beat"]
    out = run_family(fam, request(entry["primer"], temperature=0.0, start_step=len(entry["primer"])))
    assert out.extra["events"][0] == entry["greedy"]


def _lstm_variables(inputs, classes, units=8, layers=2):
    """Variables of a Magenta events RNN (magenta 2.x names) with the given input and class counts."""
    out = {}
    for i in range(layers):
        width = (inputs if i == 0 else units) + units
        out[f"rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/kernel"] = np.zeros((width, 4 * units), np.float32)
        out[f"rnn/multi_rnn_cell/cell_{i}/basic_lstm_cell/bias"] = np.zeros(4 * units, np.float32)
    out["fully_connected/weights"] = np.zeros((units, classes), np.float32)
    out["fully_connected/biases"] = np.zeros(classes, np.float32)
    return out


@pytest.mark.parametrize(
    "improv,inputs,chord",
    [("chord_pitches_improv", 75, 37), ("basic_improv", 87, 49)],
)
@pytest.mark.parametrize("config", ["basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn"])
def test_improv_rnn_weights_are_named_not_blamed_on_the_pitch_range(improv, inputs, chord, config):
    """A TF/.mag ImprovRNN checkpoint declared with a melody config: 38 melody inputs + the chord's."""
    variables = _lstm_variables(inputs, 38)
    with pytest.raises(ValueError) as err:
        family("x", variables=variables, hparams={"config": config})
    message = str(err.value)
    assert f"this looks like an ImprovRNN checkpoint ({improv}): {inputs} inputs = 38 melody + {chord} chord" in message
    assert "the melody_rnn family does not run it" in message and "min_note" not in message


def test_improv_rnn_bundle_is_named_by_its_generator_id():
    variables = _lstm_variables(75, 38)
    with pytest.raises(ValueError, match=r"\(chord_pitches_improv\): 75 inputs = 38 melody \+ 37 chord"):
        family("x", variables=variables, meta={"generator_id": "chord_pitches_improv"}, hparams={}, fmt="mag")
    odd = _lstm_variables(70, 38)  # an improv bundle whose sizes say nothing more
    with pytest.raises(ValueError, match=r"ImprovRNN checkpoint .its bundle's generator is basic_improv"):
        family("x", variables=odd, meta={"generator_id": "basic_improv"}, hparams={}, fmt="mag")


def test_a_melody_checkpoint_that_fits_no_config_says_so():
    with pytest.raises(ValueError, match="no melody_rnn config or pitch range makes those sizes"):
        family("x", variables=_lstm_variables(50, 38), hparams={"config": "basic_rnn"})


def test_unnamed_configs_and_unreadable_improv_weights_still_say_why():
    with pytest.raises(ValueError, match=r"set hparams.config to one of basic_rnn"):
        family("basic_rnn", hparams={})
    config = {"type": "MusicRNN", "chordEncoder": "PitchChordEncoder"}
    broken = {k: v for k, v in _lstm_variables(75, 38).items() if not k.startswith("fully_connected")}
    with pytest.raises(ValueError, match=r"ImprovRNN checkpoint .its config.json names the chord encoder Pitch"):
        family("x", variables=broken, meta={"config": config}, hparams={}, fmt="magentajs")


def test_a_primer_sequence_without_notes_or_length_is_422():
    with pytest.raises(Unprocessable, match="no notes and no length") as err:
        run_family(family("basic_rnn"), request({"notes": [], "totalTime": 0}))
    assert err.value.code == "invalid_primer"
    silence = {"totalTime": 2.0, "tempos": [{"qpm": 120}]}  # one bar of silence: a rest, then generation
    out = run_family(family("basic_rnn"), request(silence, temperature=0.0, length=4, start_step=30))
    assert out.extra["events_start_step"] == 29 and out.extra["events"][0][0] == -2
    assert out.extra["primer_steps"] == 0 and out.extra["start_step"] == 30 and len(out.extra["events"][0]) == 4
    with pytest.raises(Unprocessable, match="length is 1") as err:
        run_family(family("basic_rnn"), request(silence, length=1))
    assert err.value.code == "primer_too_long" and err.value.details["start_step"] == 17


def test_a_primer_event_of_probability_zero_scores_null_not_infinity():
    """float32 softmax underflows to 0 for a far-off logit: Magenta's score is -inf, which JSON cannot hold."""
    w = {k: v.copy() for k, v in weights("basic_rnn").items()}
    w["fully_connected/biases"][2 + 62 - 48] = -1e4  # melody class of pitch 62
    out = run_family(family("basic_rnn", variables=w), request(primer=[60, 62], length=8, seed=1))
    assert out.extra["log_likelihood"] == [None]
