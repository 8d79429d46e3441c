"""MusicVAE for magenta-api on NumPy: the ``musicvae`` family (2-bar and 16-bar melodies, drums, trios,
chord-conditioned melodies) and the ``groovae`` family (GrooVAE: humanize, drumify / tap2drum).

Registered through the ``magenta_api`` entry point ``musicvae``.
"""

from magenta_api import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_families(register):
    from .family import MusicVAEFamily
    from .groove_family import GrooVAEFamily

    register(MusicVAEFamily)
    register(GrooVAEFamily)
