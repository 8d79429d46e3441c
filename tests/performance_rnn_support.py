"""Shared loaders for the performance_rnn plugin's tests (fixtures made by reference/performance_rnn_reference.py)."""

from pathlib import Path

from note_seq.performance_lib import PerformanceEvent
from reference_fixtures import fixture_readers

from magenta_api.checkpoint import Checkpoint
from magenta_api.family import ModelSpec

FIX = Path(__file__).parent / "fixtures" / "performance_rnn"
CONFIGS = [
    "performance",
    "performance_with_dynamics",
    "performance_with_dynamics_and_modulo_encoding",
    "density_conditioned_performance_with_dynamics",
    "pitch_conditioned_performance_with_dynamics",
    "multiconditioned_performance_with_dynamics",
    "optional_multiconditioned_performance_with_dynamics",
]
MIDI = sorted((Path(__file__).parent / "fixtures" / "melody_rnn" / "midi").glob("*.mid"))
TYPES = {"note_on": 1, "note_off": 2, "time_shift": 3, "velocity": 4}


reference, arrays, weights = fixture_readers(FIX)


def to_events(pairs):
    return [PerformanceEvent(TYPES[k], v) for k, v in pairs]


def family(name, variables=None, meta=None, hparams=None):
    from magenta_api_performance_rnn.family import PerformanceRnnFamily

    hp = {"config": name} if hparams is None else hparams
    ckpt = Checkpoint(variables if variables is not None else weights(name), "native", meta or {})
    return PerformanceRnnFamily(ModelSpec(id=name, family="performance_rnn", hparams=hp), ckpt)
