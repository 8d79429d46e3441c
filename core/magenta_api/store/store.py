"""CheckpointStore: fetch, verify, convert and open a model's checkpoint, whatever its published format.

The calls, each safe to repeat and to run from several processes at once (file locks):

* :meth:`CheckpointStore.status` tells what is on disk (``missing``, ``downloading``, ``failed``,
  ``ready``), without touching the network;
* :meth:`CheckpointStore.fetch` makes the verified checkpoint present, in the caller's thread;
* :meth:`CheckpointStore.open` returns the weights as a :class:`~magenta_api.checkpoint.Checkpoint` of
  read-only memory maps. When the checkpoint must be downloaded it either fetches in the caller's thread
  (``fetch_wait_s=None``, the library's and the CLI's way) or starts one background download (a thread
  of this process, holding the model's lock, so other processes see it) and waits at most
  ``fetch_wait_s`` seconds for it, then raises :class:`~.errors.CheckpointDownloading` (the server's way);
* :meth:`CheckpointStore.prepare` fetches now (``magenta-api fetch``), with ``repin`` to replace a
  pinned sha256 on purpose; :meth:`CheckpointStore.forget` deletes a model's files and pin.

A checkpoint is trusted only once it is read: after the download matches the declared (or pinned)
sha256 and size, every tensor is read and checked (crc32c for TF V2), the native copy is written and read
back, and only then is a first download's sha256 pinned (:class:`~.verify.TofuLock`) and ``fetched.json``
written. A checkpoint that fails any of that is deleted (staging, ``src/``, native copy) and not pinned.
A failed fetch is recorded in ``failed.json`` and retried with exponential backoff, not per request.
Once the native copy is verified the extracted source is deleted, unless ``keep_source``.

How each format downloads and reads is in :mod:`.formats`; where files live is in :mod:`.layout`.
"""

import contextlib
import json
import logging
import math
import os
import pathlib
import shutil
import threading
import time
from dataclasses import dataclass, field

import filelock

from ..checkpoint import Checkpoint
from ..logs import stage
from . import progress as progress_mod
from . import sources
from .download import download, part_path
from .errors import (
    CheckpointDownloading,
    CheckpointError,
    CheckpointInvalid,
    CheckpointUnavailable,
    ChecksumMismatch,
    SourceMissing,
)
from .extract import safe_extract
from .formats import CheckpointFormat, get_format
from .layout import Layout
from .readers.native import STORE_VERSION, decode_meta, encode_meta, read_safetensors, write_native
from .verify import TofuLock, check, sha256_file

log = logging.getLogger(__name__)

_STORE_DEFAULT = object()  # open(wait_s=...) not given: the store's fetch_wait_s
RETRY_UNKNOWN_S = 5  # Retry-After of a download whose remaining time cannot be estimated
RETRY_MAX_S = 60  # the longest Retry-After a download in progress suggests


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
        try:
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
        except CheckpointInvalid as exc:
            exc.fix = exc.fix or "correct the model's checkpoint entry (url, format) in its models.yaml"
            exc.details["fix"] = exc.fix
            raise
        return ref


# ---- what fixes each state (details.fix) --------------------------------------------------------------
def fix_command(model_id: str) -> str:
    """The command that (re)fetches a model's checkpoint, as errors suggest it."""
    return f"magenta-api fetch {model_id}"


def repin_command(model_id: str) -> str:
    """The command that downloads a model's checkpoint again and replaces its pinned sha256."""
    return f"magenta-api fetch --repin {model_id}"


def declared_fix(model_id: str) -> str:
    return (
        f"the file at the checkpoint URL is not the one declared for {model_id}: correct checkpoint.sha256 "
        f"and size of {model_id} in its models.yaml (or remove them to pin the file on first use), "
        f"then run `{fix_command(model_id)}`"
    )


def offline_fix(model_id: str, lay: Layout) -> str:
    return (
        f"offline mode (MAGENTA_API_OFFLINE=1) never downloads: on a machine with network access run "
        f"`MODEL_DIR=/tmp/m {fix_command(model_id)}` and copy the folder /tmp/m/{model_id}/ (fetched.json "
        f"and native.safetensors) to {lay.root.absolute()}/ here; or unset MAGENTA_API_OFFLINE"
    )


