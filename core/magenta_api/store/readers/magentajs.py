"""Magenta.js checkpoints: ``weights_manifest.json`` + binary shards (tfjs layout), plus ``config.json``.

Each manifest group's shards are one byte stream cut into files; its weights follow each other in
manifest order. A weight may be quantized (``quantization: {dtype: uint8|uint16|float16, scale, min}``):
value = q * scale + min (tfjs ``dequantize``).
"""

import json
import pathlib

import numpy as np

from ..errors import CheckpointInvalid

_DTYPES = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype(np.bool_),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}


def load_manifest(path):
    try:
        manifest = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointInvalid(f"{path}: unreadable weights manifest ({exc})") from exc
    if not isinstance(manifest, list) or not all(isinstance(g, dict) and "paths" in g for g in manifest):
        raise CheckpointInvalid(f"{path}: not a tfjs weights manifest (expected a list of groups)")
    return manifest


def shard_names(manifest):
    """Every shard file name, in manifest order."""
    return [p for group in manifest for p in group["paths"]]


def entry_nbytes(entry):
    quant = entry.get("quantization")
    name = quant["dtype"] if quant else entry["dtype"]
    if name not in _DTYPES:
        raise CheckpointInvalid(f"Magenta.js weight {entry.get('name')!r}: unsupported dtype {name}")
    dtype = _DTYPES[name]
    return int(np.prod(entry["shape"], dtype=np.int64)) * dtype.itemsize


def group_nbytes(group):
    return sum(entry_nbytes(e) for e in group["weights"])


def _dequantize(raw, entry):
    quant = entry["quantization"]
    if quant["dtype"] == "float16":
        values = raw.astype(np.float32)
    else:
        values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    return values.astype(_DTYPES[entry.get("dtype", "float32")])


def read_magentajs(folder, progress=None):
    """Return (variables, meta) from a folder with weights_manifest.json, its shards and config.json;
    ``progress(bytes done, total)`` is called after each manifest group."""
    folder = pathlib.Path(folder)
    manifest = load_manifest(folder / "weights_manifest.json")
    variables = {}
    total = sum(group_nbytes(g) for g in manifest) if progress else 0
    done = 0
    for group in manifest:
        parts = []
        for name in group["paths"]:
            try:
                parts.append(np.fromfile(folder / name, np.uint8))
            except OSError as exc:
                raise CheckpointInvalid(f"Magenta.js shard {folder / name} unreadable: {exc}") from exc
        stream = np.concatenate(parts) if len(parts) != 1 else parts[0]
        need = group_nbytes(group)
        if stream.size != need:
            raise CheckpointInvalid(
                f"Magenta.js shards in {folder}: {stream.size} bytes, the manifest describes {need}"
            )
        offset = 0
        for entry in group["weights"]:
            quant = entry.get("quantization")
            dtype_name = quant["dtype"] if quant else entry["dtype"]
            if dtype_name not in _DTYPES:
                raise CheckpointInvalid(f"Magenta.js weight {entry['name']!r}: unsupported dtype {dtype_name}")
            n = entry_nbytes(entry)
            raw = stream[offset : offset + n].view(_DTYPES[dtype_name]).reshape(entry["shape"])
            offset += n
            variables[entry["name"]] = _dequantize(raw, entry) if quant else raw.copy()
        if progress:
            done += need
            progress(done, total)
    meta = {}
    config = folder / "config.json"
    if config.exists():
        try:
            meta["config"] = json.loads(config.read_text())
        except ValueError as exc:
            raise CheckpointInvalid(f"{config}: invalid JSON ({exc})") from exc
    return variables, meta
