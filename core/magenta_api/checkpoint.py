"""What the checkpoint store hands a family: variables by Magenta name, plus what format they came from."""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Checkpoint:
    """Loaded weights of one model.

    ``variables`` maps Magenta's variable names (``decoder/output_projection/kernel``...) to
    arrays, usually read-only memory maps. ``format`` is the source format (``tf``, ``tf-tar``,
    ``mag``, ``magentajs``, ``native``); ``meta`` carries what the format adds (Magenta.js
    ``config.json`` under ``"config"``, a ``.mag`` bundle's ``generator_id``/``description``...).
    ``sha256`` identifies the fetched artefact and keys the result cache.
    """

    variables: Mapping[str, np.ndarray]
    format: str = "native"
    meta: dict = field(default_factory=dict)
    sha256: str = ""

    def __getitem__(self, name):
        return self.variables[name]

    def __contains__(self, name):
        return name in self.variables