def downloading_fix(model_id: str, retry_after: int) -> str:
    return (
        f"none needed: the checkpoint is being fetched; try again in {retry_after} s, "
        f"or run `{fix_command(model_id)}` to wait for it with progress"
    )


# ---- small file helpers ---------------------------------------------------------------------------------
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_json(path):
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _combined_sha256(paths):
    h = None
    for p in paths:
        h = sha256_file(p, h)
    return h.hexdigest(), sum(p.stat().st_size for p in paths)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _mb(n) -> str:
    return "?" if n is None else f"{n / 1e6:.1f}"


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

    def __init__(self, store: "CheckpointStore", model_id, ref: CheckpointRef, lay: Layout, prog, expected, pinned):
        self.store, self.model_id, self.ref, self.lay, self.prog = store, model_id, ref, lay, prog
        self.expected = expected  # the sha256 the bytes must have: declared, else pinned, else None
        self.pinned = pinned  # the TofuLock entry ``expected`` comes from, if it does
        lay.staging.mkdir(parents=True, exist_ok=True)

    def _mismatch(self, exc: ChecksumMismatch) -> ChecksumMismatch:
        """The mismatch, with the fix for where the expected value came from."""
        if self.pinned and "sha256" in exc.message:
            when = f" ({self.pinned['recorded']})" if self.pinned.get("recorded") else ""
            exc.message = (
                f"{exc.message}: the sha256 was pinned in {self.store.tofu.path} when {self.model_id} was "
                f"first downloaded{when}, so the published file has changed since; if you trust the new "
                f"file, replace the pin"
            )
            exc.fix = repin_command(self.model_id)
        else:
            exc.fix = declared_fix(self.model_id)
        exc.args = (exc.message,)
        exc.for_model(self.model_id)
        return exc

    def _download(self, url, dest, expected_sha256=None, expected_size=None):
        s = self.store
        try:
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
        except ChecksumMismatch as exc:
            raise self._mismatch(exc) from None
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
        except ChecksumMismatch as exc:
            shutil.rmtree(self.lay.staging, ignore_errors=True)
            raise self._mismatch(exc) from None
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
            safe_extract(archive, self.lay.src, progress=self.prog.begin(progress_mod.EXTRACTING))
        finally:  # verified but unusable archives are not kept either
            shutil.rmtree(self.lay.staging, ignore_errors=True)


