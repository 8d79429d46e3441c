"""Making a model ready: checkpoint state, fetch and open (one call into the store), build the family
instance, keep it for the life of the process.

A request touches the store at most once: ``open`` for a model that is not loaded yet (it fetches when
needed), nothing for a loaded one. The result cache's key needs the checkpoint's identity; a declared
sha256 gives it without the store, otherwise it is the loaded checkpoint's.
"""

import logging
import threading

from .errors import ModelBroken
from .family import Family, ModelSpec
from .logs import stage

logger = logging.getLogger(__name__)

NO_CHECKPOINT = {"state": "ready", "size": 0, "bytes_done": None, "sha256": None, "format": None, "path": None}


def needs_store(spec: ModelSpec, cls: type[Family]) -> bool:
    return bool(spec.checkpoint) and cls.needs_checkpoint


class ModelLoader:
    """Loaded family instances by model id, built once each (concurrent first requests wait for one load)."""

    def __init__(self, store):
        self.store = store
        self._loaded: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def status(self, spec: ModelSpec, cls: type[Family] | None) -> dict:
        """The checkpoint's state as the store sees it (``missing``, ``downloading``, ``ready``)."""
        if not spec.checkpoint or (cls is not None and not cls.needs_checkpoint):
            return dict(NO_CHECKPOINT)
        return self.store.status(spec.id, spec.checkpoint)

    def identity(self, spec: ModelSpec, cls: type[Family]) -> str:
        """What identifies the weights a result came from: ``none`` without a checkpoint, the declared
        sha256, else the loaded checkpoint's (loading the model if it is not loaded yet)."""
        if not spec.checkpoint or not cls.needs_checkpoint:
            return "none"
        declared = spec.checkpoint.get("sha256")
        if declared:  # the store refuses any other bytes, so this is what a load would give
            return declared
        checkpoint = self.load(spec, cls).checkpoint
        return (checkpoint.sha256 if checkpoint else "") or "unknown"

    def load(self, spec: ModelSpec, cls: type[Family], progress: bool = False) -> Family:
        """The family instance for a model, opening its checkpoint the first time (once per process)."""
        model = self._loaded.get(spec.id)
        with stage(logger, "load", model=spec.id, cached=model is not None):
            return model if model is not None else self._load_once(spec, cls, progress)

    def _load_once(self, spec: ModelSpec, cls: type[Family], progress: bool) -> Family:
        with self._guard:
            lock = self._locks.setdefault(spec.id, threading.Lock())
        with lock:  # concurrent first requests: one opens, the others wait and reuse its instance
            if spec.id not in self._loaded:
                checkpoint = self.store.open(spec.id, spec.checkpoint, progress) if needs_store(spec, cls) else None
                self._loaded[spec.id] = self._build(spec, cls, checkpoint)
                logger.info("model %s loaded (family %s)", spec.id, spec.family)
        return self._loaded[spec.id]

    @staticmethod
    def _build(spec: ModelSpec, cls: type[Family], checkpoint) -> Family:
        try:
            return cls(spec, checkpoint)
        except Exception as exc:  # the plugin's own check of weights and hparams, or a bug in it
            logger.exception("model %s: family %s cannot use its checkpoint", spec.id, spec.family)
            raise ModelBroken(
                f"model {spec.id!r} cannot be built from its checkpoint: {exc}",
                {"model": spec.id, "family": spec.family, "source": spec.source},
            ) from exc
