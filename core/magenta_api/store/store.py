"""CheckpointStore: fetch, verify, convert and open a model's checkpoint, whatever its published format.

Three calls, each safe to repeat and to run from several processes at once (file locks):

* :meth:`CheckpointStore.status` tells what is on disk, without touching the network;
* :meth:`CheckpointStore.fetch` makes the verified checkpoint present;
* :meth:`CheckpointStore.open` fetches if needed and returns the weights as a
  :class:`~magenta_api.checkpoint.Checkpoint` of read-only memory maps, writing a native
  (safetensors) copy the first time so later loads take milliseconds.

How each format downloads and reads is in :mod:`.formats`; where files live is in :mod:`.layout`.
"""

import contextlib
import json
import logging
import os
import pathlib
import shutil
from dataclasses import dataclass, field

import filelock

from ..checkpoint import Checkpoint
from ..logs import stage
from . import progress as progress_mod
from . import sources
from .download import download, part_path
from .errors import CheckpointError, CheckpointInvalid, CheckpointUnavailable, SourceMissing
from .extract import safe_extract
from .formats import CheckpointFormat, get_format
from .layout import Layout
from .readers.native import STORE_VERSION, decode_meta, encode_meta, read_safetensors, write_native
from .verify import TofuLock, check, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointRef:
    """A model's ``checkpoint`` entry from models.yaml, checked: where it is published (``url`` and
    ``mirrors``, tried in order), in which :data:`~.formats.FORMATS` entry, and the ``sha256`` / ``size``
    it must have (unset: pinned on first download, see :class:`~.verify.TofuLock`)."""

    url: str
    format: CheckpointFormat
    sha256: str | None = None
    size: int | None = None
    mirrors: tuple = field(default=())

    @classmethod
    def from_entry(cls, entry) -> "CheckpointRef":
        if not isinstance(entry, dict) or not entry.get("url"):
            raise CheckpointInvalid("checkpoint entry needs a url")
        ref = cls(
            url=entry["url"],
            format=get_format(entry.get("format") or "tf-tar"),
            sha256=(entry.get("sha256") or "").lower() or None,
            size=entry.get("size"),
            mirrors=tuple(entry.get("mirrors") or ()),
        )
        sources.normalize(ref.url)  # refuse unknown schemes early
        return ref


def fix_command(model_id: str) -> str:
    """The command that (re)fetches a model's checkpoint, as errors suggest it."""
    return f"magenta-api fetch {model_id}"


