"""Safe extraction of checkpoint tarballs: nothing may land outside the target folder."""

import errno
import logging
import os
import pathlib
import shutil
import tarfile

from .errors import CheckpointInvalid

log = logging.getLogger(__name__)

UNSAFE_FIX = "the archive at the checkpoint URL is unsafe: point checkpoint.url in its models.yaml at a safe one"

# errnos that mean the target cannot be written (full, over quota or size limit, read-only, refused)
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _check_members(tar, dest):
    root = os.path.realpath(dest)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(root, member.name))
        if os.path.isabs(member.name) or not (target == root or target.startswith(root + os.sep)):
            raise CheckpointInvalid(
                f"unsafe archive: member {member.name!r} would be written outside the model folder", fix=UNSAFE_FIX
            )
        if member.issym() or member.islnk() or member.isdev():
            raise CheckpointInvalid(f"unsafe archive: member {member.name!r} is a link or device file", fix=UNSAFE_FIX)


def _reporting(members, progress):
    """The members, calling ``progress(bytes done, total)`` as each one is reached and at the end."""
    total = sum(m.size for m in members if m.isfile())
    done = 0
    for member in members:
        yield member
        if member.isfile():
            done += member.size
            progress(done, total)
    progress(done, total)


def safe_extract(archive, dest, progress=None):
    """Extract a .tar/.tar.gz into ``dest`` (created fresh, atomically renamed into place);
    ``progress(bytes done, total)`` is called as members are written."""
    dest = pathlib.Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                _check_members(tar, tmp)
                members = tar.getmembers()
                # The data filter refuses absolute paths, '..', links out of tree, devices (PEP 706).
                tar.extractall(tmp, members=_reporting(members, progress) if progress else members, filter="data")
        except tarfile.FilterError as exc:
            raise CheckpointInvalid(f"unsafe archive {archive}: {exc}", fix=UNSAFE_FIX) from exc
        except OSError as exc:
            if exc.errno in _CANNOT_WRITE:  # the disk, not the archive: the store reports it as such
                raise
            raise CheckpointInvalid(f"cannot extract {archive}: {exc}") from exc
        except (tarfile.TarError, EOFError) as exc:
            raise CheckpointInvalid(f"cannot extract {archive}: {exc}") from exc
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted %s into %s", archive, dest)
    return dest
