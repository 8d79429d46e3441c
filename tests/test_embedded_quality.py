"""The quality metrics of bench/quality.py on hand-made inputs whose answers are known."""

import embedded_support  # noqa: F401
import numpy as np

from magenta_api_training import evaluate as ev
from magenta_api_training import grooves

C_SCALE = [60, -2, 62, -2, 64, -2, 65, -2, 67, -2, 69, -2, 71, -2, 72, -1]


def test_pitch_class_histogram_is_key_relative():
    c = np.array([C_SCALE * 2])
    d = np.array([[e + 2 if e >= 0 else e for e in C_SCALE * 2]])
    np.testing.assert_allclose(ev.pitch_class_hist(c), ev.pitch_class_hist(d))
    assert ev.tv(ev.pitch_class_hist(c), ev.pitch_class_hist(c)) == 0.0


def test_melody_values():
    w = np.array([C_SCALE * 2])
    assert ev.in_scale_ratio(w) == 1.0
    assert ev.note_density(w) == 8.0  # 16 note-ons over 2 bars
    chromatic = np.array([[60 + k if k % 2 == 0 else -2 for k in range(32)]])
    assert ev.in_scale_ratio(chromatic) < 0.9
    hist = ev.interval_hist(np.array([[60, 62, 60, 75, -2, 60]]))
    # +2, -2, then +15 and -15 pooled into the last bin
    assert hist[12 + 2] == hist[12 - 2] == 0.25 and hist[25] == 0.5 and hist[0] == 0.0
    repeated = np.array([[60, -2, -2, -2] * 8])
    assert ev.repetition(repeated) == 1.0
    assert ev.rest_ratio(np.array([[60, -2, -1, -2]])) == 0.5


def test_drum_values_on_a_rock_beat():
    style = grooves.STYLES["rock"]
    bar = grooves._bar(style, style["kick"][0], style["snare"][0], "hh8")
    labels = grooves.roll_to_labels(np.concatenate([bar, bar]))[None]
    stats = ev.drum_stats(labels)
    assert stats["backbeat_strength"] == 1.0 and stats["downbeat_kick"] == 1.0
    assert stats["bar_similarity"] == 1.0
    assert stats["class_hit_rate"]["closed_hh"] == 0.5 and stats["class_hit_rate"]["crash"] == 0.0
    assert stats["hit_density"] == 12.0  # 8 hats + 2 kicks + 2 snares per bar
    d = ev.drum_distances(stats, stats)
    assert all(v == 0.0 for v in d.values())


def test_bar_repetition_counts_bars_repeated_note_for_note():
    a, b = C_SCALE, [e + 2 if e >= 0 else e for e in C_SCALE]
    aabb = np.array([a + a + b + b])  # bars 2 and 4 repeat bars 1 and 3
    assert ev.bar_repetition(aabb) == 2 / 3
    assert ev.bar_repetition(np.array([a + b])) == 0.0
    stats = ev.melody_stats(aabb, bars=True)
    assert stats["bar_repetition"] == 2 / 3 and "bar_repetition" not in ev.melody_stats(aabb)
    d = ev.melody_distances(ev.melody_stats(np.array([a + b + a + b]), bars=True), stats)
    assert d["bar_repetition_abs_diff"] == 0.0  # ABAB repeats two bars too
    assert set(ev.melody_distances(ev.melody_stats(aabb), ev.melody_stats(aabb))) == {
        "pitch_class_hist_tv",
        "interval_hist_tv",
        "in_scale_ratio_abs_diff",
        "note_density_abs_diff",
        "repetition_abs_diff",
    }
