"""Primer extraction and encodings against magenta's pipelines on the compat MIDI files."""

import copy

import numpy as np
import pytest
from melody_rnn_support import CONFIGS, MIDI, arrays, config_of, from_events, is_drums, reference
from note_seq import midi_io, sequences_lib

from magenta_api.errors import Unprocessable
from magenta_api_melody_rnn.encoders import InputEncoder, make_config, make_encoder
from magenta_api_melody_rnn.primer import _drums_from_sequence, _melody_from_sequence, from_sequence

CASES = [(name, path) for name in CONFIGS if not name.endswith("_stacked") for path in MIDI]


def _ref_entry(name, path):
    return next(m for m in reference(name)["midi"] if m["file"] == path.name)


def test_fixture_covers_the_compat_midi_files():
    assert len(MIDI) == 10
    for name in CONFIGS:
        assert {m["file"] for m in reference(name)["midi"]} == {p.name for p in MIDI}


@pytest.mark.parametrize("name,path", CASES, ids=[f"{n}-{p.stem}" for n, p in CASES])
def test_extraction_and_encoding_match_magenta(name, path):
    cfg = make_config(config_of(name))
    ref = _ref_entry(name, path)
    seq = midi_io.midi_file_to_note_sequence(str(path))
    if "error" in ref:  # magenta refuses the file: so does the plugin, with a 422
        with pytest.raises(Unprocessable) as err:
            from_sequence(seq, cfg.drums, cfg.steps_per_quarter)
        assert ref["error"].split(":")[0] in err.value.details["reason"]
        return
    q = sequences_lib.quantize_note_sequence(seq, cfg.steps_per_quarter)
    assert q.total_quantized_steps == ref["total_quantized_steps"]
    if ref["num_tracks"] != 1:  # magenta's generator asserts a single track; the plugin says why
        with pytest.raises(Unprocessable, match="instruments"):
            from_sequence(seq, cfg.drums, cfg.steps_per_quarter)
        return
    track = _drums_from_sequence(q) if cfg.drums else _melody_from_sequence(q)
    assert track.start_step == ref["start_step"]
    assert from_events(name, list(track)) == ref["events"]
    model_events = copy.deepcopy(track)
    if not cfg.drums:
        assert model_events.squash(cfg.min_note, cfg.max_note, cfg.transpose_to_key) == ref["transpose"]
        assert [int(e) for e in model_events] == ref["squashed"]
    encoder = make_encoder(cfg)
    inputs, labels = encoder.encode(list(model_events))
    np.testing.assert_array_equal(np.asarray(inputs, np.float32), arrays(name)[f"midi/{path.name}/inputs"])
    np.testing.assert_array_equal(np.asarray(labels), arrays(name)[f"midi/{path.name}/labels"])
    # The fast one-hot path of InputEncoder gives the same rows as the encoder itself.
    full = InputEncoder(encoder).full(list(model_events))
    assert len(full) == len(model_events)
    if len(inputs):
        np.testing.assert_array_equal(full[:-1], np.asarray(inputs, np.float32))


def test_some_files_exercise_each_outcome():
    outcomes = {("error" in m, m.get("num_tracks") == 1) for m in reference("basic_rnn")["midi"]}
    assert (True, False) in outcomes and (False, True) in outcomes
    assert any(m.get("num_tracks", 0) > 1 for m in reference("basic_rnn")["midi"])
    drums = [m for m in reference("drum_kit_rnn")["midi"] if m.get("num_tracks") == 1]
    assert drums and all(is_drums("drum_kit_rnn") for _ in drums)


@pytest.mark.parametrize("name", ["basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn"])
def test_encoder_sizes_are_magentas(name):
    sizes = {
        "basic_rnn": (38, 38),
        "mono_rnn": (130, 130),
        "lookback_rnn": (121, 40),
        "attention_rnn": (74, 40),
        "drum_kit_rnn": (518, 512),
    }
    enc = make_encoder(make_config(name))
    assert (enc.input_size, enc.num_classes) == sizes[name]


def test_incremental_key_melody_inputs_equal_note_seqs():
    """The O(1)-per-step KeyMelody tracker gives note-seq's events_to_input, event by event."""
    from magenta_api_melody_rnn.keymelody import KeyMelodyTracker

    encoder = make_encoder(make_config("attention_rnn"))
    rng = np.random.default_rng(0)
    for _ in range(20):
        events = [-1] * int(rng.integers(0, 3))  # leading note-offs, which Melody() turns into holds
        events += [int(e) for e in rng.choice([-2, -2, -1, 48, 50, 52, 55, 60, 64, 67, 71, 83], size=70)]
        tracker = KeyMelodyTracker(encoder)
        for i, e in enumerate(events):
            np.testing.assert_array_equal(tracker.push(e), np.asarray(encoder.events_to_input(events, i), np.float32))
        copy_ = tracker.copy()
        np.testing.assert_array_equal(copy_.push(60), KeyMelodyTracker.copy(tracker).push(60))


@pytest.mark.parametrize("name", ["lookback_rnn", "drum_kit_rnn"])
def test_lookback_fast_rows_equal_note_seqs(name):
    """InputEncoder's NumPy lookback rows equal note-seq's events_to_input at every position."""
    cfg = make_config(name)
    encoder = make_encoder(cfg)
    fast = InputEncoder(encoder)
    rng = np.random.default_rng(1)
    if cfg.drums:
        pool = [frozenset(), frozenset([36]), frozenset([38, 42]), frozenset([42]), frozenset([46, 49, 36])]
    else:
        pool = [-2, -2, -1, 48, 55, 60, 60, 67, 83]
    for _ in range(5):
        events = [pool[i] for i in rng.integers(0, len(pool), size=80)]
        rows = fast.full(events)
        for i in range(len(events)):
            np.testing.assert_array_equal(rows[i], np.asarray(encoder.events_to_input(events, i), np.float32))
        np.testing.assert_array_equal(fast.last([events[:40], events]), rows[[39, 79]])
