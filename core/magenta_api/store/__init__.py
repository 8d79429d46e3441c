"""Checkpoint store: fetch, verify and read every Magenta checkpoint format with NumPy alone."""

from .errors import CheckpointError, CheckpointInvalid, CheckpointUnavailable
from .formats import FORMATS, CheckpointFormat
from .store import CheckpointRef, CheckpointStore


def save_native(path, variables, meta=None, fmt="native", source_sha256=""):
    """Write a native (safetensors) checkpoint the store opens with ``meta`` intact (embedded models)."""
    from .readers.native import encode_meta, write_native

    write_native(path, variables, encode_meta(meta or {}, fmt, source_sha256))


__all__ = [
    "FORMATS",
    "CheckpointError",
    "CheckpointFormat",
    "CheckpointInvalid",
    "CheckpointRef",
    "CheckpointStore",
    "CheckpointUnavailable",
    "save_native",
]
