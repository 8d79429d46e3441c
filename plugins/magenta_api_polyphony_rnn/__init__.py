"""PolyphonyRNN for magenta-api: Magenta's polyphonic events RNN on NumPy (entry point ``polyphony_rnn`` in
the ``magenta_api`` group), on the melody_rnn plugin's engine and beam search."""

from magenta_api import hookimpl

from .family import PolyphonyRnnFamily

__all__ = ["PolyphonyRnnFamily"]


@hookimpl
def register_families(register):
    register(PolyphonyRnnFamily)
