"""TensorFlow V2 tensor bundles (``prefix.index`` SSTable of BundleEntryProto + ``prefix.data-*`` shards).

NumPy only. Optimizer slots are skipped by name, so their bytes (two thirds of a MusicVAE checkpoint)
are never read. Each tensor's crc32c is checked when read, unless ``verify=False`` (used for memory-mapped
peeks at files whose contents we don't need).
"""

import logging
import os
import pathlib
import struct
from dataclasses import dataclass, field

import crc32c
import numpy as np

from ..errors import CheckpointInvalid
from ..protowire import fields, to_signed64
from . import tfproto
from .sstable import iter_table, unmask_crc

log = logging.getLogger(__name__)


@dataclass
class Entry:
    name: str
    dtype: int = 1
    shape: tuple = ()
    shard: int = 0
    offset: int = 0
    size: int = 0
    crc: int | None = None
    slices: list = field(default_factory=list)


def _parse_entry(name, buf):
    entry = Entry(name)
    for number, _, value in fields(buf):
        if number == 1:
            entry.dtype = value
        elif number == 2:
            entry.shape = tfproto.parse_shape(value)
        elif number == 3:
            entry.shard = value
        elif number == 4:
            entry.offset = to_signed64(value)
        elif number == 5:
            entry.size = to_signed64(value)
        elif number == 6:
            entry.crc = unmask_crc(struct.unpack("<I", value)[0])
        elif number == 7:
            entry.slices.append(tfproto.parse_slice(value))
    return entry


class TFBundleReader:
    """Index of one V2 checkpoint; reads tensors on demand."""

    def __init__(self, prefix):
        self.prefix = str(prefix)
        index = pathlib.Path(self.prefix + ".index")
        try:
            raw = index.read_bytes()
        except OSError as exc:
            raise CheckpointInvalid(f"cannot read checkpoint index {index}: {exc}") from exc
        self.entries, self._slice_entries = {}, {}
        self.num_shards, self.big_endian = 1, False
        for key, value in iter_table(raw, name=str(index)):
            if key == b"":
                for number, _, v in fields(value):
                    if number == 1:
                        self.num_shards = v
                    elif number == 2:
                        self.big_endian = v == 1
            elif key[:1] == b"\x00":
                self._slice_entries[key] = value
            else:
                name = key.decode()
                self.entries[name] = _parse_entry(name, value)

    def shard_path(self, shard):
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def names(self, include_slots=False):
        return [
            n for n, e in self.entries.items() if e.dtype != 7 and (include_slots or not tfproto.is_optimizer_slot(n))
        ]

    def _dtype(self, entry):
        dtype = tfproto.numpy_dtype(entry.dtype, entry.name)
        return dtype.newbyteorder(">") if self.big_endian else dtype

    def _finish(self, array, entry):
        if entry.dtype == tfproto.BFLOAT16:
            return tfproto.bfloat16_to_float32(array)
        return array.astype(array.dtype.newbyteorder("=")) if self.big_endian else array

    def _read_span(self, entry, verify, mmap):
        """The raw bytes of one stored (unsliced) entry, as a uint8 array."""
        path = self.shard_path(entry.shard)
        if mmap:
            if entry.size == 0:
                return np.empty(0, np.uint8)
            data = np.memmap(path, np.uint8, mode="r", offset=entry.offset, shape=(entry.size,))
        else:
            data = np.empty(entry.size, np.uint8)
            try:
                with open(path, "rb", buffering=0) as f:
                    f.seek(entry.offset)
                    got = f.readinto(memoryview(data))
            except OSError as exc:
                raise CheckpointInvalid(f"cannot read checkpoint data {path}: {exc}") from exc
            if got != entry.size:
                raise CheckpointInvalid(
                    f"{path}: truncated, tensor {entry.name!r} needs {entry.size} bytes at {entry.offset}, got {got}"
                )
        if verify and entry.crc is not None and crc32c.crc32c(data) != entry.crc:
            raise CheckpointInvalid(f"tensor {entry.name!r} in {path}: crc32c mismatch (corrupt checkpoint)")
        return data

    def _read_stored(self, entry, shape, verify, mmap):
        dtype = self._dtype(entry)
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected:
            raise CheckpointInvalid(
                f"tensor {entry.name!r}: {entry.size} bytes stored, {expected} expected for {shape} {dtype}"
            )
        return self._read_span(entry, verify, mmap).view(dtype).reshape(shape)

    def get(self, name, verify=True, mmap=False):
        """One tensor as a NumPy array (a read-only memory map of the shard when ``mmap``)."""
        entry = self.entries.get(name)
        if entry is None:
            raise KeyError(name)
        if not entry.slices:
            return self._finish(self._read_stored(entry, entry.shape, verify, mmap), entry)
        full = np.empty(entry.shape, self._dtype(entry))
        for extents in entry.slices:
            key = tfproto.slice_key(name, extents)
            if key not in self._slice_entries:
                raise CheckpointInvalid(f"tensor {name!r}: slice {extents} missing from the index")
            part = _parse_entry(name, self._slice_entries[key])
            index = tfproto.slice_index(extents, entry.shape)
            shape = tuple(s.stop - s.start for s in index)
            full[index] = self._read_stored(part, shape, verify, mmap=False)
        return self._finish(full, entry)

    def nbytes(self, name):
        entry = self.entries[name]
        return int(np.prod(entry.shape, dtype=np.int64)) * self._dtype(entry).itemsize

    def read_all(self, include_slots=False, verify=True, mmap=False, progress=None):
        """Every tensor (optimizer slots only with ``include_slots``); ``progress(bytes done, total)``
        is called after each one."""
        names = self.names(include_slots)
        total = sum(self.nbytes(n) for n in names) if progress else 0
        out, done = {}, 0
        for name in names:
            out[name] = self.get(name, verify=verify, mmap=mmap)
            if progress:
                done += self.nbytes(name)
                progress(done, total)
        return out


def is_v2_prefix(prefix):
    return os.path.exists(str(prefix) + ".index")
