"""A minimal protobuf wire-format decoder, so TensorFlow's checkpoint protos need no TF or generated code."""

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class ProtoDecodeError(ValueError):
    """The bytes are not the protobuf message we expected (truncated or corrupt)."""


def read_varint(buf, pos):
    """Decode one base-128 varint at ``pos``; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtoDecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoDecodeError("varint too long")


def fields(buf):
    """Yield (field number, wire type, value) for each field of a serialized message.

    LENGTH values are memoryview slices (no copy), so big ``tensor_content`` fields stay cheap.
    """
    view = memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        key, pos = read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(view, pos)
        elif wire == FIXED64:
            value = bytes(view[pos : pos + 8])
            pos += 8
        elif wire == FIXED32:
            value = bytes(view[pos : pos + 4])
            pos += 4
        elif wire == LENGTH:
            length, pos = read_varint(view, pos)
            value = view[pos : pos + length]
            pos += length
        else:
            raise ProtoDecodeError(f"unsupported wire type {wire}")
        if pos > end:
            raise ProtoDecodeError("truncated message")
        yield number, wire, value


def to_signed64(value):
    """Reinterpret a varint as int64 (negative numbers are 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value
