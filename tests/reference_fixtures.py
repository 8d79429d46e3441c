"""Readers of the parity fixtures that the reference scripts write, one folder per config:
``<root>/<config>/reference.json`` (what Magenta did), ``reference.npz`` (its arrays) and ``weights.npz``
(the random weights it ran on). Each reader caches, since many tests read the same config."""

import json
from functools import cache
from pathlib import Path

import numpy as np


def fixture_readers(root: Path):
    """(reference, arrays, weights) for the config folders under ``root``, each called with a config name."""

    @cache
    def reference(name):
        return json.loads((root / name / "reference.json").read_text())

    @cache
    def arrays(name):
        return dict(np.load(root / name / "reference.npz"))

    @cache
    def weights(name):
        return dict(np.load(root / name / "weights.npz"))

    return reference, arrays, weights
