"""Shared loaders for the melody_rnn plugin's tests (fixtures made by reference/melody_rnn_reference.py)."""

from pathlib import Path

import numpy as np
from reference_fixtures import fixture_readers

from magenta_api.checkpoint import Checkpoint
from magenta_api.family import GenerateRequest, ModelSpec

FIX = Path(__file__).parent / "fixtures" / "melody_rnn"
CONFIGS = ["basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn", "attention_rnn_stacked"]
MIDI = sorted((FIX / "midi").glob("*.mid"))


def config_of(name):
    return name.replace("_stacked", "")


reference, arrays, weights = fixture_readers(FIX)


def is_drums(name):
    return name.startswith("drum")


def to_events(name, events):
    return [frozenset(e) for e in events] if is_drums(name) else list(events)


def from_events(name, events, transpose=0):
    if is_drums(name):
        return [sorted(int(p) for p in e) for e in events]
    return [int(e) if e < 0 else int(e) - transpose for e in events]


def family(name, variables=None, meta=None, hparams=None, fmt="native"):
    from magenta_api_melody_rnn.family import MelodyRnnFamily

    hp = {"config": config_of(name)} if hparams is None else hparams
    ckpt = Checkpoint(variables if variables is not None else weights(name), fmt, meta or {})
    return MelodyRnnFamily(ModelSpec(id=name, family="melody_rnn", hparams=hp), ckpt)


def request(primer=None, mode="continue", num_outputs=1, temperature=1.0, length=40, seed=0, rng=None, **params):
    payload = dict(params)
    return GenerateRequest(
        mode=mode,
        num_outputs=num_outputs,
        temperature=temperature,
        length=length,
        qpm=float(params.get("qpm", 120.0)),
        seed=seed,
        rng=rng if rng is not None else np.random.default_rng(seed),
        primer=primer,
        params=payload,
        explicit=frozenset(params),
    )
