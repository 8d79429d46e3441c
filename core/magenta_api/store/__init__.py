"""Checkpoint store: fetch, verify and read every Magenta checkpoint format with NumPy alone."""

from .errors import CheckpointError, CheckpointUnavailable
from .store import FORMATS, CheckpointStore, read_source

__all__ = ["CheckpointStore", "CheckpointError", "CheckpointUnavailable", "FORMATS", "read_source"]
