"""MusicVAE for magenta-api: flat 2-bar melody and drum models on a NumPy engine.

Registered through the ``magenta_api`` entry point ``musicvae``.
"""

from magenta_api import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_families(register):
    from .family import MusicVAEFamily

    register(MusicVAEFamily)
