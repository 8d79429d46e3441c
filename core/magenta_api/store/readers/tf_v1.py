"""TensorFlow V1 checkpoints: one SSTable of SavedTensorSlices protos (what magenta writes into ``.mag``).

Key ``""`` holds SavedTensorSliceMeta (every tensor's name, shape, dtype, slices); every other key holds
one SavedSlice whose TensorProto carries the values (``tensor_content`` or packed ``*_val`` fields).
"""

import logging

import numpy as np

from ..errors import CheckpointInvalid
from ..protowire import VARINT, fields, read_varint, to_signed64
from . import tfproto
from .sstable import iter_table

log = logging.getLogger(__name__)

# TensorProto field number carrying the values of each dtype when tensor_content is absent.
_VAL_FIELD = {1: 5, 2: 6, 3: 7, 4: 7, 5: 7, 6: 7, 9: 10, 10: 11, 14: 7, 17: 7, 19: 13, 22: 16, 23: 17}
_FIXED = {5: np.dtype("<f4"), 6: np.dtype("<f8")}


def _varints(chunks, signed64):
    out = []
    for wire, value in chunks:
        if wire == VARINT:
            out.append(value)
        else:
            pos = 0
            while pos < len(value):
                v, pos = read_varint(value, pos)
                out.append(v)
    return [to_signed64(v) for v in out] if signed64 else out


def decode_tensor_proto(buf, dtype_code, name):
    """TensorProto -> flat NumPy array of ``dtype_code``."""
    dtype = tfproto.numpy_dtype(dtype_code, name)
    val_field = _VAL_FIELD.get(dtype_code)
    content, chunks = None, []
    for number, wire, value in fields(buf):
        if number == 4:
            content = value
        elif number == val_field:
            chunks.append((wire, value))
    if content is not None:
        return np.frombuffer(content, dtype.newbyteorder("<")).astype(dtype, copy=False)
    if val_field in _FIXED:
        raw = b"".join(bytes(v) for _, v in chunks)  # packed (LENGTH) or one fixed value per field
        return np.frombuffer(raw, _FIXED[val_field]).astype(dtype)
    # int64 and the int32 family are sign-extended varints; unsigned ones are not.
    values = _varints(chunks, signed64=dtype_code in (3, 5, 6, 9))
    if dtype_code == 19:  # half_val holds the float16 bits
        return np.array(values, np.uint16).view(np.float16)
    return np.array(values, dtype=np.uint64 if dtype_code == 23 else None).astype(dtype)


class TFV1Reader:
    """All tensors of a V1 checkpoint held in memory (``data``: bytes, mmap or a file path)."""

    def __init__(self, data, name="V1 checkpoint"):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            with open(data, "rb") as f:
                data = f.read()
        self.name = name
        self.meta, self._data = {}, []
        for key, value in iter_table(data, name=name):
            for number, _, v in fields(value):
                if number == 1 and key == b"":
                    self._parse_meta(v)
                elif number == 2:
                    self._data.append(v)
        if not self.meta and not self._data:
            raise CheckpointInvalid(f"{name}: empty V1 checkpoint")

    def _parse_meta(self, buf):
        for number, _, value in fields(buf):
            if number != 1:
                continue
            name, shape, dtype = "", (), 1
            for n, _, v in fields(value):
                if n == 1:
                    name = bytes(v).decode()
                elif n == 2:
                    shape = tfproto.parse_shape(v)
                elif n == 3:
                    dtype = v
            self.meta[name] = (dtype, shape)

    def names(self, include_slots=False):
        return [
            n
            for n, (dtype, _) in self.meta.items()
            if dtype != 7 and (include_slots or not tfproto.is_optimizer_slot(n))
        ]

    def read_all(self, include_slots=False):
        wanted = set(self.names(include_slots))
        out = {}
        for saved_slice in self._data:
            name, extents, tensor = None, [], None
            for number, _, v in fields(saved_slice):
                if number == 1:
                    name = bytes(v).decode()
                    if name not in wanted:
                        break  # optimizer slot or string: skip without decoding its values
                elif number == 2:
                    extents = tfproto.parse_slice(v)
                elif number == 3:
                    tensor = v
            if name not in wanted or tensor is None:
                continue
            dtype_code, shape = self.meta[name]
            flat = decode_tensor_proto(tensor, dtype_code, name)
            if dtype_code == tfproto.BFLOAT16:
                flat = tfproto.bfloat16_to_float32(flat)
            if name not in out:
                out[name] = np.zeros(shape, flat.dtype)
            index = tfproto.slice_index(extents, shape) if extents else tuple(slice(0, d) for d in shape)
            region = out[name][index]
            if flat.size == 1 and region.size > 1:  # TensorProto broadcasts a single repeated value
                flat = np.full(region.size, flat[0], flat.dtype)
            if flat.size != region.size:
                raise CheckpointInvalid(
                    f"{self.name}: tensor {name!r} slice has {flat.size} values, expected {region.size}"
                )
            out[name][index] = flat.reshape(region.shape)
        missing = wanted - set(out)
        for name in missing:  # an empty tensor may have no data entry
            dtype_code, shape = self.meta[name]
            if int(np.prod(shape)) != 0:
                raise CheckpointInvalid(f"{self.name}: no data for tensor {name!r}")
            out[name] = np.zeros(shape, tfproto.numpy_dtype(dtype_code, name))
        return out


def is_v1_file(path):
    """A V1 checkpoint is one SSTable file (ends with the table magic)."""
    try:
        with open(path, "rb") as f:
            f.seek(-8, 2)
            return f.read(8) == bytes.fromhex("57fb808b247547db")
    except OSError:
        return False