def _lock_busy(path) -> bool:
    """True if another holder (any process or thread) has the model's lock: a fetch is under way."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _write_json(path, data):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def _combined_sha256(paths):
    h = None
    for p in paths:
        h = sha256_file(p, h)
    return h.hexdigest(), sum(p.stat().st_size for p in paths)


@contextlib.contextmanager
def _about(model_id):
    """Errors from below (readers, downloads) name the model and the command that fixes it."""
    try:
        yield
    except CheckpointError as exc:
        exc.for_model(model_id, fix_command(model_id))
        raise


class FetchRun:
    """The :class:`~.formats.Fetch` primitives for one fetch of one model from one URL."""

    def __init__(self, store: "CheckpointStore", ref: CheckpointRef, lay: Layout, prog, expected: str | None):
        self.store, self.ref, self.lay, self.prog, self.expected = store, ref, lay, prog, expected
        lay.staging.mkdir(parents=True, exist_ok=True)

    def _download(self, url, dest, expected_sha256=None, expected_size=None):
        s = self.store
        sha, size = download(
            url,
            dest,
            expected_sha256=expected_sha256,
            expected_size=expected_size,
            progress=self.prog,
            retries=s.retries,
            backoff=s.backoff,
            timeout=s.timeout,
            session=s.session,
        )
        self.prog.file_done(size)
        return sha, size

    def file(self, url):
        staged = self.lay.staging / sources.basename(url)
        if staged.exists():  # a complete file from an interrupted fetch: verify it again
            staged.unlink()
        sha, size = self._download(url, staged, self.expected, self.ref.size)
        return staged, sha, size

    def part(self, url, name, optional=False):
        dest = self.lay.staging / name
        if dest.exists():  # completed before an interruption; covered by the combined hash check
            self.prog.file_done(dest.stat().st_size)
            return dest
        try:
            self._download(url, dest)
        except SourceMissing:
            if not optional:
                raise
            part_path(dest).unlink(missing_ok=True)
            return None
        return dest

    def verify(self, url, files):
        sha, size = _combined_sha256([p for p in files if p.name != "config.json"])
        try:
            check(url, sha, size, self.expected, self.ref.size)
        except CheckpointInvalid:
            shutil.rmtree(self.lay.staging, ignore_errors=True)
            raise
        return sha, size

    def promote(self, files):
        lay = self.lay
        shutil.rmtree(lay.src, ignore_errors=True)
        lay.src.mkdir(parents=True)
        for p in files:
            os.replace(p, lay.src / p.name)
        shutil.rmtree(lay.staging, ignore_errors=True)

    def extract(self, archive):
        try:
            safe_extract(archive, self.lay.src)
        finally:  # verified but unusable archives are not kept either
            shutil.rmtree(self.lay.staging, ignore_errors=True)


class CheckpointStore:
    """Checkpoints under ``model_dir``; safe to share between processes (file locks) and threads."""

    def __init__(self, model_dir, offline=False, retries=5, backoff=0.5, timeout=(10, 60), session=None):
        self.model_dir = pathlib.Path(model_dir)
        self.offline = offline
        self.retries, self.backoff, self.timeout, self.session = retries, backoff, timeout, session
        self.tofu = TofuLock(self.model_dir)
        self._local_ok: dict = {}

    # ---- state -------------------------------------------------------------------------------------
    def _expected_sha(self, model_id, ref):
        if ref.sha256:
            return ref.sha256
        pin = self.tofu.get(model_id, ref.url)
        return pin["sha256"] if pin else None

    def _ready(self, lay, model_id, ref):
        """The ``fetched.json`` marker if the verified checkpoint is on disk, else None."""
        marker = _read_json(lay.marker)
        if not marker or marker.get("format") != ref.format.name:
            return None
        expected = self._expected_sha(model_id, ref)
        if expected and marker.get("sha256") != expected:
            return None
        if not ref.format.present(lay.src / marker.get("path", "")):
            return None
        return marker

    def status(self, model_id, checkpoint) -> dict:
        """State of one model's checkpoint (``missing``, ``downloading``, ``ready``) without the network."""
        ref = CheckpointRef.from_entry(checkpoint)
        out = {
            "state": "missing",
            "bytes_done": None,
            "size": ref.size,
            "sha256": ref.sha256,
            "format": ref.format.name,
            "path": None,
        }
        if ref.format.reads_in_place(ref.url):
            path = sources.local_path(ref.url)
            if path.is_file():
                size = path.stat().st_size
                out.update(state="ready", path=str(path), size=size, bytes_done=size)
            return out
        lay = Layout(self.model_dir, model_id)
        marker = self._ready(lay, model_id, ref)
        if marker:
            out.update(
                state="ready",
                bytes_done=marker["size"],
                size=marker["size"],
                sha256=marker["sha256"],
                path=str(lay.src / marker["path"]),
            )
            return out
        out["sha256"] = self._expected_sha(model_id, ref)
        if _lock_busy(lay.lock):
            out["state"] = "downloading"
            prog = progress_mod.read(lay.progress) or {}
            out["bytes_done"] = prog.get("bytes_done", self._staged_bytes(lay))
            out["size"] = prog.get("size") or ref.size
        else:
            out["bytes_done"] = self._staged_bytes(lay) or None
        return out

    @staticmethod
    def _staged_bytes(lay):
        if not lay.staging.is_dir():
            return 0
        return sum(p.stat().st_size for p in lay.staging.iterdir() if p.is_file())

    # ---- fetch -------------------------------------------------------------------------------------
    def _local_file(self, model_id, ref):
        """(path, sha256) of a checkpoint read in place, hashed once per file version."""
        path = sources.local_path(ref.url)
        try:
            st = path.stat()
        except OSError:
            raise CheckpointUnavailable(f"native checkpoint {path} does not exist", model_id=model_id) from None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._local_ok:
            sha = sha256_file(path).hexdigest()
            check(str(path), sha, st.st_size, ref.sha256, ref.size)
            self._local_ok[key] = sha
        return path, self._local_ok[key]

    def fetch(self, model_id, checkpoint, progress=False) -> pathlib.Path:
        """Make the checkpoint present and verified; return its path (file, folder or prefix). Idempotent."""
        with _about(model_id):
            ref = CheckpointRef.from_entry(checkpoint)
            if ref.format.reads_in_place(ref.url):
                return self._local_file(model_id, ref)[0]
            lay = Layout(self.model_dir, model_id)
            marker = self._ready(lay, model_id, ref)
            if marker:
                return lay.src / marker["path"]
            if self.offline and not sources.is_local(ref.url):
                raise CheckpointUnavailable(
                    f"checkpoint of {model_id} is not downloaded and offline mode is on (MAGENTA_API_OFFLINE)"
                )
            lay.root.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(lay.lock))
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                log.info("%s: another process is fetching this checkpoint; waiting for it", model_id)
                lock.acquire()
            try:
                marker = self._ready(lay, model_id, ref)
                if marker:
                    return lay.src / marker["path"]
                with stage(log, "fetch", model=model_id):
                    return self._fetch_locked(model_id, ref, lay, progress)
            finally:
                lock.release()

    def _fetch_locked(self, model_id, ref, lay, bar):
        lay.marker.unlink(missing_ok=True)  # stale or mismatching: never loaded again
        lay.native.unlink(missing_ok=True)
        expected = self._expected_sha(model_id, ref)
        prog = progress_mod.Progress(
            model_id, lay.progress, total=ref.size, bar=bar, single_file=ref.format.single_file
        )
        errors = []
        try:
            for url in (ref.url, *ref.mirrors):
                try:
                    log.info("%s: fetching %s checkpoint from %s", model_id, ref.format.name, url)
                    sha, size, rel = ref.format.fetch(FetchRun(self, ref, lay, prog, expected), url)
                    break
                except CheckpointError as exc:
                    log.warning("%s: %s", model_id, exc)
                    errors.append(exc)
                    prog.base = 0
            else:
                bad = [e for e in errors if isinstance(e, CheckpointInvalid)]
                if bad:
                    raise CheckpointInvalid(f"checkpoint of {model_id}: {bad[-1]}") from bad[-1]
                reasons = "; ".join(e.message for e in errors)
                raise CheckpointUnavailable(f"cannot fetch the checkpoint of {model_id}: {reasons}") from errors[-1]
        finally:
            prog.close()
        if not ref.sha256 and not expected:
            self.tofu.record(model_id, ref.url, sha, size, ref.format.name)
        _write_json(lay.marker, {"url": url, "format": ref.format.name, "sha256": sha, "size": size, "path": rel})
        log.info("%s: checkpoint ready (%d bytes, sha256 %s)", model_id, size, sha)
        return lay.src / rel

    # ---- open --------------------------------------------------------------------------------------
    def open(self, model_id, checkpoint, progress=False) -> Checkpoint:
        """The model's weights as a Checkpoint of read-only memory maps (fetching and converting if needed)."""
        with _about(model_id):
            ref = CheckpointRef.from_entry(checkpoint)
            fmt = ref.format
            if fmt.reads_in_place(ref.url):
                path, sha = self._local_file(model_id, ref)
                return self._read_as_is(fmt, path, sha)
            path = self.fetch(model_id, checkpoint, progress)
            lay = Layout(self.model_dir, model_id)
            sha = (_read_json(lay.marker) or {}).get("sha256", "")
            if not fmt.converts:
                return self._read_as_is(fmt, path, sha)
            ck = self._open_native_copy(lay, ref, sha)
            if ck is not None:
                return ck
            try:
                lock = filelock.FileLock(str(lay.lock))
                lock.acquire()
            except OSError as exc:  # read-only MODEL_DIR without a native copy: read, don't cache
                log.warning("%s: cannot lock %s (%s); reading without a native copy", model_id, lay.lock, exc)
                return self._convert(model_id, ref, lay, path, sha, write=False)
            try:
                return self._open_native_copy(lay, ref, sha) or self._convert(model_id, ref, lay, path, sha)
            finally:
                lock.release()

    def prepare(self, model_id, checkpoint, progress=False) -> dict:
        """Fetch and build the native copy now (``magenta-api fetch``, Docker builds); returns status()."""
        self.open(model_id, checkpoint, progress=progress)
        return self.status(model_id, checkpoint)

    @staticmethod
    def _read_as_is(fmt, path, sha):
        variables, meta = fmt.read(path)
        return Checkpoint(variables, fmt.name, meta, sha)

    def _open_native_copy(self, lay, ref, sha):
        if not lay.native.exists():
            return None
        try:
            variables, metadata = read_safetensors(lay.native)
        except CheckpointInvalid as exc:
            log.warning("ignoring unreadable native copy %s: %s", lay.native, exc)
            return None
        if (
            metadata.get("magenta_api.source_sha256") != sha
            or metadata.get("magenta_api.store_version") != STORE_VERSION
        ):
            return None
        return Checkpoint(variables, ref.format.name, decode_meta(metadata), sha)

    def _convert(self, model_id, ref, lay, path, sha, write=True):
        log.info("%s: reading %s checkpoint %s", model_id, ref.format.name, path)
        try:
            variables, meta = ref.format.read(path)
        except CheckpointInvalid as exc:
            # The verified download does not read: drop it so the next fetch starts clean.
            lay.marker.unlink(missing_ok=True)
            raise CheckpointInvalid(f"checkpoint of {model_id} is unreadable: {exc}") from exc
        if not variables:
            raise CheckpointInvalid(f"checkpoint of {model_id} holds no weights")
        try:
            if not write:
                raise OSError("MODEL_DIR is not writable")
            write_native(lay.native, variables, encode_meta(meta, ref.format.name, sha))
        except OSError as exc:
            log.warning("%s: no native copy (%s); serving from memory", model_id, exc)
            return Checkpoint(variables, ref.format.name, meta, sha)
        log.info("%s: wrote native copy %s (%d tensors)", model_id, lay.native, len(variables))
        return self._open_native_copy(lay, ref, sha)
