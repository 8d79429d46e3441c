"""Streaming download of one file into ``dest`` through ``dest.part``: Range resume, retries, progress.

The file only appears at ``dest`` (atomic rename) once complete and verified against the expected size and
sha256; a mismatch deletes the partial file. Connection errors, cut transfers and 5xx/429 answers are
retried with exponential backoff, resuming from the bytes already on disk; 4xx answers fail at once.
"""

import hashlib
import logging
import os
import pathlib
import re
import socket
import time

import requests
import urllib3

from .. import metrics
from . import buckets, sources
from .errors import CheckpointInvalid, CheckpointUnavailable, SourceMissing
from .verify import CHUNK, check

log = logging.getLogger(__name__)

RETRYABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
NET_CHUNK = 64 * 1024  # small: bytes of a chunk cut mid-way are lost and fetched again
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Retry(Exception):
    """A transient failure: try again (resuming) after a pause."""


def part_path(dest):
    dest = pathlib.Path(dest)
    return dest.with_name(dest.name + ".part")


def _resume_hash(part):
    """Hash of the bytes already downloaded (so the final hash covers the whole file in one pass)."""
    h = hashlib.sha256()
    if part.exists():
        from .verify import sha256_file

        sha256_file(part, h)
    return h


def _copy_local(url, part, h, progress):
    src = sources.local_path(url)
    if not src.is_file():
        raise SourceMissing(f"checkpoint file {src} does not exist")
    total = src.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:
        part.unlink()
        offset, h = 0, hashlib.sha256()
    with open(src, "rb") as fin, open(part, "ab" if offset else "wb") as fout:
        fin.seek(offset)
        done = offset
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h, total


def _unresolvable(exc) -> bool:
    """True when a connection error comes from a failed host-name lookup."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return True
        nested = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        reason = getattr(exc, "reason", None)
        exc = reason if isinstance(reason, BaseException) else (nested or exc.__cause__ or exc.__context__)
    return False


def _http_attempt(session, url, part, h, progress, timeout):
    """One GET (with Range when resuming); returns (hash, total size) when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        resp = session.get(url, stream=True, headers=headers, timeout=timeout)
    except RETRYABLE as exc:
        if _unresolvable(exc):  # no DNS answer: retrying only makes the caller wait (offline machines)
            raise CheckpointUnavailable(f"cannot resolve the host of {url} (no network?)") from exc
        raise _Retry(f"connection to {url} failed: {exc}") from exc
    with resp:
        code = resp.status_code
        if code == 416 and offset:
            m = re.match(r"bytes \*/(\d+)$", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:  # the partial file was already complete
                return h, offset
            log.info("%s: server refused the resume range; starting over", url)
            part.unlink()
            raise _Retry("range not satisfiable")
        if code >= 500 or code == 429:
            raise _Retry(f"HTTP {code} from {url}")
        if code == 404:
            raise SourceMissing(f"HTTP 404 {resp.reason or ''} from {url}".rstrip())
        if code >= 400:
            raise CheckpointUnavailable(f"HTTP {code} {resp.reason or ''} from {url}".rstrip())
        total = None
        if code == 206:
            m = _RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()
                raise _Retry(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
        else:
            if offset:
                log.info("%s: server ignored the Range header; downloading from the start", url)
                part.unlink()
                offset, h = 0, hashlib.sha256()
            if resp.headers.get("Content-Length"):
                total = int(resp.headers["Content-Length"])
        done = offset
        try:
            with open(part, "ab" if offset else "wb") as f:
                for chunk in resp.iter_content(NET_CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except RETRYABLE as exc:
            raise _Retry(f"transfer from {url} cut after {done} bytes: {exc}") from exc
        if total is not None and done < total:
            raise _Retry(f"transfer from {url} ended at {done} of {total} bytes")
        return h, done


@metrics.counts_download
def download(
    url,
    dest,
    *,
    expected_sha256=None,
    expected_size=None,
    progress=None,
    retries=5,
    backoff=0.5,
    timeout=(10, 60),
    session=None,
):
    """Fetch ``url`` to ``dest``; return (sha256 hex, size). Raises CheckpointUnavailable / CheckpointInvalid."""
    url = sources.normalize(url)
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    session = session or requests.Session()
    attempt, last = 0, None
    while True:
        h = _resume_hash(part)
        before = part.stat().st_size if part.exists() else 0
        try:
            if sources.is_local(url):
                h, size = _copy_local(url, part, h, progress)
            elif buckets.handles(url):  # s3://, gs://, az:// through fsspec
                h, size = buckets.attempt(url, part, h, progress)
            else:
                h, size = _http_attempt(session, url, part, h, progress, timeout)
            break
        except (_Retry, buckets.Transient) as exc:
            last = exc
            now = part.stat().st_size if part.exists() else 0
            if now > before:
                attempt = 0  # progress was made: a flaky link is not a dead one
            attempt += 1
            if attempt > retries:
                raise CheckpointUnavailable(f"download of {url} failed after {retries} retries: {last}") from exc
            delay = min(backoff * 2 ** (attempt - 1), 30.0)
            log.warning("%s; retry %d/%d in %.1fs", exc, attempt, retries, delay)
            time.sleep(delay)
    sha256 = h.hexdigest()
    try:
        check(url, sha256, size, expected_sha256, expected_size)
    except CheckpointInvalid:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return sha256, size
