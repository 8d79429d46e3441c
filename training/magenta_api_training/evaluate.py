"""Quality evaluation: samples from our NumPy engines vs held-out windows vs random weights.

For every model, 1,000 samples are drawn with the service's own engines (``MusicVAEEngine``,
``EventRnn``) from (a) the shipped weights and (b) the same architecture with the untrained
initial weights of the trainer (seeded), and compared with held-out windows (tunes or grooves
never seen in training). Each metric is a *distance to the held-out data*; lower is better.

Melody metrics (on note-on pitches of each 2- or 4-bar window):
  pitch-class histogram distance (total variation; pitch classes relative to each window's
  best-fitting major key), in-scale ratio (share of notes in the best fitting major scale),
  note density (note-ons per bar), interval histogram distance (total variation over -12..12,
  larger leaps pooled), repetition (share of one-beat cells that repeat an earlier cell of the
  window). The rest ratio (share of silent steps) is reported as a value, not scored. The 16-bar
  model adds bar repetition (share of bars that repeat an earlier bar of the window note for note:
  the form a hierarchical decoder is for).
MusicVAE models are sampled at their models.yaml default temperature (0.5, what a request gets
by default), the RNN at 1.0 (its default); random weights at the same temperature.
Drum metrics: per-class hit-rate distance (L1 over the 9 classes), backbeat strength (share of
  bars with a snare on beats 2 and 4), downbeat kick rate, hit density, onset-position histogram
  distance, and bar similarity (share of the 16 x 9 step/instrument cells that bar 2 repeats
  from bar 1).
"""

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)


# ---- melody metrics ---------------------------------------------------------------------------


def _notes(events):
    """Note-on pitches of one raw event list (-2 hold, -1 off, >=0 pitch)."""
    e = np.asarray(events)
    return e[e >= 0]


def best_major_key(pitches) -> int:
    """Tonic (0-11) of the major scale that holds most of ``pitches``."""
    h = np.bincount(np.asarray(pitches) % 12, minlength=12)
    return int(np.argmax([(h * np.roll(MAJOR, k)).sum() for k in range(12)]))


def pitch_class_hist(windows):
    """Pitch classes relative to each window's best-fitting major key (key-invariant, so that
    transposed data and data in C compare alike)."""
    h = np.zeros(12)
    for w in windows:
        n = _notes(w)
        if len(n):
            h += np.bincount((n - best_major_key(n)) % 12, minlength=12)
    return h / max(h.sum(), 1)


def interval_hist(windows):
    h = np.zeros(26)
    for w in windows:
        n = _notes(w)
        d = np.diff(n)
        big = np.abs(d) > 12
        h += np.bincount(np.clip(d[~big], -12, 12) + 12, minlength=26)[:26]
        h[25] += big.sum()
    return h / max(h.sum(), 1)


def in_scale_ratio(windows):
    vals = []
    for w in windows:
        n = _notes(w)
        if not len(n):
            continue
        pcs = np.bincount(n % 12, minlength=12)
        vals.append(max((pcs * np.roll(MAJOR, k)).sum() for k in range(12)) / len(n))
    return float(np.mean(vals)) if vals else 0.0


def note_density(windows, steps_per_bar=16):
    return float(np.mean([(np.asarray(w) >= 0).sum() for w in windows]) * steps_per_bar / len(windows[0]))


def sounding(events):
    """Boolean per step: a note sounds (after an onset, before a note-off)."""
    on, out = False, []
    for e in events:
        if e >= 0:
            on = True
        elif e == -1:
            on = False
        out.append(on)
    return np.array(out)


def rest_ratio(windows):
    return float(np.mean([1.0 - sounding(w).mean() for w in windows]))


def repetition(windows, cell=4):
    vals = []
    for w in windows:
        cells = [tuple(w[i : i + cell]) for i in range(0, len(w), cell)]
        vals.append(sum(c in cells[:k] for k, c in enumerate(cells)) / (len(cells) - 1))
    return float(np.mean(vals))


def bar_repetition(windows, steps_per_bar=16):
    vals = []
    for w in windows:
        bars = [tuple(w[i : i + steps_per_bar]) for i in range(0, len(w), steps_per_bar)]
        vals.append(sum(b in bars[:k] for k, b in enumerate(bars)) / (len(bars) - 1))
    return float(np.mean(vals))


def tv(p, q):
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def melody_stats(windows, bars: bool = False) -> dict:
    """Statistics of raw event windows; ``bars``: with :func:`bar_repetition` (16-bar windows)."""
    stats = {
        "pitch_class_hist": pitch_class_hist(windows),
        "interval_hist": interval_hist(windows),
        "in_scale_ratio": in_scale_ratio(windows),
        "note_density": note_density(windows),
        "repetition": repetition(windows),
        "rest_ratio": rest_ratio(windows),
    }
    if bars:
        stats["bar_repetition"] = bar_repetition(windows)
    return stats


