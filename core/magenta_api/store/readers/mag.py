"""Magenta ``.mag`` bundles: a GeneratorBundle protobuf holding generator details + one V1 checkpoint."""

import logging

from note_seq.protobuf import generator_pb2

from ..errors import CheckpointInvalid
from .tf import split_global_step
from .tf_v1 import TFV1Reader

log = logging.getLogger(__name__)


def read_mag(path, progress=None):
    """(variables, meta) of a ``.mag`` file; meta has generator_id, description, bundle_details (and
    global_step, which is not a weight). ``progress(bytes done, total)`` is called once it is read."""
    bundle = generator_pb2.GeneratorBundle()
    try:
        with open(path, "rb") as f:
            bundle.ParseFromString(f.read())
    except Exception as exc:  # protobuf raises DecodeError; a truncated file may raise others
        raise CheckpointInvalid(f"{path}: not a Magenta .mag bundle ({exc})") from exc
    if len(bundle.checkpoint_file) != 1:
        raise CheckpointInvalid(
            f"{path}: bundle holds {len(bundle.checkpoint_file)} checkpoint files, Magenta writes exactly one"
        )
    variables = TFV1Reader(bundle.checkpoint_file[0], name=f"{path} (checkpoint)").read_all()
    meta = {
        "generator_id": bundle.generator_details.id,
        "description": bundle.generator_details.description,
        "bundle_details": {"description": bundle.bundle_details.description},
        "has_metagraph": bool(bundle.metagraph_file),
    }
    if progress:
        size = len(bundle.checkpoint_file[0])
        progress(size, size)
    log.debug("read .mag bundle %s: generator %s, %d tensors", path, meta["generator_id"], len(variables))
    return split_global_step(variables, meta)
