"""CheckpointStore: fetch, verify, convert and open a model's checkpoint, whatever its published format.

Hashes of multi-file checkpoints (``magentajs``, ``tf`` prefixes) are the sha256 of their files
concatenated in a fixed order: ``weights_manifest.json`` then the shards in manifest order; ``.index``
then the data shards (or the single V1 file). ``size`` is the total byte count of those files.
"""

import json
import logging
import os
import pathlib
import shutil

import filelock

from ..checkpoint import Checkpoint
from . import progress as progress_mod
from . import sources
from .download import download, part_path
from .errors import CheckpointError, CheckpointUnavailable
from .extract import safe_extract
from .layout import Layout
from .readers import native as native_mod
from .verify import TofuLock, check, sha256_file

log = logging.getLogger(__name__)

FORMATS = ("tf-tar", "tf", "mag", "magentajs", "native")
STORE_VERSION = "1"


class _Spec:
    def __init__(self, checkpoint):
        if not isinstance(checkpoint, dict) or not checkpoint.get("url"):
            raise CheckpointError("checkpoint entry needs a url")
        self.url = checkpoint["url"]
        self.sha256 = (checkpoint.get("sha256") or "").lower() or None
        self.size = checkpoint.get("size")
        self.format = checkpoint.get("format") or "tf-tar"
        if self.format not in FORMATS:
            raise CheckpointError(f"unknown checkpoint format {self.format!r} (one of {', '.join(FORMATS)})")
        self.mirrors = list(checkpoint.get("mirrors") or [])
        sources.normalize(self.url)  # refuse unknown schemes early


def _lock_busy(path):
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


def _meta_from_native(metadata):
    if "magenta_api.meta" in metadata:
        return json.loads(metadata["magenta_api.meta"])
    meta = {}
    for key, value in metadata.items():  # a native file written elsewhere: decode JSON-looking values
        try:
            meta[key] = json.loads(value) if value[:1] in "{[" else value
        except ValueError:
            meta[key] = value
    return meta


def native_metadata(fmt, source_sha256, meta):
    """The ``__metadata__`` the store writes into native copies (all values are strings)."""
    return {"magenta_api.format": fmt, "magenta_api.source_sha256": source_sha256,
            "magenta_api.store_version": STORE_VERSION, "magenta_api.meta": json.dumps(meta, sort_keys=True)}


def split_global_step(variables, meta):
    """Optimizer slots are already gone; ``global_step`` is training state too: move it to meta."""
    step = variables.pop("global_step", None)
    if step is not None:
        meta["global_step"] = int(step)
    return variables, meta