def melody_distances(stats: dict, ref: dict) -> dict:
    scalars = [k for k in ("in_scale_ratio", "note_density", "repetition", "bar_repetition") if k in ref]
    return {
        "pitch_class_hist_tv": tv(stats["pitch_class_hist"], ref["pitch_class_hist"]),
        "interval_hist_tv": tv(stats["interval_hist"], ref["interval_hist"]),
        **{f"{k}_abs_diff": abs(stats[k] - ref[k]) for k in scalars},
    }


# ---- drum metrics -------------------------------------------------------------------------------


def drum_stats(labels) -> dict:
    from .grooves import CLASS_NAMES, KICK, SNARE, labels_to_roll

    roll = labels_to_roll(np.asarray(labels))  # [N, T, 9]
    n, t, _ = roll.shape
    bars = roll.reshape(n, t // 16, 16, 9)
    hits = roll.any(-1)
    pos = hits.reshape(n, t // 16, 16).sum(axis=(0, 1)).astype(float)
    return {
        "class_hit_rate": dict(zip(CLASS_NAMES, roll.mean(axis=(0, 1)).round(5).tolist())),
        "backbeat_strength": float((bars[:, :, 4, SNARE] & bars[:, :, 12, SNARE]).mean()),
        "downbeat_kick": float(bars[:, :, 0, KICK].mean()),
        "hit_density": float(roll.sum(-1).mean() * 16),
        "onset_position_hist": pos / max(pos.sum(), 1),
        "bar_similarity": float((bars[:, 0] == bars[:, 1]).mean()),
    }


def drum_distances(stats: dict, ref: dict) -> dict:
    a = np.array(list(stats["class_hit_rate"].values()))
    b = np.array(list(ref["class_hit_rate"].values()))
    return {
        "class_hit_rate_l1": float(np.abs(a - b).sum()),
        "onset_position_hist_tv": tv(stats["onset_position_hist"], ref["onset_position_hist"]),
        **{
            f"{k}_abs_diff": abs(stats[k] - ref[k])
            for k in ("backbeat_strength", "downbeat_kick", "hit_density", "bar_similarity")
        },
    }


# ---- sampling through the NumPy engines ---------------------------------------------------------


def vae_samples(variables, n: int, rng: np.random.Generator, temperature=1.0, batch=250):
    """Class indices [n, 32] decoded from z ~ N(0, 1) by the musicvae plugin's engine."""
    from magenta_api_musicvae.engine import MusicVAEEngine

    eng = MusicVAEEngine(variables)
    out = []
    for k in range(0, n, batch):
        z = rng.standard_normal((min(batch, n - k), eng.z_size)).astype(np.float32)
        out.append(eng.sample(z, 32, temperature, rng))
    return np.concatenate(out)


def hier_samples(variables, n: int, rng: np.random.Generator, temperature=1.0, batch=100, level_lengths=(16, 16)):
    """Class indices [n, 256] decoded from z ~ N(0, 1) by the musicvae plugin's general engine
    (hierarchical decoder, as the service runs ``embedded-mel_16bar``)."""
    from magenta_api_musicvae.hierarchy import VAEModel

    eng = VAEModel(variables, level_lengths=list(level_lengths))
    steps = int(np.prod(level_lengths))
    out = []
    for k in range(0, n, batch):
        z = rng.standard_normal((min(batch, n - k), eng.z_size)).astype(np.float32)
        out.append(eng.sample(z, steps, temperature, rng)[..., 0])
    return np.concatenate(out)


def rnn_samples(variables, first_events, steps: int, rng: np.random.Generator, temperature=1.0):
    """Class indices [n, steps]: each row starts from ``first_events[i]`` (a class index) and
    the melody_rnn plugin's engine samples the rest step by step."""
    from magenta_api_melody_rnn.engine import EventRnn

    eng = EventRnn.from_variables(variables)
    n = len(first_events)
    out = np.zeros((n, steps), np.int64)
    out[:, 0] = first_events
    state = eng.zero_state(n)
    eye = np.eye(eng.num_classes, dtype=np.float32)
    for t in range(1, steps):
        logits, state = eng.step(eye[out[:, t - 1]], state)
        p = np.exp((logits - logits.max(-1, keepdims=True)) / temperature)
        p /= p.sum(-1, keepdims=True)
        u = rng.random((n, 1))
        out[:, t] = np.minimum((np.cumsum(p, -1) < u).sum(-1), eng.num_classes - 1)
    return out


def random_variables(name: str, seed: int):
    """The trainer's initial (untrained) weights for model ``name``, in Magenta's layout."""
    import torch

    from .export import model_variables
    from .train import build_config, build_model

    cfg = build_config(name)
    torch.manual_seed(seed)
    return model_variables(build_model(cfg), cfg)


# ---- the whole evaluation -----------------------------------------------------------------------


def _fmt(d):
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


TEMPERATURES = {"mel_2bar": 0.5, "drums_2bar": 0.5, "basic_rnn": 1.0, "mel_16bar": 0.5}


def evaluate_model(name: str, variables, samples=1000, seed=0, cache_dir=None, temperature=None) -> dict:
    """Metrics of trained vs random weights against held-out data for one embedded model."""
    temp = TEMPERATURES[name] if temperature is None else temperature
    from . import data_music21 as dm
    from . import datasets

    rng = np.random.default_rng(seed)
    rand_vars = random_variables(name, seed + 1)
    if name == "drums_2bar":
        from .grooves import train_validation_windows

        _, held = train_validation_windows(seed=0)
        ref = drum_stats(held)
        trained = drum_stats(vae_samples(variables, samples, rng, temp))
        random = drum_stats(vae_samples(rand_vars, samples, rng, temp))
        dist = drum_distances
        reference = {"held_out_windows": len(held)}
    else:
        cache = Path(cache_dir) if cache_dir else datasets.DEFAULT_CACHE
        ts = datasets.load_or_extract_tunes(cache, expand_repeats=name == "mel_16bar")
        if name == "mel_16bar":
            held = dm.melody_windows(ts, steps=256, validation=True)
            decode = lambda c: dm.decode_events(c, dm.VAE_MIN_PITCH)  # noqa: E731
            trained_w = decode(hier_samples(variables, samples, rng, temp))
            random_w = decode(hier_samples(rand_vars, samples, rng, temp))
        elif name == "mel_2bar":
            held = dm.melody_windows(ts, validation=True)
            decode = lambda c: dm.decode_events(c, dm.VAE_MIN_PITCH)  # noqa: E731
            trained_w = decode(vae_samples(variables, samples, rng, temp))
            random_w = decode(vae_samples(rand_vars, samples, rng, temp))
        else:
            held = dm.rnn_windows(ts, 64, validation=True)
            starts = dm.encode_events(held[rng.integers(0, len(held), samples), 0], dm.RNN_MIN_NOTE)
            decode = lambda c: dm.decode_events(c, dm.RNN_MIN_NOTE)  # noqa: E731
            trained_w = decode(rnn_samples(variables, starts, 64, rng, temp))
            random_w = decode(rnn_samples(rand_vars, starts, 64, rng, temp))
        bars = name == "mel_16bar"
        ref, trained, random = (melody_stats(w, bars) for w in (held, trained_w, random_w))
        dist = melody_distances
        reference = {"held_out_windows": len(held)}
    d_trained, d_random = dist(trained, ref), dist(random, ref)
    scalars = lambda s: {k: v for k, v in s.items() if isinstance(v, (float, dict))}  # noqa: E731
    return {
        "model": name,
        "samples": samples,
        "seed": seed,
        "temperature": temp,
        **reference,
        "distance_trained": _fmt(d_trained),
        "distance_random": _fmt(d_random),
        "trained_closer_on_every_metric": all(d_trained[k] < d_random[k] for k in d_trained),
        "values": {"held_out": _fmt(scalars(ref)), "trained": _fmt(scalars(trained)), "random": _fmt(scalars(random))},
    }


def markdown_table(result: dict) -> str:
    rows = [
        "| metric (distance to held-out, lower is better) | trained | random weights | ratio |",
        "|---|---:|---:|---:|",
    ]
    for k, v in result["distance_trained"].items():
        r = result["distance_random"][k]
        ratio = f"{r / v:.1f}x" if v > 0 else "inf"
        rows.append(f"| {k} | {v:.4f} | {r:.4f} | {ratio} |")
    vals = result["values"]
    rows += ["", "| value | held-out | trained | random weights |", "|---|---:|---:|---:|"]
    for k, v in vals["held_out"].items():
        if isinstance(v, dict):
            for c in v:
                rows.append(f"| {k}.{c} | {v[c]:.4f} | {vals['trained'][k][c]:.4f} | {vals['random'][k][c]:.4f} |")
        else:
            rows.append(f"| {k} | {v:.4f} | {vals['trained'][k]:.4f} | {vals['random'][k]:.4f} |")
    return "\n".join(rows)


def shipped_variables(model_id: str):
    """Weights of an embedded model, read by the checkpoint store's native reader."""
    import yaml

    import magenta_api_embedded as emb
    from magenta_api.store.readers.native import read_native

    doc = yaml.safe_load(emb.MODELS_FILE.read_text())
    url = doc["models"][model_id]["checkpoint"]["url"]
    variables, _ = read_native(emb.HERE / url)
    return variables


EMBEDDED = {
    "mel_2bar": "embedded-mel_2bar",
    "drums_2bar": "embedded-drums_2bar",
    "basic_rnn": "embedded-basic_rnn",
    "mel_16bar": "embedded-mel_16bar",
}


def main(samples=1000, seed=0, json_path=None, models=None, weights=None) -> int:
    """Evaluate the shipped models (or ``weights``: {name: safetensors path}) and print tables."""
    results = {}
    for name in models or EMBEDDED:
        if weights and name in weights:
            from magenta_api.store.readers.native import read_native

            variables, _ = read_native(weights[name])
        else:
            variables = shipped_variables(EMBEDDED[name])
        res = evaluate_model(name, variables, samples, seed)
        results[name] = res
        print(
            f"## {name}\n\n{markdown_table(res)}\n\ntrained closer on every metric: "
            f"{res['trained_closer_on_every_metric']}\n"
        )
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return 0 if all(r["trained_closer_on_every_metric"] for r in results.values()) else 1
