"""Shared pieces of TensorFlow's checkpoint protos: dtypes, shapes, slices, slice keys, optimizer slots."""

import numpy as np

from ..protowire import LENGTH, fields, to_signed64

# tensorflow/core/framework/types.proto DataType -> numpy dtype (None: not a numeric tensor).
DTYPES = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    7: None,
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
    14: np.dtype(np.uint16),  # bfloat16: raw bits, widened by bfloat16_to_float32
    17: np.dtype(np.uint16),
    19: np.dtype(np.float16),
    22: np.dtype(np.uint32),
    23: np.dtype(np.uint64),
}
BFLOAT16 = 14
DTYPE_NAMES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}

_SLOT_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/RMSProp", "/RMSProp_1", "/Adagrad", "/ExponentialMovingAverage")
_SLOT_NAMES = ("beta1_power", "beta2_power")


def is_optimizer_slot(name):
    """True for optimizer state (Adam moments, beta powers): not weights, never loaded."""
    base = name.rsplit("/", 1)[-1]
    return name.endswith(_SLOT_SUFFIXES) or base.startswith(_SLOT_NAMES)


def numpy_dtype(code, name):
    from ..errors import CheckpointInvalid

    dtype = DTYPES.get(code)
    if dtype is None:
        raise CheckpointInvalid(f"tensor {name!r}: unsupported dtype {DTYPE_NAMES.get(code, code)}")
    return dtype


def bfloat16_to_float32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def parse_shape(buf):
    """TensorShapeProto -> tuple of ints (dim = 2, Dim.size = 1)."""
    dims = []
    for number, wire, value in fields(buf):
        if number == 2 and wire == LENGTH:
            size = 0
            for n, _, v in fields(value):
                if n == 1:
                    size = to_signed64(v)
            dims.append(size)
    return tuple(dims)


def parse_slice(buf):
    """TensorSliceProto -> list of (start, length or -1 for 'whole dimension')."""
    extents = []
    for number, _, value in fields(buf):
        if number == 1:
            start, length = 0, -1
            for n, _, v in fields(value):
                if n == 1:
                    start = to_signed64(v)
                elif n == 2:
                    length = to_signed64(v)
            extents.append((start, length))
    return extents


def slice_index(extents, shape):
    """numpy index of a slice inside the full tensor."""
    return tuple(
        slice(0, dim) if length < 0 else slice(start, start + length) for (start, length), dim in zip(extents, shape)
    )


def _num_increasing(value):
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(raw)]) + raw


_HEADER = {
    1: (0x80, 0),
    2: (0xC0, 0),
    3: (0xE0, 0),
    4: (0xF0, 0),
    5: (0xF8, 0),
    6: (0xFC, 0),
    7: (0xFE, 0),
    8: (0xFF, 0),
    9: (0xFF, 0x80),
    10: (0xFF, 0xC0),
}


def _signed_num_increasing(value):
    x = ~value if value < 0 else value
    length = x.bit_length() // 7 + 1
    raw = bytearray(value.to_bytes(10, "big", signed=True)[-length:])
    raw[0] ^= _HEADER[length][0]
    if length > 1:
        raw[1] ^= _HEADER[length][1]
    return bytes(raw)


def slice_key(name, extents):
    """The table key TF stores one slice of a tensor under (OrderedCode, as in EncodeTensorNameSlice)."""
    escaped = name.encode().replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff")
    key = b"\x00" + escaped + b"\x00\x01" + _num_increasing(len(extents))
    for start, length in extents:
        key += _signed_num_increasing(start) + _signed_num_increasing(length)
    return key
