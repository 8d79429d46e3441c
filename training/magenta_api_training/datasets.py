"""Training batches for each model kind, drawn reproducibly from cached windows."""

import logging
from pathlib import Path

import numpy as np

from . import data_music21 as dm

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache"


def tunes_path(cache_dir: Path, limit=None, expand_repeats: bool = False) -> Path:
    name = "tunes-repeats" if expand_repeats else "tunes"
    return Path(cache_dir) / (f"{name}-limit{limit}.npz" if limit else f"{name}.npz")


def load_or_extract_tunes(cache_dir: Path, limit=None, seed=0, progress=True, expand_repeats=False) -> dm.TuneSet:
    """The parsed tune books, from the cache if present (full extraction takes ~2-4 min);
    ``expand_repeats``: as played, repeats written out (the 16-bar model's data)."""
    path = tunes_path(cache_dir, limit, expand_repeats)
    if path.exists():
        return dm.load_tunes(path)
    ts = dm.extract_tunes(limit=limit, seed=seed, progress=progress, expand_repeats=expand_repeats)
    dm.save_tunes(ts, path)
    return ts


class MelodyData:
    """2-bar windows for the MusicVAE melody model; labels in MelodyOneHotEncoding(21, 109)."""

    depth = 90

    def __init__(self, ts: dm.TuneSet, transpose_range=(-5, 5)):
        self.train = dm.melody_windows(ts, validation=False)
        self.valid = dm.melody_windows(ts, validation=True)
        self.transpose_range = transpose_range
        log.info("melody windows: %d train, %d validation", len(self.train), len(self.valid))

    def batch(self, rng: np.random.Generator, size: int):
        idx = rng.integers(0, len(self.train), size)
        lo, hi = self.transpose_range
        amounts = rng.integers(lo, hi + 1, size)
        raw = dm.transpose_windows(self.train[idx], amounts)
        return dm.encode_events(raw, dm.VAE_MIN_PITCH)

    def validation(self, limit=1024):
        return dm.encode_events(self.valid[:limit], dm.VAE_MIN_PITCH)


class Melody16Data(MelodyData):
    """16-bar windows (256 steps, a bar's hop) for the hierarchical melody model, same encoding,
    transposition and split by tune as :class:`MelodyData`; from tunes with their repeats written
    out (:func:`load_or_extract_tunes` with ``expand_repeats``), so a window holds a tune's form."""

    bars = 16

    def __init__(self, ts: dm.TuneSet, transpose_range=(-5, 5)):
        steps = self.bars * dm.STEPS_PER_BAR
        self.train = dm.melody_windows(ts, steps=steps, validation=False)
        self.valid = dm.melody_windows(ts, steps=steps, validation=True)
        self.transpose_range = transpose_range
        log.info("16-bar melody windows: %d train, %d validation", len(self.train), len(self.valid))


class DrumData:
    """2-bar windows of the project's groove library; labels are 512-way drum one-hot indices."""

    depth = 512

    def __init__(self, seed=0, smoke=False):
        from . import grooves

        self.train, self.valid = grooves.train_validation_windows(seed=seed, small=smoke)
        log.info("drum windows: %d train, %d validation", len(self.train), len(self.valid))

    def batch(self, rng: np.random.Generator, size: int):
        return self.train[rng.integers(0, len(self.train), size)]

    def validation(self, limit=1024):
        return self.valid[:limit]


class MelodyRnnData:
    """4-bar windows in C, squashed into [48, 84), for basic_rnn (MelodyOneHotEncoding(48, 84))."""

    depth = 38

    def __init__(self, ts: dm.TuneSet, seq_len=64):
        self.train = dm.encode_events(dm.rnn_windows(ts, seq_len, validation=False), dm.RNN_MIN_NOTE)
        self.valid = dm.encode_events(dm.rnn_windows(ts, seq_len, validation=True), dm.RNN_MIN_NOTE)
        log.info("melody-rnn windows: %d train, %d validation", len(self.train), len(self.valid))

    def batch(self, rng: np.random.Generator, size: int):
        return self.train[rng.integers(0, len(self.train), size)]

    def validation(self, limit=1024):
        return self.valid[:limit]
