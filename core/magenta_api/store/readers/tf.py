"""TensorFlow checkpoints as the store reads them: an extracted folder, a V2 prefix or a V1 file.

Optimizer slots are skipped by the table readers; ``global_step`` is training state too and moves from
the variables into the meta.
"""

import logging
import os
import pathlib

from ..errors import CheckpointInvalid
from .tf_bundle import TFBundleReader, is_v2_prefix
from .tf_v1 import TFV1Reader, is_v1_file

log = logging.getLogger(__name__)


def split_global_step(variables: dict, meta: dict) -> tuple:
    """Move ``global_step`` (a training counter, not a weight) from the variables into the meta."""
    step = variables.pop("global_step", None)
    if step is not None:
        meta["global_step"] = int(step)
    return variables, meta


def find_checkpoint(folder) -> tuple:
    """``("v2", prefix)`` or ``("v1", file)`` of the checkpoint inside an extracted folder; with several
    V2 checkpoints, the one the ``checkpoint`` state file names (else the last by name)."""
    folder = pathlib.Path(folder)
    indexes = sorted(folder.rglob("*.index"))
    if indexes:
        state = next(iter(sorted(folder.rglob("checkpoint"))), None)
        if state is not None and len(indexes) > 1:
            for line in state.read_text(errors="replace").splitlines():
                if line.startswith("model_checkpoint_path:"):
                    wanted = os.path.basename(line.split(":", 1)[1].strip().strip('"'))
                    for idx in indexes:
                        if idx.name == wanted + ".index":
                            return "v2", idx.with_suffix("")
        if len(indexes) > 1:
            log.warning("several checkpoints in %s; using %s", folder, indexes[-1])
        return "v2", indexes[-1].with_suffix("")
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith((".meta", ".json")) and ".data-" not in p.name and is_v1_file(p):
            return "v1", p
    raise CheckpointInvalid(f"no TensorFlow checkpoint found in {folder}")


def read_tf(path, progress=None) -> tuple:
    """(variables, meta) of a TF checkpoint given a folder, a V2 prefix or a V1 file; ``progress(bytes
    done, total)`` follows the reading of a V2 checkpoint tensor by tensor."""
    path = pathlib.Path(path)
    if path.is_dir():
        kind, path = find_checkpoint(path)
    else:
        kind = "v2" if is_v2_prefix(path) else "v1"
    if kind == "v2":
        variables = TFBundleReader(path).read_all(progress=progress)
    else:  # one file read at once
        variables = TFV1Reader(path, name=str(path)).read_all()
        if progress:
            size = path.stat().st_size
            progress(size, size)
    return split_global_step(variables, {"checkpoint": path.name, "tf_format": kind.upper()})
