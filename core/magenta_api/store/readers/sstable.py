"""Reader for TensorFlow's SSTable (the LevelDB table format of ``*.index`` files and V1 checkpoints)."""

import struct

import crc32c

from ..errors import CheckpointInvalid
from ..protowire import read_varint

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
_MASK_DELTA = 0xA282EAD8


def unmask_crc(masked):
    """Undo TF/LevelDB's crc masking (rot 15 + constant), giving the plain crc32c."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _handle(buf, pos):
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return offset, size, pos


def _block(buf, offset, size, name, verify=True):
    """Return the contents of one block after checking its type byte and crc trailer."""
    if offset + size + 5 > len(buf):
        raise CheckpointInvalid(f"{name}: table block runs past the end of the file (truncated?)")
    data = buf[offset : offset + size]
    ctype = buf[offset + size]
    if verify:
        (stored,) = struct.unpack_from("<I", buf, offset + size + 1)
        actual = crc32c.crc32c(bytes(buf[offset : offset + size + 1]))
        if unmask_crc(stored) != actual:
            raise CheckpointInvalid(f"{name}: table block checksum mismatch (corrupt file)")
    if ctype == 1:
        from .snappy import decompress

        return memoryview(decompress(bytes(data)))
    if ctype != 0:
        raise CheckpointInvalid(f"{name}: unknown table block compression {ctype}")
    return data


def _block_entries(block):
    """Yield (key, value) of one block, undoing LevelDB's key prefix compression."""
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    pos, key = 0, b""
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        vlen, pos = read_varint(block, pos)
        key = key[:shared] + bytes(block[pos : pos + unshared])
        pos += unshared
        yield key, block[pos : pos + vlen]
        pos += vlen


def iter_table(buf, name="table", verify=True):
    """Yield every (key bytes, value memoryview) of an SSTable held in ``buf`` (bytes or mmap), in key order."""
    buf = memoryview(buf)
    if len(buf) < FOOTER_SIZE:
        raise CheckpointInvalid(f"{name}: too short to be a TensorFlow table ({len(buf)} bytes)")
    footer = buf[len(buf) - FOOTER_SIZE :]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != MAGIC:
        raise CheckpointInvalid(f"{name}: not a TensorFlow table (bad magic number)")
    _, _, pos = _handle(footer, 0)  # metaindex handle: unused
    index_offset, index_size, _ = _handle(footer, pos)
    index = _block(buf, index_offset, index_size, name, verify)
    for _, handle in _block_entries(index):
        offset, size, _ = _handle(handle, 0)
        yield from _block_entries(_block(buf, offset, size, name, verify))
