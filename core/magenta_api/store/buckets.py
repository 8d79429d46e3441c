"""Checkpoints in cloud buckets: ``s3://``, ``gs://`` and ``az://`` through fsspec (s3fs, gcsfs, adlfs),
with the platform's usual credentials from the environment.

One attempt of :func:`~.download.download` for a bucket URL: the object's size from ``info``, then its
bytes streamed into the ``.part`` file from where an earlier attempt stopped (a ranged read), so a cut
transfer resumes as an https one does; the caller hashes, checks size and sha256 and renames, exactly as
for https. Transient failures (connection errors, timeouts, 5xx) raise :class:`Transient` and are retried
with the download's backoff; a refused credential is a :class:`CheckpointUnavailable` that says so.

Credentials are each library's own: for S3 ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, an instance or pod role, and ``AWS_ENDPOINT_URL`` for an
S3-compatible server (MinIO, Ceph, moto); for GCS ``GOOGLE_APPLICATION_CREDENTIALS`` or the metadata
server; for Azure ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_NAME`` with a key or
an identity. ``gs://`` is read through gcsfs when it is installed (the ``gcs`` extra), which also reads
public buckets anonymously; without it a ``gs://`` URL is its public https address, as before.
"""

import hashlib
import importlib.util
import pathlib
import urllib.parse

from .errors import CheckpointUnavailable, SourceMissing

CHUNK = 1 << 20
# scheme -> (the fsspec implementation's module, the extra that installs it, where its credentials come from)
LIBRARIES = {
    "s3": ("s3fs", "s3", "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance's role"),
    "gs": ("gcsfs", "gcs", "GOOGLE_APPLICATION_CREDENTIALS or the instance's service account"),
    "az": ("adlfs", "azure", "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with a key or identity"),
    "abfs": ("adlfs", "azure", "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with a key or identity"),
}
SCHEMES = tuple(LIBRARIES)


class Transient(Exception):
    """A failure worth another attempt (the download loop resumes from the bytes on disk)."""


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def handles(url: str) -> bool:
    """Whether this module fetches ``url``: s3:// and az:// always, gs:// when gcsfs is installed."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in LIBRARIES:
        return False
    return scheme != "gs" or _installed("gcsfs")


def _filesystem(url: str):
    scheme = urllib.parse.urlsplit(url).scheme
    module, extra, _ = LIBRARIES[scheme]
    if not _installed(module):
        raise CheckpointUnavailable(
            f"{scheme}:// checkpoints need {module}: pip install 'magenta-api[{extra}]'", fix=f"pip install {module}"
        )
    import fsspec

    # a new client each time, so that credentials changed in the environment are read again
    return fsspec.core.url_to_fs(url, skip_instance_cache=True)


def _refused(url: str, exc: Exception) -> CheckpointUnavailable:
    scheme = urllib.parse.urlsplit(url).scheme
    where = LIBRARIES[scheme][2]
    return CheckpointUnavailable(
        f"access to {url} was refused ({exc or type(exc).__name__}): "
        f"check the credentials in the environment ({where})",
        fix=f"give this service read access to {url} ({where})",
    )


def attempt(url: str, part: pathlib.Path, h, progress) -> tuple:
    """Stream ``url`` into ``part`` from its current size; (sha256 of the whole file, size) when complete."""
    fs, path = _filesystem(url)
    try:
        total = int(fs.info(path)["size"])
    except FileNotFoundError as exc:
        raise SourceMissing(f"{url} does not exist ({exc})") from exc
    except PermissionError as exc:
        raise _refused(url, exc) from exc
    except Exception as exc:  # OSError, TimeoutError, botocore's EndpointConnectionError, aiohttp's errors
        raise Transient(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:  # not the same object any more: start over
        part.unlink()
        offset, h = 0, hashlib.sha256()
    done = offset
    try:
        with fs.open(path, "rb", block_size=8 * CHUNK) as src, open(part, "ab" if offset else "wb") as out:
            src.seek(offset)
            while done < total and (chunk := src.read(min(CHUNK, total - done))):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except PermissionError as exc:
        raise _refused(url, exc) from exc
    except FileNotFoundError as exc:
        raise SourceMissing(f"{url} does not exist ({exc})") from exc
    except Exception as exc:  # a connection cut mid-way, whatever the library calls it
        raise Transient(f"transfer from {url} cut after {done} bytes: {type(exc).__name__}: {exc}") from exc
    if done < total:
        raise Transient(f"transfer from {url} ended at {done} of {total} bytes")
    return h, total
