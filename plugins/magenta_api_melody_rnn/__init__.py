"""MelodyRNN, DrumsRNN and ImprovRNN for magenta-api: Magenta's events RNNs on NumPy, registered as any
third-party plugin would be (entry point ``melody_rnn`` in the ``magenta_api`` group)."""

from magenta_api import hookimpl

from .family import MelodyRnnFamily
from .improv import ImprovRnnFamily

__all__ = ["ImprovRnnFamily", "MelodyRnnFamily"]


@hookimpl
def register_families(register):
    register(MelodyRnnFamily)
    register(ImprovRnnFamily)
