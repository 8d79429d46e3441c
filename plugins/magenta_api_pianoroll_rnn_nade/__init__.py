"""Pianoroll RNN-NADE for magenta-api: Magenta's RNN-NADE on NumPy (entry point ``pianoroll_rnn_nade`` in
the ``magenta_api`` group), the melody_rnn plugin's events RNN feeding the core NADE (``magenta_api.nade``)."""

from magenta_api import hookimpl

from .family import PianorollRnnNadeFamily

__all__ = ["PianorollRnnNadeFamily"]


@hookimpl
def register_families(register):
    register(PianorollRnnNadeFamily)
