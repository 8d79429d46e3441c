"""Checkpoint store: fetch, verify and read every Magenta checkpoint format with NumPy alone."""

from .errors import CheckpointError, CheckpointUnavailable
from .store import FORMATS, CheckpointStore, native_metadata, read_source


def save_native(path, variables, meta=None, fmt="native", source_sha256=""):
    """Write a native (safetensors) checkpoint the store opens with ``meta`` intact (embedded models)."""
    from .readers.native import write_native

    write_native(path, variables, native_metadata(fmt, source_sha256, meta or {}))


__all__ = ["CheckpointStore", "CheckpointError", "CheckpointUnavailable", "FORMATS", "read_source",
           "save_native"]
