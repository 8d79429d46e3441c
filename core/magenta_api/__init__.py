"""magenta-api: a plugin-based REST service for Magenta's symbolic-music models, on NumPy.

What plugin authors import::

    from magenta_api import hookimpl, Family, ModelSpec, GenerateRequest, GenerateResult, Unprocessable
    from magenta_api.chords import CHORDS_SCHEMA, parse_chords  # chord-conditioned families (note-seq)
"""

__version__ = "0.1.0"  # before the imports below, which may import modules that read it

from .checkpoint import Checkpoint
from .errors import InvalidRequest, Unprocessable
from .family import Family, GenerateRequest, GenerateResult, ModelSpec
from .hookspecs import hookimpl

__all__ = [
    "Checkpoint",
    "Family",
    "GenerateRequest",
    "GenerateResult",
    "InvalidRequest",
    "ModelSpec",
    "Unprocessable",
    "__version__",
    "hookimpl",
]
