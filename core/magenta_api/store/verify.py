"""Integrity: sha256 of files, and the trust-on-first-use lock file ``MODEL_DIR/checkpoints.lock``.

Published Magenta checkpoints have no hashes we could pin in models.yaml, so the first download of a model
records its sha256 and size here, once the store has read and verified it (every tensor, crc32c where the
format has it, the native copy written and read back); every later download or copy must match it.
``magenta-api fetch --repin ID`` replaces an entry on purpose, ``magenta-api forget ID`` deletes it.
"""

import hashlib
import json
import logging
import os
import pathlib
import time

import filelock

from .errors import CheckpointInvalid, ChecksumMismatch

log = logging.getLogger(__name__)
CHUNK = 4 * 1024 * 1024


def sha256_file(path, h=None):
    """sha256 of a file (continuing ``h`` if given); returns the hash object."""
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h


def check(name, sha256, size, expected_sha256, expected_size):
    """Raise ChecksumMismatch unless the measured sha256/size match what is expected (None = unknown)."""
    if expected_size is not None and size != expected_size:
        raise ChecksumMismatch(f"{name}: size {size} bytes, expected {expected_size} (incomplete or wrong file)")
    if expected_sha256 and sha256.lower() != expected_sha256.lower():
        raise ChecksumMismatch(f"{name}: sha256 {sha256} does not match the expected {expected_sha256}")


class TofuLock:
    """``checkpoints.lock``: JSON {model id: {url, sha256, size, format, recorded}} shared by processes."""

    def __init__(self, model_dir):
        self.path = pathlib.Path(model_dir) / "checkpoints.lock"
        self._guard = filelock.FileLock(str(self.path) + ".flock")

    def _load(self):
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise CheckpointInvalid(
                f"{self.path} is not valid JSON ({exc})",
                fix=f"fix or delete {self.path} (it holds the pinned sha256 of each checkpoint)",
            ) from exc

    def get(self, model_id, url):
        """The pinned entry for ``model_id`` if it was pinned for this same URL, else None."""
        entry = self._load().get("models", {}).get(model_id)
        if entry and entry.get("url") != url:
            log.warning(
                "%s: checkpoint URL changed (%s -> %s); the pinned sha256 no longer applies",
                model_id,
                entry.get("url"),
                url,
            )
            return None
        return entry

    def record(self, model_id, url, sha256, size, fmt):
        """Pin a verified download, replacing an older pin of the model (no-op if the same pin exists)."""
        with self._guard:
            data = self._load()
            models = data.setdefault("models", {})
            old = models.get(model_id)
            if old and old.get("url") == url and old.get("sha256") == sha256:
                return
            if old:
                log.warning("%s: replacing the pinned sha256 %s with %s", model_id, old.get("sha256"), sha256)
            models[model_id] = {
                "url": url,
                "sha256": sha256,
                "size": size,
                "format": fmt,
                "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            self._save(data)
            log.info("%s: pinned sha256 %s (%d bytes) in %s", model_id, sha256, size, self.path)

    def forget(self, model_id, sha256=None) -> dict | None:
        """Delete the model's pin (only if it is ``sha256``, when given); returns the deleted entry."""
        if not self.path.exists():
            return None
        with self._guard:
            data = self._load()
            entry = data.get("models", {}).get(model_id)
            if entry is None or (sha256 and entry.get("sha256") != sha256):
                return None
            del data["models"][model_id]
            self._save(data)
            log.warning("%s: forgot the pinned sha256 %s", model_id, entry.get("sha256"))
            return entry

    def _save(self, data):
        data["comment"] = (
            "sha256 of each checkpoint as first downloaded and verified (trust on first use); later "
            "downloads must match. Replace an entry with `magenta-api fetch --repin ID`."
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
