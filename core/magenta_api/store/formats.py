"""The checkpoint formats the store knows, in one table: how each is fetched, found on disk and read.

Every format reads with the same signature, ``read(path, progress=None) -> (variables, meta)``
(``progress(bytes done, total)`` follows a long read): variables by Magenta's
names (NumPy arrays, often memory maps), meta what the format adds (a ``.mag`` bundle's generator id, a
Magenta.js ``config.json``...). A format fetches itself through the store's :class:`Fetch` primitives, so
that downloads, verification and atomic promotion stay in one place. A new format is one more entry
in :data:`FORMATS`.

Hashes of multi-file checkpoints (``magentajs``, ``tf``) are the sha256 of their files concatenated in a
fixed order: ``weights_manifest.json`` then the shards in manifest order; ``.index`` then the data shards
(or the single V1 file). ``size`` is the total byte count of those files.
"""

import pathlib
from collections.abc import Callable
from typing import Protocol

from . import sources
from .errors import CheckpointInvalid
from .protowire import fields
from .readers.mag import read_mag
from .readers.magentajs import load_manifest, read_magentajs, shard_names
from .readers.native import read_native
from .readers.sstable import iter_table
from .readers.tf import read_tf

Reader = Callable[..., tuple]  # read(path, progress=None) -> (variables, meta)


class Fetch(Protocol):
    """What a format may do while the store fetches it (see ``store.FetchRun``)."""

    def file(self, url: str) -> tuple:
        """Download ``url`` fresh, verified against the declared (or pinned) sha256 and size:
        returns (staged path, sha256, size)."""

    def part(self, url: str, name: str, optional: bool = False) -> pathlib.Path | None:
        """Download ``url`` as ``name`` of a multi-file checkpoint, keeping a part completed before an
        interruption; ``optional``: None when the source says the file does not exist."""

    def verify(self, url: str, files: list) -> tuple:
        """(sha256, size) of ``files`` concatenated, checked against the declared or pinned values."""

    def promote(self, files: list) -> None:
        """Move verified staged files into the model's ``src/`` folder, replacing what was there."""

    def extract(self, archive: pathlib.Path) -> None:
        """Safely extract a verified tarball as the model's ``src/`` folder (with progress), then delete it."""


class CheckpointFormat:
    """One published format. ``single_file``: one download whose length is the total (for progress).
    ``converts``: opening writes a native copy (memory-mapped on later loads)."""

    single_file = True
    converts = True

    def __init__(self, name: str, description: str, read: Reader):
        self.name = name
        self.description = description
        self._read = read

    def read(self, path, progress=None) -> tuple:
        """(variables, meta) of the checkpoint at ``path`` (a file, folder or prefix), every tensor read
        and checked (crc32c where the format has one); ``progress(bytes done, total)`` as it goes."""
        return self._read(pathlib.Path(path), progress=progress)

    def fetch(self, fetch: Fetch, url: str) -> tuple:
        """Make ``src/`` hold the verified checkpoint; returns (sha256, size, path relative to src/)."""
        path, sha, size = fetch.file(url)
        fetch.promote([path])
        return sha, size, path.name

    def present(self, path: pathlib.Path) -> bool:
        """True if a fetched checkpoint is on disk at ``path``."""
        return path.exists()

    def reads_in_place(self, url: str) -> bool:
        """True if the checkpoint is used where it lies, without a copy under MODEL_DIR."""
        return False


class NativeFormat(CheckpointFormat):
    """Our safetensors files: already NumPy-ready; a local one is read where it lies (embedded models)."""

    converts = False

    def reads_in_place(self, url: str) -> bool:
        return sources.is_local(url)


class TarballFormat(CheckpointFormat):
    """A ``.tar`` / ``.tar.gz`` of a TF checkpoint folder, as Magenta publishes MusicVAE checkpoints."""

    def fetch(self, fetch: Fetch, url: str) -> tuple:
        path, sha, size = fetch.file(url)
        fetch.extract(path)
        return sha, size, "."


class MagentaJsFormat(CheckpointFormat):
    """A Magenta.js checkpoint folder: ``weights_manifest.json``, its shards, and ``config.json``."""

    single_file = False

    def fetch(self, fetch: Fetch, url: str) -> tuple:
        manifest = fetch.part(sources.join(url, "weights_manifest.json"), "weights_manifest.json")
        files = [manifest]
        for name in shard_names(load_manifest(manifest)):
            if "/" in name or name in (".", ".."):
                raise CheckpointInvalid(f"Magenta.js manifest names an unsafe shard path {name!r}")
            files.append(fetch.part(sources.join(url, name), name))
        config = fetch.part(sources.join(url, "config.json"), "config.json", optional=True)
        sha, size = fetch.verify(url, files)  # config.json is not part of the hash
        fetch.promote(files + ([config] if config else []))
        return sha, size, "."


class TfPrefixFormat(CheckpointFormat):
    """A TF checkpoint addressed by its prefix URL: V2 (``.index`` + ``.data-*`` shards) or V1 (one file)."""

    single_file = False

    def fetch(self, fetch: Fetch, url: str) -> tuple:
        name = sources.basename(url)
        index = fetch.part(url + ".index", name + ".index", optional=True)
        if index is None:  # no V2 index: a V1 single-file checkpoint
            files = [fetch.part(url, name)]
        else:
            files = [index]
            shards = _num_shards(index)
            for i in range(shards):
                suffix = f".data-{i:05d}-of-{shards:05d}"
                files.append(fetch.part(url + suffix, name + suffix))
        sha, size = fetch.verify(url, files)
        fetch.promote(files)
        return sha, size, name

    def present(self, path: pathlib.Path) -> bool:
        return path.exists() or pathlib.Path(str(path) + ".index").exists()


def _num_shards(index: pathlib.Path) -> int:
    """The shard count a V2 ``.index`` declares in its header entry (field 1 of BundleHeaderProto)."""
    for key, value in iter_table(index.read_bytes(), name=str(index)):
        if key == b"":
            return next((v for n, _, v in fields(value) if n == 1), 1)
    return 1


FORMATS = {
    fmt.name: fmt
    for fmt in (
        TarballFormat("tf-tar", "a tarball of a TensorFlow checkpoint folder (Magenta's MusicVAE downloads)", read_tf),
        TfPrefixFormat("tf", "a TensorFlow V1 or V2 checkpoint by prefix URL", read_tf),
        CheckpointFormat("mag", "a Magenta .mag generator bundle (MelodyRNN, DrumsRNN, ...)", read_mag),
        MagentaJsFormat("magentajs", "a Magenta.js checkpoint folder (weights_manifest.json + shards)", read_magentajs),
        NativeFormat("native", "magenta-api's own safetensors file", read_native),
    )
}


def get_format(name: str) -> CheckpointFormat:
    if name not in FORMATS:
        raise CheckpointInvalid(f"unknown checkpoint format {name!r} (one of {', '.join(FORMATS)})")
    return FORMATS[name]
