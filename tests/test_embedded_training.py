"""Training pipeline: Magenta-equal encodings of the data, a smoke training run whose export the
engines load, and seeded resumption that continues exactly like an uninterrupted run."""

import json

import embedded_support  # noqa: F401  (puts training/ on sys.path)
import note_seq
import numpy as np
import pytest

from magenta_api_training import data_music21 as dm
from magenta_api_training import grooves
from magenta_api_training.cli import main as train_main

TRAIN_EXTRA = "needs the 'train' extra (pip install -e '.[train]'; make test installs it)"


def needs(*modules):
    """Skip a test whose training code imports ``modules`` when the train extra is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{TRAIN_EXTRA}: no {', '.join(missing)}")


ABC = """X:1
T:Test Tune
M:C|
L:1/8
K:G
D|G2 B2-B2 AG|c4 z2 e2|[Gd]4 g4|"Am"a8||
"""


@needs("music21")
def test_abc_tune_becomes_bar_aligned_melody_events():
    ev = dm.tune_to_events(ABC)
    # pickup D (1/8 = 2 steps) sits at the end of an empty first bar
    assert len(ev) == 5 * 16
    assert ev[14] == 62 and ev[15] == dm.NO_EVENT
    bar1 = ev[16:32].tolist()
    # G2 B2-B2 (tie merged: one B of 8 steps) A G
    assert bar1 == [67, -2, -2, -2, 71] + [-2] * 7 + [69, -2, 67, -2]
    bar2 = ev[32:48].tolist()
    # c4, rest (note-off), e2
    assert bar2[:8] == [72] + [-2] * 7 and bar2[8] == dm.NOTE_OFF and bar2[12] == 76
    assert ev[48] == 74  # chord [Gd]: the top note, as magenta keeps the highest pitch
    assert ev[64] == 81  # the "Am" chord symbol is not a note


REPEATS = """X:2
T:Repeat Tune
M:C
L:1/8
K:C
G|:c2 e2 g4|a2 g2 e4|1 f2 d2 c3 G:|2 f2 d2 c4||
"""

SHORT_CLOSE = """X:3
T:Short Close
M:C
L:1/8
K:C
G|:c2 e2 g4|a2 g2 e4|f2 d2 c3:|
"""


@needs("music21")
def test_repeats_are_written_out_with_their_endings_for_the_16_bar_data():
    bars = lambda ev: [ev[b : b + 16].tolist() for b in range(0, len(ev), 16)]  # noqa: E731
    written = bars(dm.tune_to_events(REPEATS))
    played = bars(dm.tune_to_events(REPEATS, expand_repeats=True))
    assert len(written) == 5 and len(played) == 7  # pickup, A (1st ending), A (2nd ending)
    assert played[:4] == written[:4]
    assert played[4:6] == written[1:3] and played[6] == written[4]
    assert played[3][14] == 67 and played[6][14] == dm.NO_EVENT  # the 1st ending's pickup G only


@needs("music21")
def test_a_full_bar_after_a_short_closing_bar_starts_on_the_bar_line():
    played = dm.tune_to_events(SHORT_CLOSE, expand_repeats=True)
    assert len(played) == 7 * 16
    # bar 3 is c3 short of the pickup: a note-off fills its last 8th, and the repeat starts on beat 1
    assert played[3 * 16 + 14] == dm.NOTE_OFF
    assert played[4 * 16 : 6 * 16].tolist() == played[16 : 3 * 16].tolist()


def test_16_bar_windows_are_bar_aligned_unique_and_split_by_tune():
    from magenta_api_training.datasets import Melody16Data

    rng = np.random.default_rng(0)
    tunes = []
    for _ in range(6):  # 20-bar tunes of one note per beat
        ev = np.full(20 * 16, dm.NO_EVENT)
        ev[::4] = rng.integers(60, 72, 80)
        tunes.append(ev)
    tunes[5][5 * 16 : 6 * 16] = dm.NO_EVENT  # a silent bar: no window may hold it
    ts = dm.TuneSet(
        np.concatenate(tunes),
        np.cumsum([0] + [len(t) for t in tunes]),
        [f"t{i}" for i in range(6)],
        ["x"] * 6,
        np.array([False] * 4 + [True] * 2),
    )
    data = Melody16Data(ts)
    assert data.train.shape == (4 * 5, 256)  # 5 windows at a one-bar hop in each 20-bar tune
    assert data.valid.shape == (5, 256)  # tune 4's: every window of tune 5 holds its silent bar
    batch = data.batch(np.random.default_rng([0, 1]), 8)
    assert batch.shape == (8, 256) and batch.max() < 90
    np.testing.assert_array_equal(batch, data.batch(np.random.default_rng([0, 1]), 8))


def test_melody_encoding_is_note_seqs_melody_one_hot_encoding():
    events = [-2, -1, 21, 60, 108, 48, 83]
    for lo, hi in ((21, 109), (48, 84)):
        enc = note_seq.MelodyOneHotEncoding(lo, hi)
        ok = [e for e in events if e < 0 or lo <= e < hi]
        assert dm.encode_events(ok, lo).tolist() == [enc.encode_event(e) for e in ok]
        assert dm.decode_events(dm.encode_events(ok, lo), lo).tolist() == ok


def test_drum_labels_are_note_seqs_multi_drum_one_hot_encoding():
    enc = note_seq.MultiDrumOneHotEncoding()
    for _, _, labels in list(grooves.expand(small=True))[:50]:
        roll = grooves.labels_to_roll(labels)
        for step, label in zip(roll, labels):
            pitches = frozenset(grooves.CLASS_PITCHES[c] for c in np.flatnonzero(step))
            assert enc.encode_event(pitches) == label


def test_groove_library_is_large_distinct_and_split_by_group():
    train, valid = grooves.train_validation_windows(seed=0)
    assert len(train) > 10000 and len(valid) > 1000
    assert len({tuple(w) for w in train}) == len(train)
    assert not ({tuple(w) for w in train} & {tuple(w) for w in valid})
    assert train.shape[1] == 32 and train.max() < 512


def test_split_by_tune_is_seeded_and_keeps_duplicates_together():
    titles = [f"Tune number {i}" for i in range(400)]
    a = [dm.tune_in_validation(t, seed=0) for t in titles]
    assert a == [dm.tune_in_validation(t, seed=0) for t in titles]
    assert 0.03 < np.mean(a) < 0.2
    assert dm.tune_in_validation("The Rakes of Mallow", 0) == dm.tune_in_validation("Rakes of Mallow -- Reel", 0)


def test_transposition_keeps_rows_in_range():
    w = np.array([[60, -2, -1, 72], [105, -2, 107, -1]])
    out = dm.transpose_windows(w, np.array([5, 3]))
    assert out[0].tolist() == [65, -2, -1, 77]
    assert out[1].tolist() == [105, -2, 107, -1]  # 110 would leave [21, 108]: row unchanged


def _smoke(tmp_path, model, steps, *extra, cache=None):
    out = tmp_path / model
    rc = train_main(
        [
            model,
            "--smoke",
            "--steps",
            str(steps),
            "--seed",
            "3",
            "--out",
            str(out),
            "--cache",
            str(cache or tmp_path / "cache"),
            *extra,
        ]
    )
    assert rc == 0
    return out


@needs("torch", "music21")
def test_smoke_training_exports_weights_the_engines_run(tmp_path):
    from magenta_api.store.readers.native import read_native
    from magenta_api_melody_rnn.engine import EventRnn
    from magenta_api_musicvae.engine import MusicVAEEngine

    mel = _smoke(tmp_path, "mel_2bar", 6)
    log = [json.loads(line) for line in (mel / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 and "val_r_loss" in log[-1]
    variables, _ = read_native(mel / "mel_2bar.safetensors")
    engine = MusicVAEEngine(variables)
    assert (engine.input_depth, engine.output_depth) == (90, 90)
    classes = engine.sample(np.zeros((2, engine.z_size), np.float32), 32, 1.0, np.random.default_rng(0))
    assert classes.shape == (2, 32)
    assert int(np.asarray(variables["global_step"])) == 6

    rnn = _smoke(tmp_path, "basic_rnn", 4)
    variables, _ = read_native(rnn / "basic_rnn.safetensors")
    model = EventRnn.from_variables(variables)
    assert (model.input_size, model.num_classes) == (38, 38)


@needs("torch", "music21")
def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    from safetensors.numpy import load_file

    straight = _smoke(tmp_path / "a", "drums_2bar", 6)
    half = _smoke(tmp_path / "b", "drums_2bar", 3)
    _smoke(tmp_path / "b", "drums_2bar", 6, "--resume")
    a = load_file(str(straight / "drums_2bar.safetensors"))
    b = load_file(str(half / "drums_2bar.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    other = _smoke(tmp_path / "c", "drums_2bar", 6, "--seed", "4")
    c = load_file(str(other / "drums_2bar.safetensors"))
    assert not np.array_equal(a["decoder/output_projection/kernel"], c["decoder/output_projection/kernel"])


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit):
        train_main(["train", "nonsense"])


@pytest.fixture(scope="module")
def tune_cache(tmp_path_factory):
    """One parse of the smoke tunes for the 16-bar tests below."""
    return tmp_path_factory.mktemp("tunes")


@needs("torch", "music21")
def test_smoke_16_bar_training_exports_what_the_service_builds_and_resumes_exactly(tmp_path, tune_cache):
    from safetensors.numpy import load_file

    from magenta_api.store.readers.native import read_native
    from magenta_api_musicvae.build import build
    from magenta_api_training.ship import model_entry
    from magenta_api_training.train import build_config

    straight = _smoke(tmp_path / "a", "mel_16bar", 4, cache=tune_cache)
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and "val_r_loss" in log[-1] and "kl_bits" in log[-1]
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["train_windows"] > 0 and summary["validation_windows"] > 0

    class Checkpoint:
        variables, _ = read_native(straight / "mel_16bar.safetensors")
        meta: dict = {}

    cfg = build_config("mel_16bar", smoke=True)
    cfg["max_seq_len"] = 256
    entry = model_entry("mel_16bar", cfg, straight / "mel_16bar.safetensors")
    built = build("embedded-mel_16bar", entry["hparams"], Checkpoint)
    assert built.general and built.engine.level_lengths == [16, 16] and built.engine.encoder.hierarchical
    classes = built.engine.sample(np.zeros((2, 8), np.float32), 256, 1.0, np.random.default_rng(0))
    assert classes.shape == (2, 256, 1)

    half = _smoke(tmp_path / "b", "mel_16bar", 2, cache=tune_cache)
    _smoke(tmp_path / "b", "mel_16bar", 4, "--resume", cache=tune_cache)
    a = load_file(str(straight / "mel_16bar.safetensors"))
    b = load_file(str(half / "mel_16bar.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@needs("torch", "music21")
def test_a_time_budget_stops_cleanly_and_still_exports(tmp_path, tune_cache):
    from magenta_api.store.readers.native import read_native

    out = _smoke(tmp_path, "mel_16bar", 50, "--max-minutes", "0.000001", cache=tune_cache)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] < 50 and summary["requested_steps"] == 50 and summary["stopped_by_budget"]
    variables, _ = read_native(out / "mel_16bar.safetensors")
    assert int(np.asarray(variables["global_step"])) == summary["steps"]
