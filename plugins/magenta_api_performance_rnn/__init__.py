"""PerformanceRNN for magenta-api: Magenta's expressive-piano events RNN on NumPy (entry point
``performance_rnn`` in the ``magenta_api`` group), on the melody_rnn plugin's engine and beam search."""

from magenta_api import hookimpl

from .family import PerformanceRnnFamily

__all__ = ["PerformanceRnnFamily"]


@hookimpl
def register_families(register):
    register(PerformanceRnnFamily)
