"""Training batches for each model kind, drawn reproducibly from cached windows."""

import logging
from pathlib import Path

import numpy as np

from . import data_music21 as dm

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache"


def tunes_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / "tunes.npz"


def load_or_extract_tunes(cache_dir: Path, limit=None, seed=0, progress=True) -> dm.TuneSet:
    """The parsed tune books, from the cache if present (full extraction takes ~2 min)."""
    path = tunes_path(cache_dir) if not limit else Path(cache_dir) / f"tunes-limit{limit}.npz"
    if path.exists():
        return dm.load_tunes(path)
    ts = dm.extract_tunes(limit=limit, seed=seed, progress=progress)
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