class CheckpointStore:
    """Checkpoints under ``model_dir``; safe to share between processes (file locks) and threads.

    ``fetch_wait_s``: what :meth:`open` does with a checkpoint that must be downloaded: ``None`` fetches
    in the caller's thread; a number starts (or joins) the one background download and waits that many
    seconds at most before raising :class:`CheckpointDownloading`. A ``file://`` source is always copied
    in the caller's thread. ``keep_source``: keep the extracted published checkpoint beside the verified
    native copy. ``retry_failed_s`` / ``retry_failed_max_s``: after a failed fetch, :meth:`open` waits
    this long (doubling with each further failure, up to the maximum) before fetching again;
    :meth:`fetch` and :meth:`prepare` try again at once.
    """

    def __init__(
        self,
        model_dir,
        offline=False,
        retries=5,
        backoff=0.5,
        timeout=(10, 60),
        session=None,
        fetch_wait_s: float | None = None,
        keep_source: bool = False,
        retry_failed_s: float = 30.0,
        retry_failed_max_s: float = 3600.0,
    ):
        self.model_dir = pathlib.Path(model_dir)
        self.offline = offline
        self.retries, self.backoff, self.timeout, self.session = retries, backoff, timeout, session
        self.fetch_wait_s = fetch_wait_s
        self.keep_source = keep_source
        self.retry_failed_s, self.retry_failed_max_s = retry_failed_s, retry_failed_max_s
        self.tofu = TofuLock(self.model_dir)
        self._local_ok: dict = {}
        self._downloads: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()

    # ---- state -------------------------------------------------------------------------------------
    def _pin(self, model_id, ref):
        return None if ref.sha256 else self.tofu.get(model_id, ref.url)

    def _expected_sha(self, model_id, ref):
        if ref.sha256:
            return ref.sha256
        pin = self.tofu.get(model_id, ref.url)
        return pin["sha256"] if pin else None

    def _ready(self, lay, model_id, ref):
        """The ``fetched.json`` marker if the verified checkpoint is on disk, else None."""
        marker = _read_json(lay.marker)
        if not marker or marker.get("format") != ref.format.name or "sha256" not in marker:
            return None
        expected = self._expected_sha(model_id, ref)
        if expected and marker.get("sha256") != expected:
            return None
        if ref.format.converts and lay.native.exists():
            return marker
        if not ref.format.present(lay.src / marker.get("path", "")):
            return None
        return marker

    def _failure(self, lay, ref):
        """The ``failed.json`` record of the last fetch, if it concerns this checkpoint URL."""
        rec = _read_json(lay.failed)
        if not rec or rec.get("url") != ref.url or not isinstance(rec.get("retry_at"), (int, float)):
            return None
        return rec

    def _fetching(self, model_id, lay) -> bool:
        thread = self._downloads.get(model_id)
        return (thread is not None and thread.is_alive()) or _lock_busy(lay.lock)

    def status(self, model_id, checkpoint) -> dict:
        """State of one model's checkpoint without the network: ``missing``, ``downloading`` (with
        ``phase``), ``failed`` (with ``reason``, ``failed_at``, ``retry_after``, ``fix``) or ``ready``."""
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
                st = path.stat()
                out.update(state="ready", path=str(path), size=st.st_size, bytes_done=st.st_size)
                out["sha256"] = self._local_ok.get((str(path), st.st_size, st.st_mtime_ns)) or ref.sha256
            return out
        lay = Layout(self.model_dir, model_id)
        marker = self._ready(lay, model_id, ref)
        if marker:
            native = ref.format.converts and lay.native.exists()
            out.update(
                state="ready",
                bytes_done=marker["size"],
                size=marker["size"],
                sha256=marker["sha256"],
                path=str(lay.native if native else lay.src / marker["path"]),
            )
            return out
        out["sha256"] = self._expected_sha(model_id, ref)
        if self._fetching(model_id, lay):
            prog = progress_mod.read(lay.progress) or {}
            out.update(
                state="downloading",
                phase=prog.get("phase", progress_mod.DOWNLOADING),
                bytes_done=prog.get("bytes_done", self._staged_bytes(lay)),
                size=prog.get("size") or ref.size,
            )
            return out
        out["bytes_done"] = self._staged_bytes(lay) or None
        rec = self._failure(lay, ref)
        if rec:
            out.update(
                state="failed",
                reason=rec.get("reason"),
                failed_at=rec.get("failed_at"),
                attempts=rec.get("attempts"),
                retry_after=max(0, math.ceil(rec["retry_at"] - time.time())),
                fix=rec.get("fix") or fix_command(model_id),
            )
        return out

    @staticmethod
    def _staged_bytes(lay):
        if not lay.staging.is_dir():
            return 0
        return sum(p.stat().st_size for p in lay.staging.iterdir() if p.is_file())

    # ---- errors that describe a state --------------------------------------------------------------
    def _failure_error(self, model_id, rec) -> CheckpointError:
        cls = CheckpointInvalid if rec.get("code") == CheckpointInvalid.code else CheckpointUnavailable
        wait = max(1, math.ceil(rec["retry_at"] - time.time()))
        message = (
            f"{rec.get('reason')} (fetch attempt {rec.get('attempts', 1)} failed at {rec.get('failed_at')}; "
            f"the next one is due in {wait} s)"
        )
        extra = {
            "state": "failed",
            "reason": rec.get("reason"),
            "failed_at": rec.get("failed_at"),
            "attempts": rec.get("attempts"),
            "retry_after": wait,
        }
        return cls(message, model_id, rec.get("fix") or fix_command(model_id), extra)

    def _downloading_error(self, model_id, ref, lay) -> CheckpointDownloading:
        prog = progress_mod.read(lay.progress) or {}
        phase = prog.get("phase") or progress_mod.DOWNLOADING
        done = prog.get("bytes_done")
        if done is None:
            done = self._staged_bytes(lay)
        size = prog.get("size") or ref.size
        retry = RETRY_UNKNOWN_S
        elapsed = time.time() - prog.get("started", time.time())
        if phase == progress_mod.DOWNLOADING and done and size and elapsed > 0:
            retry = min(RETRY_MAX_S, max(1, math.ceil((size - done) * elapsed / done)))
        message = f"the checkpoint of {model_id} is {phase} ({_mb(done)} of {_mb(size)} MB); try again in {retry} s"
        extra = {"state": "downloading", "phase": phase, "bytes_done": done, "size": size, "retry_after": retry}
        return CheckpointDownloading(message, model_id, downloading_fix(model_id, retry), extra)

    def _refuse_offline(self, model_id, ref, lay):
        if self.offline and not sources.is_local(ref.url):
            raise CheckpointUnavailable(
                f"the checkpoint of {model_id} is not in MODEL_DIR and offline mode is on (MAGENTA_API_OFFLINE)",
                model_id,
                offline_fix(model_id, lay),
                {"state": "missing", "place": str(lay.root.absolute())},
            )

    @staticmethod
    def _make_root(model_id, lay):
        """The model's folder, created if needed; a MODEL_DIR that cannot hold it is a clear 503."""
        try:
            lay.root.mkdir(parents=True, exist_ok=True)
            if not os.access(lay.root, os.W_OK | os.X_OK):
                raise PermissionError(f"{lay.root} is not writable")
        except OSError as exc:
            raise CheckpointUnavailable(
                f"cannot write the checkpoint of {model_id} into {lay.root}: {exc}",
                model_id,
                f"make MODEL_DIR ({lay.root.parent.absolute()}) writable, or run `{fix_command(model_id)}` "
                "as a user who can write it",
            ) from exc

    # ---- fetch -------------------------------------------------------------------------------------
    def _local_file(self, model_id, ref):
        """(path, sha256) of a checkpoint read in place, hashed once per file version."""
        path = sources.local_path(ref.url)
        try:
            st = path.stat()
        except OSError:
            raise CheckpointUnavailable(
                f"native checkpoint {path} does not exist",
                model_id,
                f"put the checkpoint file at {path} (it is read where it lies), "
                f"or correct checkpoint.url of {model_id} in its models.yaml",
            ) from None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._local_ok:
            sha = sha256_file(path).hexdigest()
            try:
                check(str(path), sha, st.st_size, ref.sha256, ref.size)
            except ChecksumMismatch as exc:
                exc.fix = (
                    f"{path} is not the file declared for {model_id}: restore it, or correct checkpoint.sha256 "
                    f"and size of {model_id} in its models.yaml"
                )
                raise exc.for_model(model_id) from None
            self._local_ok[key] = sha
        return path, self._local_ok[key]

    def fetch(self, model_id, checkpoint, progress=False, repin=False) -> pathlib.Path:
        """Make the checkpoint present and verified in the caller's thread, whatever an earlier failure
        recorded; return the path loads read (the native copy, else the source file, folder or prefix).
        Idempotent. ``repin``: download again and replace the pinned sha256 once the new file verifies."""
        with _about(model_id):
            ref = CheckpointRef.from_entry(checkpoint)
            if ref.format.reads_in_place(ref.url):
                return self._local_file(model_id, ref)[0]
            lay = Layout(self.model_dir, model_id)
            marker = None if repin else self._ready(lay, model_id, ref)
            if marker is None:
                self._refuse_offline(model_id, ref, lay)
                marker = self._fetch_now(model_id, ref, lay, progress, repin)
            return self._load_path(ref, lay, marker)

    def _load_path(self, ref, lay, marker) -> pathlib.Path:
        if ref.format.converts and lay.native.exists():
            return lay.native
        return lay.src / marker["path"]

    def _fetch_now(self, model_id, ref, lay, progress, repin=False) -> dict:
        """Fetch under the model's lock (waiting for another holder); returns the marker."""
        self._make_root(model_id, lay)
        lock = filelock.FileLock(str(lay.lock))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.info("%s: another process is fetching this checkpoint; waiting for it", model_id)
            lock.acquire()
        try:
            marker = self._ready(lay, model_id, ref)
            if marker and not repin:
                return marker
            with stage(log, "fetch", model=model_id), self._kept_aside(model_id, lay, bool(marker)):
                return self._fetch_locked(model_id, ref, lay, progress, repin)
        finally:
            lock.release()

    @contextlib.contextmanager
    def _kept_aside(self, model_id, lay, ready):
        """Around a --repin of a ready model: its files wait in ``.previous/`` and come back if the new
        download fails, so replacing a pin never loses a working checkpoint."""
        if not ready:
            yield
            return
        previous = lay.root / ".previous"
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        names = [p.name for p in (lay.marker, lay.native, lay.src) if p.exists()]
        for name in names:
            os.replace(lay.root / name, previous / name)
        try:
            yield
        except BaseException:
            self._discard(lay)
            for name in names:
                os.replace(previous / name, lay.root / name)
            lay.failed.unlink(missing_ok=True)  # the previous checkpoint is ready again
            log.warning("%s: the new download failed; the previous checkpoint is kept", model_id)
            raise
        finally:
            shutil.rmtree(previous, ignore_errors=True)

    def _discard(self, lay):
        """Remove everything a failed fetch downloaded, extracted or converted (not the lock)."""
        for path in (lay.marker, lay.native, lay.progress):
            path.unlink(missing_ok=True)
        for folder in (lay.staging, lay.src):
            shutil.rmtree(folder, ignore_errors=True)
        if lay.root.is_dir():
            for leftover in lay.root.glob(".src.*.extracting"):
                shutil.rmtree(leftover, ignore_errors=True)

    def _record_failure(self, model_id, ref, lay, exc: CheckpointError):
        """``failed.json``: what failed and when the next attempt is due (exponential backoff)."""
        old = self._failure(lay, ref) or {}
        attempts = int(old.get("attempts") or 0) + 1
        delay = min(self.retry_failed_s * 2 ** (attempts - 1), self.retry_failed_max_s)
        now = time.time()
        rec = {
            "state": "failed",
            "url": ref.url,
            "code": exc.code,
            "reason": exc.message,
            "fix": exc.fix or fix_command(model_id),
            "attempts": attempts,
            "time": now,
            "failed_at": _iso(now),
            "retry_at": now + delay,
        }
        try:
            _write_json(lay.failed, rec)
        except OSError as err:  # a full disk: the failure is still raised, only not remembered
            log.warning("%s: cannot record the failed fetch in %s: %s", model_id, lay.failed, err)
        log.warning("%s: fetch failed (attempt %d, next in %.0f s): %s", model_id, attempts, delay, exc.message)

    def _fetch_locked(self, model_id, ref, lay, bar, repin=False):
        """Download, verify, pin, mark ready: under the model's lock. A failure is recorded (failed.json)
        and leaves no file a load could use; a network failure keeps its ``.part`` files to resume from."""
        pin = self._pin(model_id, ref)
        if repin and pin:
            log.warning(
                "%s: --repin: the pinned sha256 %s is not checked; a verified download replaces it",
                model_id,
                pin["sha256"],
            )
            pin = None
        expected = ref.sha256 or (pin["sha256"] if pin else None)
        prog = progress_mod.Progress(
            model_id, lay.progress, total=ref.size, bar=bar, single_file=ref.format.single_file
        )
        try:
            lay.marker.unlink(missing_ok=True)  # stale or mismatching: never loaded again
            lay.native.unlink(missing_ok=True)
            url, sha, size, rel = self._fetch_verified(model_id, ref, lay, prog, expected, pin)
            if not ref.sha256:  # verified: now the first download may be trusted
                self.tofu.record(model_id, ref.url, sha, size, ref.format.name)
            native = ref.format.converts and lay.native.exists()
            keep = self.keep_source or not native
            marker = {
                "url": url,
                "format": ref.format.name,
                "sha256": sha,
                "size": size,
                "path": rel,
                "native": native,
                "source": "kept" if keep else "deleted",
                "verified": _iso(time.time()),
            }
            _write_json(lay.marker, marker)
        except CheckpointError as exc:
            exc.for_model(model_id, fix_command(model_id))
            if isinstance(exc, CheckpointInvalid):
                self._discard(lay)
            self._record_failure(model_id, ref, lay, exc)
            raise
        except OSError as exc:  # a full or read-only MODEL_DIR while downloading, extracting or marking
            self._discard(lay)
            err = CheckpointUnavailable(
                f"cannot write the checkpoint of {model_id} under {self.model_dir}: {exc}",
                model_id,
                f"free space in MODEL_DIR ({self.model_dir.absolute()}) or make it writable, "
                f"then run `{fix_command(model_id)}`",
            )
            self._record_failure(model_id, ref, lay, err)
            raise err from exc
        except Exception as exc:  # a bug: logged as one, but remembered like any failure
            self._discard(lay)
            self._record_failure(model_id, ref, lay, CheckpointUnavailable(f"{type(exc).__name__}: {exc}", model_id))
            raise
        finally:
            prog.close()
        lay.failed.unlink(missing_ok=True)
        if not keep:
            shutil.rmtree(lay.src, ignore_errors=True)
        log.info("%s: checkpoint ready (%d bytes, sha256 %s)", model_id, size, sha)
        return marker

    def _fetch_verified(self, model_id, ref, lay, prog, expected, pin) -> tuple:
        """(url, sha256, size, path in src/) of the first URL (then the mirrors) whose file downloads,
        matches and reads; raises one error for all of them otherwise."""
        errors = []
        for url in (ref.url, *ref.mirrors):
            try:
                log.info("%s: fetching %s checkpoint from %s", model_id, ref.format.name, url)
                sha, size, rel = ref.format.fetch(FetchRun(self, model_id, ref, lay, prog, expected, pin), url)
                self._verify(model_id, ref, lay, url, rel, sha, prog, pin)
                return url, sha, size, rel
            except CheckpointError as exc:
                log.log(logging.WARNING if ref.mirrors else logging.INFO, "%s: %s", model_id, exc)
                errors.append(exc)
                prog.restart()
        raise self._combined(model_id, errors)

    @staticmethod
    def _combined(model_id, errors) -> CheckpointError:
        """One error for a fetch that failed from every URL: a wrong file wins over an unreachable one."""
        bad = [e for e in errors if isinstance(e, CheckpointInvalid)]
        if bad:
            return type(bad[-1])(f"checkpoint of {model_id}: {bad[-1].message}", model_id, bad[-1].fix)
        reasons = "; ".join(e.message for e in errors)
        err = CheckpointUnavailable(f"cannot fetch the checkpoint of {model_id}: {reasons}", model_id)
        err.__cause__ = errors[-1]
        return err

    def _verify(self, model_id, ref, lay, url, rel, sha, prog, pin):
        """Read every tensor of the promoted checkpoint and write and read back its native copy; on any
        failure, delete what was fetched and raise CheckpointInvalid (nothing is pinned)."""
        fmt = ref.format
        try:
            advance = prog.begin(progress_mod.CONVERTING)
            try:
                variables, meta = fmt.read(lay.src / rel, progress=advance)
            except CheckpointError:
                raise
            except Exception as exc:  # a reader meeting bytes it does not expect
                log.exception("%s: reading the %s checkpoint failed", model_id, fmt.name)
                raise CheckpointInvalid(f"{type(exc).__name__}: {exc}") from exc
            if not variables:
                raise CheckpointInvalid("it holds no weights")
            if fmt.converts:
                try:
                    write_native(lay.native, variables, encode_meta(meta, fmt.name, sha))
                except OSError as exc:  # served from the source, converted in memory on each load
                    log.warning("%s: no native copy (%s); the source is kept and read on each load", model_id, exc)
                else:
                    del variables
                    if self._open_native_copy(lay, ref, sha) is None:
                        raise CheckpointInvalid("its native copy does not read back")
                    log.info("%s: wrote and read back the native copy %s", model_id, lay.native)
        except CheckpointError as exc:
            self._discard(lay)
            note = "nothing of it was kept or pinned"
            if pin and pin.get("sha256") == sha:
                # The pin is of these very bytes, recorded before pins waited for verification: it
                # protects nothing, and keeping it would refuse the right file later.
                self.tofu.forget(model_id, sha)
                note = f"the sha256 pinned for it was of these unreadable bytes and is forgotten ({note})"
            raise CheckpointInvalid(
                f"the {fmt.name} checkpoint downloaded from {url} is unreadable: {exc.message}; {note}",
                model_id,
                fix_command(model_id),
                {"url": url, "sha256": sha},
            ) from exc

    # ---- background fetches ------------------------------------------------------------------------
    def _start_background(self, model_id, ref, lay) -> threading.Thread:
        """The one background fetch of a model in this process (started unless one is running)."""
        with self._guard:
            thread = self._downloads.get(model_id)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(
                    target=self._background_fetch, args=(model_id, ref, lay), name=f"fetch {model_id}", daemon=True
                )
                self._downloads[model_id] = thread
                thread.start()
            return thread

    def _background_fetch(self, model_id, ref, lay):
        try:
            self._make_root(model_id, lay)
            lock = filelock.FileLock(str(lay.lock))
            lock.acquire()  # another process fetching it: wait for it, then find it ready (or failed)
            try:
                if self._ready(lay, model_id, ref):
                    return
                rec = self._failure(lay, ref)
                if rec and time.time() < rec["retry_at"]:
                    return  # it failed in the process we waited for: its backoff applies
                with stage(log, "fetch", model=model_id, background=True):
                    self._fetch_locked(model_id, ref, lay, False)
            finally:
                lock.release()
        except CheckpointError as exc:  # recorded in failed.json; the next request reports it
            log.warning("%s: background fetch failed: %s", model_id, exc.message)
        except Exception:  # pragma: no cover - a bug; logged, never silent
            log.exception("%s: background fetch failed", model_id)

    def _wait_ready(self, model_id, ref, lay, wait_s, thread):
        """Wait up to ``wait_s`` for the fetch to finish: its marker, or the failure it records."""
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            marker = self._ready(lay, model_id, ref)
            if marker:
                return marker
            rec = self._failure(lay, ref)
            if rec and time.time() < rec["retry_at"]:
                raise self._failure_error(model_id, rec)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._downloading_error(model_id, ref, lay)
            if thread.is_alive():
                thread.join(min(0.1, remaining))
            else:  # another process holds the lock
                time.sleep(min(0.1, remaining))

    def _obtain(self, model_id, ref, lay, progress, wait_s) -> dict:
        """The marker of a checkpoint that is not ready: fetched now, or by the background fetch."""
        self._refuse_offline(model_id, ref, lay)
        rec = self._failure(lay, ref)
        if rec and time.time() < rec["retry_at"]:
            raise self._failure_error(model_id, rec)  # not again before its backoff ends
        if wait_s is None or sources.is_local(ref.url):
            return self._fetch_now(model_id, ref, lay, progress)
        self._make_root(model_id, lay)  # a MODEL_DIR it cannot write is said now, not "downloading"
        thread = self._start_background(model_id, ref, lay)
        return self._wait_ready(model_id, ref, lay, wait_s, thread)

    # ---- open --------------------------------------------------------------------------------------
    def open(self, model_id, checkpoint, progress=False, wait_s=_STORE_DEFAULT) -> Checkpoint:
        """The model's weights as a Checkpoint of read-only memory maps (fetching if needed, see the class:
        ``wait_s`` overrides ``fetch_wait_s`` for this call)."""
        with _about(model_id):
            ref = CheckpointRef.from_entry(checkpoint)
            fmt = ref.format
            if fmt.reads_in_place(ref.url):
                path, sha = self._local_file(model_id, ref)
                return self._read_as_is(fmt, path, sha)
            wait = self.fetch_wait_s if wait_s is _STORE_DEFAULT else wait_s
            lay = Layout(self.model_dir, model_id)
            for _ in range(2):
                marker = self._ready(lay, model_id, ref) or self._obtain(model_id, ref, lay, progress, wait)
                ck = self._open_ready(model_id, ref, lay, marker)
                if ck is not None:
                    return ck
            raise CheckpointInvalid(f"the native copy of {model_id} does not read after a fresh fetch", model_id)

    def _open_ready(self, model_id, ref, lay, marker) -> Checkpoint | None:
        """The checkpoint of a ready model; None if its native copy is unusable and its source deleted
        (the marker is then removed, so the caller fetches again)."""
        fmt, sha = ref.format, marker["sha256"]
        path = lay.src / marker["path"]
        if not fmt.converts:
            return self._read_as_is(fmt, path, sha)
        ck = self._open_native_copy(lay, ref, sha)
        if ck is not None:
            return ck
        if not fmt.present(path):
            log.warning("%s: the native copy is unusable and the source was deleted; fetching again", model_id)
            lay.marker.unlink(missing_ok=True)
            return None
        try:  # fetched by an older store, or the native copy could not be written: convert now
            lock = filelock.FileLock(str(lay.lock))
            lock.acquire()
        except OSError as exc:  # read-only MODEL_DIR without a native copy: read, don't cache
            log.warning("%s: cannot lock %s (%s); reading without a native copy", model_id, lay.lock, exc)
            return self._convert(model_id, ref, lay, path, sha, write=False)
        try:
            return self._open_native_copy(lay, ref, sha) or self._convert(model_id, ref, lay, path, sha)
        finally:
            lock.release()

    def prepare(self, model_id, checkpoint, progress=False, repin=False) -> dict:
        """Fetch and build the native copy now, in the caller's thread, even during an earlier failure's
        backoff (``magenta-api fetch``, Docker builds); ``repin`` replaces the pinned sha256 with the
        verified new download's. Returns status()."""
        self.fetch(model_id, checkpoint, progress=progress, repin=repin)
        self.open(model_id, checkpoint, progress=progress, wait_s=None)
        return self.status(model_id, checkpoint)

    def forget(self, model_id, checkpoint) -> dict:
        """Delete the model's files under MODEL_DIR/<id>/ and its pinned sha256, so the next fetch starts
        from nothing and pins anew (``magenta-api forget``); returns what was forgotten."""
        with _about(model_id):
            ref = CheckpointRef.from_entry(checkpoint)
            if ref.format.reads_in_place(ref.url):
                return {"model": model_id, "pin": None, "files": False}
            lay = Layout(self.model_dir, model_id)
            if not lay.root.is_dir():
                pin = self.tofu.forget(model_id)
                return {"model": model_id, "pin": pin, "files": False}
            lock = filelock.FileLock(str(lay.lock))
            try:
                lock.acquire(timeout=1)
            except filelock.Timeout:
                raise CheckpointUnavailable(
                    f"the checkpoint of {model_id} is being fetched; nothing was forgotten",
                    model_id,
                    f"wait for the fetch to end, then run `magenta-api forget {model_id}` again",
                ) from None
            try:
                pin = self.tofu.forget(model_id)
                files = any(p.exists() for p in (lay.marker, lay.native, lay.src, lay.staging, lay.failed))
                self._discard(lay)
                lay.failed.unlink(missing_ok=True)
            finally:
                lock.release()
            return {"model": model_id, "pin": pin, "files": files}

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
        """Read a source fetched by an older store (or kept without a native copy) and convert it."""
        log.info("%s: reading %s checkpoint %s", model_id, ref.format.name, path)
        try:
            variables, meta = ref.format.read(path)
            if not variables:
                raise CheckpointInvalid("it holds no weights")
        except CheckpointInvalid as exc:
            note = "it was deleted"
            if write:  # the verified download does not read: drop it so the next fetch starts clean
                self._discard(lay)
                if self.tofu.forget(model_id, sha) is not None:
                    note += ", with the sha256 pinned for it"
            raise CheckpointInvalid(
                f"checkpoint of {model_id} is unreadable: {exc.message} ({note})", model_id, fix_command(model_id)
            ) from exc
        try:
            if not write:
                raise OSError("MODEL_DIR is not writable")
            write_native(lay.native, variables, encode_meta(meta, ref.format.name, sha))
        except OSError as exc:
            log.warning("%s: no native copy (%s); serving from memory", model_id, exc)
            return Checkpoint(variables, ref.format.name, meta, sha)
        log.info("%s: wrote native copy %s (%d tensors)", model_id, lay.native, len(variables))
        return self._open_native_copy(lay, ref, sha)
