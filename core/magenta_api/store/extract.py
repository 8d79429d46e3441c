"""Safe extraction of checkpoint tarballs: nothing may land outside the target folder."""

import logging
import os
import pathlib
import shutil
import tarfile

from .errors import CheckpointInvalid

log = logging.getLogger(__name__)


def _check_members(tar, dest):
    root = os.path.realpath(dest)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(root, member.name))
        if os.path.isabs(member.name) or not (target == root or target.startswith(root + os.sep)):
            raise CheckpointInvalid(f"unsafe archive: member {member.name!r} would be written outside the model folder")
        if member.issym() or member.islnk() or member.isdev():
            raise CheckpointInvalid(f"unsafe archive: member {member.name!r} is a link or device file")


def safe_extract(archive, dest):
    """Extract a .tar/.tar.gz into ``dest`` (created fresh, atomically renamed into place)."""
    dest = pathlib.Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                _check_members(tar, tmp)
                # The data filter refuses absolute paths, '..', links out of tree, devices (PEP 706).
                tar.extractall(tmp, filter="data")
        except tarfile.FilterError as exc:
            raise CheckpointInvalid(f"unsafe archive {archive}: {exc}") from exc
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise CheckpointInvalid(f"cannot extract {archive}: {exc}") from exc
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted %s into %s", archive, dest)
    return dest
