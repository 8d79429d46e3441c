"""The native copy: a safetensors file, read back by memory map.

Written with ``safetensors.numpy.save_file``; read by parsing the 8-byte header length + JSON ourselves and
making read-only ``np.memmap`` views, so a ready model loads in milliseconds and gunicorn workers share its
page cache. Store metadata (format, sha256 of the source, meta JSON) rides in ``__metadata__``, whose
values safetensors requires to be strings: :func:`encode_meta` / :func:`decode_meta` translate.
"""

import json
import os
import pathlib
import struct

import numpy as np

from ..errors import CheckpointInvalid

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024
STORE_VERSION = "1"  # bump to make the store rebuild every native copy
META_KEY = "magenta_api.meta"


def encode_meta(meta: dict, source_format: str = "native", source_sha256: str = "") -> dict:
    """The string ``__metadata__`` of a native file: the checkpoint's meta as JSON, plus where the copy
    came from (so a copy of an older download, or of an older store, is never used)."""
    return {
        "magenta_api.format": source_format,
        "magenta_api.source_sha256": source_sha256,
        "magenta_api.store_version": STORE_VERSION,
        META_KEY: json.dumps(meta, sort_keys=True),
    }


def decode_meta(metadata: dict) -> dict:
    """The checkpoint meta of a native file's ``__metadata__``; a file written by other tools has no
    meta JSON, so its JSON-looking values are decoded one by one."""
    if META_KEY in metadata:
        return json.loads(metadata[META_KEY])
    meta = {}
    for key, value in metadata.items():
        try:
            meta[key] = json.loads(value) if value[:1] in "{[" else value
        except ValueError:
            meta[key] = value
    return meta


def write_native(path, variables, metadata):
    """Atomically write ``variables`` to ``path`` (tmp file + rename); metadata values must be str.
    Any failure to write (a full disk included) is an OSError, and leaves no file behind."""
    from safetensors.numpy import save_file

    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # np.ascontiguousarray would turn scalars into shape (1,); keep 0-d tensors 0-d.
    arrays = {
        k: np.asarray(v) if np.asarray(v).flags.c_contiguous else np.asarray(v).copy(order="C")
        for k, v in variables.items()
    }
    try:
        try:
            save_file(arrays, str(tmp), metadata=metadata)
        except Exception as exc:  # safetensors reports a full disk as SafetensorError("... I/O error ...")
            if isinstance(exc, OSError):
                raise
            raise OSError(f"cannot write {path}: {exc}") from exc
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_header(path):
    """Return (tensor table, metadata, data start offset) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointInvalid(f"{path}: too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise CheckpointInvalid(f"{path}: safetensors header of {n} bytes is implausible")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:
        raise CheckpointInvalid(f"{path}: unreadable safetensors file ({exc})") from exc
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata, 8 + n


def read_native(path, progress=None):
    """(variables, meta) of a native file: read-only memory maps, and the decoded meta (``progress``
    is accepted like every reader's; nothing is read ahead)."""
    variables, metadata = read_safetensors(path)
    return variables, decode_meta(metadata)


def read_safetensors(path):
    """({name: read-only memory-mapped array}, the raw string ``__metadata__``), reading no tensor bytes."""
    path = str(path)
    header, metadata, start = read_header(path)
    size = os.path.getsize(path)
    whole = np.memmap(path, np.uint8, mode="r") if size > start else np.empty(0, np.uint8)
    variables = {}
    for name, info in header.items():
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise CheckpointInvalid(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if end - begin != nbytes or start + end > size:
            raise CheckpointInvalid(f"{path}: tensor {name!r} offsets do not match its shape (corrupt?)")
        variables[name] = whole[start + begin : start + end].view(dtype).reshape(shape)
    return variables, metadata
