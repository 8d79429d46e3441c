"""Checkpoint URLs: supported schemes, gs:// -> public https (or a bucket read, see buckets.py), joining a
base folder with a file name."""

import pathlib
import urllib.parse
import urllib.request

from . import buckets
from .errors import CheckpointInvalid

GCS_PUBLIC = "https://storage.googleapis.com/"
SCHEMES = ("http", "https", "file", "gs", "s3", "az", "abfs")  # buckets: see buckets.py


def normalize(url):
    """Return the URL to actually request; ``gs://bucket/path`` becomes its public storage.googleapis.com URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise CheckpointInvalid(
            f"unsupported checkpoint URL scheme {parts.scheme!r} in {url!r} "
            f"(use one of {', '.join(s + '://' for s in SCHEMES)})"
        )
    if buckets.handles(url):  # s3://, az://, and gs:// when gcsfs is installed: read with credentials
        return url
    if parts.scheme == "gs":
        return GCS_PUBLIC + parts.netloc + parts.path
    return url


def is_local(url):
    return urllib.parse.urlsplit(url).scheme == "file"


def local_path(url):
    """Filesystem path of a file:// URL."""
    parts = urllib.parse.urlsplit(url)
    return pathlib.Path(urllib.request.url2pathname(parts.path))


def join(base, name):
    """``base`` is a folder URL (with or without trailing slash); return the URL of ``name`` inside it."""
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def basename(url):
    """The last path component, used as the local file name."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(normalize(url)).path.rstrip("/").rsplit("/", 1)[-1])
    if not name or name in (".", ".."):
        raise CheckpointInvalid(f"cannot derive a file name from {url!r}")
    return name
