"""Raw snappy decompression (LevelDB tables may store blocks snappy-compressed; TF's usually don't)."""

from ..errors import CheckpointInvalid
from ..protowire import ProtoDecodeError, read_varint


def decompress(data):
    """Decode one raw (unframed) snappy block."""
    try:
        length, pos = read_varint(data, 0)
    except ProtoDecodeError as exc:
        raise CheckpointInvalid(f"corrupt snappy block: {exc}") from exc
    out = bytearray()
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            size += 1
            out += data[pos : pos + size]
            pos += size
            continue
        if kind == 1:
            size = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 2], "little")
            pos += 2
        else:
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise CheckpointInvalid("corrupt snappy block: bad copy offset")
        start = len(out) - offset
        for i in range(size):  # byte by byte: copies may overlap their own output
            out.append(out[start + i])
    if len(out) != length:
        raise CheckpointInvalid(f"corrupt snappy block: {len(out)} bytes, header says {length}")
    return bytes(out)