class CheckpointStore:
    """Checkpoints under ``model_dir``; safe to share between processes (file locks) and threads."""

    def __init__(self, model_dir, offline=False, retries=5, backoff=0.5, timeout=(10, 60), session=None):
        self.model_dir = pathlib.Path(model_dir)
        self.offline = offline
        self.retries, self.backoff, self.timeout, self.session = retries, backoff, timeout, session
        self.tofu = TofuLock(self.model_dir)
        self._local_ok = {}

    # ---- state -------------------------------------------------------------------------------------
    def _expected_sha(self, model_id, spec):
        if spec.sha256:
            return spec.sha256
        pin = self.tofu.get(model_id, spec.url)
        return pin["sha256"] if pin else None

    def _ready(self, lay, model_id, spec):
        marker = _read_json(lay.marker)
        if not marker or marker.get("format") != spec.format:
            return None
        expected = self._expected_sha(model_id, spec)
        if expected and marker.get("sha256") != expected:
            return None
        path = lay.src / marker.get("path", "")
        if not (path.exists() or pathlib.Path(str(path) + ".index").exists()):  # file, folder or V2 prefix
            return None
        return marker

    def status(self, model_id, checkpoint):
        """State of one model's checkpoint without touching the network."""
        spec = _Spec(checkpoint)
        out = {"state": "missing", "bytes_done": None, "size": spec.size, "sha256": spec.sha256,
               "format": spec.format, "path": None}
        if spec.format == "native" and sources.is_local(spec.url):
            path = sources.local_path(spec.url)
            if path.is_file():
                out.update(state="ready", path=str(path), size=path.stat().st_size,
                           bytes_done=path.stat().st_size)
            return out
        lay = Layout(self.model_dir, model_id)
        marker = self._ready(lay, model_id, spec)
        if marker:
            out.update(state="ready", bytes_done=marker["size"], size=marker["size"], sha256=marker["sha256"],
                       path=str(lay.src / marker["path"]))
            return out
        out["sha256"] = self._expected_sha(model_id, spec)
        if _lock_busy(lay.lock):
            out["state"] = "downloading"
            prog = progress_mod.read(lay.progress) or {}
            out["bytes_done"] = prog.get("bytes_done", self._staged_bytes(lay))
            out["size"] = prog.get("size") or spec.size
        else:
            staged = self._staged_bytes(lay)
            out["bytes_done"] = staged or None
        return out

    @staticmethod
    def _staged_bytes(lay):
        if not lay.staging.is_dir():
            return 0
        return sum(p.stat().st_size for p in lay.staging.iterdir() if p.is_file())

    # ---- fetch -------------------------------------------------------------------------------------
    def _hint(self, model_id):
        return f"magenta-api fetch {model_id}"

    def _local_native(self, model_id, spec):
        path = sources.local_path(spec.url)
        try:
            st = path.stat()
        except OSError:
            raise CheckpointUnavailable(f"native checkpoint {path} does not exist", model_id=model_id) from None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._local_ok:
            sha = sha256_file(path).hexdigest()
            check(str(path), sha, st.st_size, spec.sha256, spec.size)
            self._local_ok[key] = sha
        return path, self._local_ok[key]

    def fetch(self, model_id, checkpoint, progress=False):
        """Make the checkpoint present and verified; return its path (file or folder). Idempotent."""
        spec = _Spec(checkpoint)
        if spec.format == "native" and sources.is_local(spec.url):
            return self._local_native(model_id, spec)[0]
        lay = Layout(self.model_dir, model_id)
        marker = self._ready(lay, model_id, spec)
        if marker:
            return lay.src / marker["path"]
        if self.offline and not sources.is_local(spec.url):
            raise CheckpointUnavailable(
                f"checkpoint of {model_id} is not downloaded and offline mode is on (MAGENTA_API_OFFLINE)",
                hint=self._hint(model_id), model_id=model_id)
        lay.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(lay.lock))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.info("%s: another process is fetching this checkpoint; waiting for it", model_id)
            lock.acquire()
        try:
            marker = self._ready(lay, model_id, spec)
            if marker:
                return lay.src / marker["path"]
            return self._fetch_locked(model_id, spec, lay, progress)
        finally:
            lock.release()

    def _fetch_locked(self, model_id, spec, lay, bar):
        lay.marker.unlink(missing_ok=True)  # stale or mismatching: never loaded again
        lay.native.unlink(missing_ok=True)
        expected = self._expected_sha(model_id, spec)
        prog = progress_mod.Progress(model_id, lay.progress, total=spec.size, bar=bar,
                                     single_file=spec.format in ("tf-tar", "mag", "native"))
        errors = []
        try:
            for url in [spec.url] + spec.mirrors:
                try:
                    log.info("%s: fetching %s checkpoint from %s", model_id, spec.format, url)
                    sha, size, rel = self._fetch_from(url, spec, expected, lay, prog)
                    break
                except (CheckpointUnavailable, CheckpointError) as exc:
                    log.warning("%s: %s", model_id, exc)
                    errors.append(exc)
                    prog.base = 0
            else:
                bad = [e for e in errors if isinstance(e, CheckpointError)]
                if bad:
                    raise CheckpointError(f"checkpoint of {model_id}: {bad[-1]}", model_id=model_id) from bad[-1]
                reasons = "; ".join(getattr(e, "reason", str(e)) for e in errors)
                raise CheckpointUnavailable(f"cannot fetch the checkpoint of {model_id}: {reasons}",
                                            hint=self._hint(model_id), model_id=model_id) from errors[-1]
        finally:
            prog.close()
        if not spec.sha256 and not expected:
            self.tofu.record(model_id, spec.url, sha, size, spec.format)
        _write_json(lay.marker, {"url": url, "format": spec.format, "sha256": sha, "size": size, "path": rel})
        log.info("%s: checkpoint ready (%d bytes, sha256 %s)", model_id, size, sha)
        return lay.src / rel

    def _download(self, url, dest, prog, expected_sha256=None, expected_size=None):
        sha, size = download(url, dest, expected_sha256=expected_sha256, expected_size=expected_size,
                             progress=prog, retries=self.retries, backoff=self.backoff, timeout=self.timeout,
                             session=self.session)
        prog.file_done(size)
        return sha, size

    def _promote(self, lay, staged):
        """Move verified staged files into src/ (replacing any previous copy)."""
        shutil.rmtree(lay.src, ignore_errors=True)
        lay.src.mkdir(parents=True)
        for p in staged:
            os.replace(p, lay.src / p.name)
        shutil.rmtree(lay.staging, ignore_errors=True)

    def _fetch_from(self, url, spec, expected, lay, prog):
        lay.staging.mkdir(parents=True, exist_ok=True)
        if spec.format in ("tf-tar", "mag", "native"):
            name = sources.basename(url)
            staged = lay.staging / name
            if staged.exists():  # a complete file from an interrupted fetch: verify it again
                staged.unlink()
            sha, size = self._download(url, staged, prog, expected, spec.size)
            if spec.format == "tf-tar":
                try:
                    safe_extract(staged, lay.src)
                finally:  # verified but unusable archives are not kept either
                    shutil.rmtree(lay.staging, ignore_errors=True)
                return sha, size, "."
            self._promote(lay, [staged])
            return sha, size, name
        files = (self._fetch_magentajs if spec.format == "magentajs" else self._fetch_tf)(url, lay, prog)
        hashed = [p for p in files if p.name != "config.json"]
        sha, size = _combined_sha256(hashed)
        try:
            check(url, sha, size, expected, spec.size)
        except CheckpointError:
            shutil.rmtree(lay.staging, ignore_errors=True)
            raise
        self._promote(lay, files)
        return sha, size, "." if spec.format == "magentajs" else files[0].name.removesuffix(".index")

    def _get_staged(self, url, dest, prog, optional=False):
        if dest.exists():  # completed before an interruption; covered by the combined hash check
            prog.file_done(dest.stat().st_size)
            return dest
        try:
            self._download(url, dest, prog)
        except CheckpointUnavailable as exc:
            if optional and ("HTTP 404" in exc.reason or "does not exist" in exc.reason):
                part_path(dest).unlink(missing_ok=True)
                return None
            raise
        return dest

    def _fetch_magentajs(self, base, lay, prog):
        from .readers.magentajs import load_manifest, shard_names

        manifest = self._get_staged(sources.join(base, "weights_manifest.json"),
                                    lay.staging / "weights_manifest.json", prog)
        files = [manifest]
        for name in shard_names(load_manifest(manifest)):
            if "/" in name or name in (".", ".."):
                raise CheckpointError(f"Magenta.js manifest names an unsafe shard path {name!r}")
            files.append(self._get_staged(sources.join(base, name), lay.staging / name, prog))
        config = self._get_staged(sources.join(base, "config.json"), lay.staging / "config.json", prog,
                                  optional=True)
        return files + ([config] if config else [])

    def _fetch_tf(self, prefix, lay, prog):
        from .readers.sstable import iter_table

        name = sources.basename(prefix)
        index = self._get_staged(prefix + ".index", lay.staging / (name + ".index"), prog, optional=True)
        if index is None:  # no V2 index: a V1 single-file checkpoint
            return [self._get_staged(prefix, lay.staging / name, prog)]
        num_shards = 1
        for key, value in iter_table(index.read_bytes(), name=str(index)):
            if key == b"":
                from .protowire import fields

                num_shards = next((v for n, _, v in fields(value) if n == 1), 1)
                break
        files = [index]
        for i in range(num_shards):
            suffix = f".data-{i:05d}-of-{num_shards:05d}"
            files.append(self._get_staged(prefix + suffix, lay.staging / (name + suffix), prog))
        return files

    # ---- open --------------------------------------------------------------------------------------
    def open(self, model_id, checkpoint):
        """The model's weights as a Checkpoint of read-only memory maps (fetching/converting if needed)."""
        spec = _Spec(checkpoint)
        if spec.format == "native" and sources.is_local(spec.url):
            path, sha = self._local_native(model_id, spec)
            variables, metadata = native_mod.read_native(path)
            return Checkpoint(variables, "native", _meta_from_native(metadata), sha)
        path = self.fetch(model_id, checkpoint)
        lay = Layout(self.model_dir, model_id)
        marker = _read_json(lay.marker) or {}
        sha = marker.get("sha256", "")
        if spec.format == "native":
            variables, metadata = native_mod.read_native(path)
            return Checkpoint(variables, "native", _meta_from_native(metadata), sha)
        ck = self._open_native_copy(lay, spec, sha)
        if ck is None:
            try:
                lock = filelock.FileLock(str(lay.lock))
                lock.acquire()
            except OSError as exc:  # read-only MODEL_DIR without a native copy: read, don't cache
                log.warning("%s: cannot lock %s (%s); reading without a native copy", model_id, lay.lock, exc)
                return self._convert(model_id, spec, lay, path, sha, write=False)
            try:
                ck = self._open_native_copy(lay, spec, sha) or self._convert(model_id, spec, lay, path, sha)
            finally:
                lock.release()
        return ck

    def prepare(self, model_id, checkpoint, progress=False):
        """Fetch and build the native copy now (``magenta-api fetch``, Docker builds); returns status()."""
        self.fetch(model_id, checkpoint, progress=progress)
        self.open(model_id, checkpoint)
        return self.status(model_id, checkpoint)

    def _open_native_copy(self, lay, spec, sha):
        if not lay.native.exists():
            return None
        try:
            variables, metadata = native_mod.read_native(lay.native)
        except CheckpointError as exc:
            log.warning("ignoring unreadable native copy %s: %s", lay.native, exc)
            return None
        if (metadata.get("magenta_api.source_sha256") != sha
                or metadata.get("magenta_api.store_version") != STORE_VERSION):
            return None
        return Checkpoint(variables, spec.format, _meta_from_native(metadata), sha)

    def _convert(self, model_id, spec, lay, path, sha, write=True):
        log.info("%s: reading %s checkpoint %s", model_id, spec.format, path)
        try:
            variables, meta = read_source(spec.format, path)
        except CheckpointError as exc:
            # The verified download does not read: drop it so the next fetch starts clean.
            lay.marker.unlink(missing_ok=True)
            raise CheckpointError(f"checkpoint of {model_id} is unreadable: {exc}", model_id=model_id) from exc
        if not variables:
            raise CheckpointError(f"checkpoint of {model_id} holds no weights", model_id=model_id)
        try:
            if not write:
                raise OSError("MODEL_DIR is not writable")
            native_mod.write_native(lay.native, variables, native_metadata(spec.format, sha, meta))
        except OSError as exc:
            log.warning("%s: no native copy (%s); serving from memory", model_id, exc)
            return Checkpoint(variables, spec.format, meta, sha)
        log.info("%s: wrote native copy %s (%d tensors)", model_id, lay.native, len(variables))
        variables, metadata = native_mod.read_native(lay.native)
        return Checkpoint(variables, spec.format, _meta_from_native(metadata), sha)


