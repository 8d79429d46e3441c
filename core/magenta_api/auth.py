"""API keys: a JSON file of hashed keys (``API_KEYS_FILE``), each with a name and an optional rate limit.

A key is 32 random bytes (``mk_`` + URL-safe base64), shown once by ``magenta-api keys add NAME`` and
stored only as its sha256: the keys are long random strings, so a fast hash is enough and a leaked file
gives no key away. Clients send ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.

Every replica reads the same file (a volume, a Kubernetes Secret) and reads it again when it changes, so a
key revoked by ``magenta-api keys revoke NAME`` is refused everywhere from the next request on. With no
``API_KEYS_FILE`` there are no keys and nothing is checked (local use). This module knows no HTTP: the web
layer passes it the request's headers and maps :class:`Unauthorized` to 401.
"""

import contextvars
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

KEY_PREFIX = "mk_"
FILE_VERSION = 1


class AccessError(Exception):
    """An error of access, not of the request's content (so not a :class:`~.errors.MagentaApiError`,
    whose statuses are those of a request's content): ``code``, ``message``, ``details`` alike."""

    code = "access_error"

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.message, self.details = message, dict(details or {})


class Unauthorized(AccessError):
    """No API key, or one that is unknown or revoked (401)."""

    code = "unauthorized"


class KeysFileError(AccessError):
    """An API keys file that cannot be read or changed (a 500 in the service, exit 2 in ``keys``)."""

    code = "keys_file_invalid"


@dataclass(frozen=True)
class ApiKey:
    """One key as the service sees it: who it is and what it may do (never the key itself)."""

    name: str
    rate_limit: str | None = None  # e.g. "600/minute;10000/day"; None: RATE_LIMIT applies


# The key of the request being served (set by the web layer), read by the rate limiter and the job queue.
current_key: contextvars.ContextVar[ApiKey | None] = contextvars.ContextVar("api_key", default=None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def presented_key(headers: Mapping) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY``, else ``X-API-Key``."""
    auth = headers.get("Authorization") or ""
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return (headers.get("X-API-Key") or "").strip() or None


class KeyStore:
    """The keys file: ``{"version": 1, "keys": [{name, sha256, prefix, created, rate_limit, revoked}]}``.

    Reads are cached and refreshed when the file's modification time or size changes (one ``stat`` per
    request); writes take a file lock and replace the file atomically.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._by_hash: dict[str, ApiKey] = {}

    # -- reading ----------------------------------------------------------------------------------
    def _read(self) -> dict:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": FILE_VERSION, "keys": []}
        except (OSError, ValueError) as exc:
            raise KeysFileError(f"cannot read the API keys file {self.path}: {exc}", {"path": str(self.path)}) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeysFileError(f"{self.path} is not an API keys file (no 'keys' list)", {"path": str(self.path)})
        return doc

    def _active(self) -> dict[str, ApiKey]:
        try:
            st = self.path.stat()
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp or stamp is None:
                doc = self._read()
                self._by_hash = {
                    entry["sha256"]: ApiKey(entry["name"], entry.get("rate_limit"))
                    for entry in doc["keys"]
                    if not entry.get("revoked")
                }
                self._stamp = stamp
            return self._by_hash

    def authenticate(self, headers: Mapping) -> ApiKey:
        """The key the headers carry; :class:`Unauthorized` without one or with an unknown or revoked one."""
        key = presented_key(headers)
        if key is None:
            raise Unauthorized(
                "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                {"fix": "ask the operator for a key (magenta-api keys add NAME)"},
            )
        digest = hash_key(key)
        for known, api_key in self._active().items():
            if hmac.compare_digest(known, digest):
                return api_key
        raise Unauthorized("the API key is not valid (unknown or revoked)", {})

    # -- changing (the `magenta-api keys` command) ------------------------------------------------
    def _write(self, doc: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def _locked(self) -> FileLock:
        return FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=30)

    def add(self, name: str, rate_limit: str | None = None) -> str:
        """A new key for ``name``; returns the key, which is stored only as its hash."""
        if not name.strip():
            raise KeysFileError("a key needs a name", {})
        if rate_limit is not None:
            check_limit(rate_limit)
        with self._locked():
            doc = self._read()
            if any(e["name"] == name and not e.get("revoked") for e in doc["keys"]):
                raise KeysFileError(f"a key named {name!r} exists; revoke it first or choose another name", {})
            key = new_key()
            doc["keys"].append(
                {
                    "name": name,
                    "sha256": hash_key(key),
                    "prefix": key[: len(KEY_PREFIX) + 4],
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "rate_limit": rate_limit,
                    "revoked": None,
                }
            )
            doc["version"] = FILE_VERSION
            self._write(doc)
        return key

    def revoke(self, name: str) -> int:
        """Revoke every active key named ``name``; how many were."""
        with self._locked():
            doc = self._read()
            hits = [e for e in doc["keys"] if e["name"] == name and not e.get("revoked")]
            if not hits:
                raise KeysFileError(f"no active key named {name!r} in {self.path}", {})
            for entry in hits:
                entry["revoked"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._write(doc)
        return len(hits)

    def entries(self) -> list[dict]:
        """Every key's record without its hash: name, prefix, created, rate_limit, revoked."""
        return [{k: v for k, v in e.items() if k != "sha256"} for e in self._read()["keys"]]


def check_limit(text: str) -> str:
    """``text`` if Flask-Limiter's parser reads it ("60/minute;1000/day"), else :class:`KeysFileError`."""
    from limits import parse_many

    try:
        if not parse_many(text):
            raise ValueError("no limit")
    except ValueError as exc:
        raise KeysFileError(f"not a rate limit: {text!r} (write e.g. '60/minute;1000/day')", {}) from exc
    return text