def find_tf_checkpoint(folder):
    """The checkpoint prefix inside an extracted folder: V2 (``*.index``) or V1 (a bare table file)."""
    folder = pathlib.Path(folder)
    indexes = sorted(folder.rglob("*.index"))
    if indexes:
        state = next(iter(sorted(folder.rglob("checkpoint"))), None)
        if state is not None and len(indexes) > 1:
            for line in state.read_text(errors="replace").splitlines():
                if line.startswith("model_checkpoint_path:"):
                    wanted = line.split(":", 1)[1].strip().strip('"')
                    for idx in indexes:
                        if idx.name == os.path.basename(wanted) + ".index":
                            return ("v2", idx.with_suffix(""))
        if len(indexes) > 1:
            log.warning("several checkpoints in %s; using %s", folder, indexes[-1])
        return ("v2", indexes[-1].with_suffix(""))
    from .readers.tf_v1 import is_v1_file

    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith((".meta", ".json")) and ".data-" not in p.name and is_v1_file(p):
            return ("v1", p)
    raise CheckpointError(f"no TensorFlow checkpoint found in {folder}")


def read_tf(path):
    """(variables, meta) of a TF checkpoint given a folder, a V2 prefix or a V1 file."""
    from .readers.tf_bundle import TFBundleReader, is_v2_prefix
    from .readers.tf_v1 import TFV1Reader

    path = pathlib.Path(path)
    if path.is_dir():
        kind, path = find_tf_checkpoint(path)
    else:
        kind = "v2" if is_v2_prefix(path) else "v1"
    if kind == "v2":
        variables = TFBundleReader(path).read_all()
    else:
        variables = TFV1Reader(path, name=str(path)).read_all()
    return split_global_step(variables, {"checkpoint": path.name, "tf_format": kind.upper()})


def read_source(fmt, path):
    """(variables, meta) of a fetched checkpoint in its published format."""
    if fmt in ("tf", "tf-tar"):
        return read_tf(path)
    if fmt == "mag":
        from .readers.mag import read_bundle

        return split_global_step(*read_bundle(path))
    if fmt == "magentajs":
        from .readers.magentajs import read_magentajs

        return read_magentajs(path)
    if fmt == "native":
        variables, metadata = native_mod.read_native(path)
        return variables, _meta_from_native(metadata)
    raise CheckpointError(f"unknown checkpoint format {fmt!r}")
