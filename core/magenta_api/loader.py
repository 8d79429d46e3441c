"""Making a model ready: checkpoint state, fetch and open (one call into the store), build the family
instance, keep it for the life of the process.

A request touches the store at most once: ``open`` for a model that is not loaded yet (it fetches, or
starts the background fetch, when needed), nothing for a loaded one, and ``status`` for a model whose
family refused its checkpoint (to see whether the checkpoint has changed since). The result cache's key
needs the checkpoint's identity; a declared sha256 gives it without the store, otherwise it is the
loaded checkpoint's.

A model whose family refuses its checkpoint is remembered as broken, with the family's reason, until its
declaration or its checkpoint changes: ``status`` reports ``state: error`` and later requests fail at
once, without opening the checkpoint or building the family again.
"""

import json
import logging
import threading
import time
from dataclasses import dataclass

from . import metrics
from .errors import ModelBroken
from .family import Family, ModelSpec
from .logs import stage

logger = logging.getLogger(__name__)

NO_CHECKPOINT = {"state": "ready", "size": 0, "bytes_done": None, "sha256": None, "format": None, "path": None}
INCOMPATIBLE = "checkpoint_incompatible"  # the code of a ModelBroken whose checkpoint the family cannot run


def needs_store(spec: ModelSpec, cls: type[Family]) -> bool:
    return bool(spec.checkpoint) and cls.needs_checkpoint


def declaration(spec: ModelSpec) -> str:
    """What a remembered failure depends on in the model's declaration."""
    return json.dumps([spec.family, spec.hparams, spec.checkpoint], sort_keys=True, default=str)


@dataclass
class Broken:
    """A model its family could not build: the error, for which declaration and checkpoint sha256."""

    error: ModelBroken
    declaration: str
    sha256: str | None

    def applies(self, spec: ModelSpec, sha256: str | None) -> bool:
        return self.declaration == declaration(spec) and self.sha256 == sha256

    def again(self) -> ModelBroken:
        return ModelBroken(self.error.message, self.error.details, self.error.code)


class ModelLoader:
    """Loaded family instances by model id, built once each (concurrent first requests wait for one load).

    ``fetch_wait_s``: how long a request waits for a checkpoint being downloaded before the store answers
    ``downloading`` (None: the store's own ``fetch_wait_s``)."""

    def __init__(self, store, fetch_wait_s: float | None = None):
        self.store = store
        self.fetch_wait_s = fetch_wait_s
        self._loaded: dict = {}
        self._broken: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def status(self, spec: ModelSpec, cls: type[Family] | None) -> dict:
        """The checkpoint's state as the store sees it (``missing``, ``downloading``, ``failed``,
        ``ready``), or ``error`` (with ``error``, the reason, and ``error_code``) if the model's family
        refused its checkpoint."""
        if not spec.checkpoint or (cls is not None and not cls.needs_checkpoint):
            status = dict(NO_CHECKPOINT)
        else:
            status = self.store.status(spec.id, spec.checkpoint)
        broken = self._broken.get(spec.id)
        if broken is not None and broken.applies(spec, status.get("sha256")):
            status.update(state="error", error=broken.error.message, error_code=broken.error.code)
        return status

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

    def prepare(self, spec: ModelSpec, progress: bool = False, repin: bool = False) -> dict | None:
        """Fetch the model's checkpoint now, in this thread (``magenta-api fetch``); ``repin`` replaces
        its pinned sha256. Its status, or None if it has no checkpoint."""
        if not spec.checkpoint:
            return None
        self._broken.pop(spec.id, None)
        return self.store.prepare(spec.id, spec.checkpoint, progress=progress, repin=repin)

    def forget(self, spec: ModelSpec) -> dict | None:
        """Delete the model's downloaded checkpoint and its pinned sha256 (``magenta-api forget``)."""
        if not spec.checkpoint:
            return None
        self._broken.pop(spec.id, None)
        return self.store.forget(spec.id, spec.checkpoint)

    def _open(self, spec: ModelSpec, progress: bool):
        if self.fetch_wait_s is None:
            return self.store.open(spec.id, spec.checkpoint, progress)
        return self.store.open(spec.id, spec.checkpoint, progress, wait_s=self.fetch_wait_s)

    def _still_broken(self, spec: ModelSpec, cls: type[Family]) -> Broken | None:
        broken = self._broken.get(spec.id)
        if broken is None:
            return None
        sha = self.store.status(spec.id, spec.checkpoint).get("sha256") if needs_store(spec, cls) else None
        if broken.applies(spec, sha):
            return broken
        self._broken.pop(spec.id, None)  # the declaration or the checkpoint changed: try again
        return None

    def _load_once(self, spec: ModelSpec, cls: type[Family], progress: bool) -> Family:
        broken = self._still_broken(spec, cls)
        if broken is not None:
            raise broken.again()
        with self._guard:
            lock = self._locks.setdefault(spec.id, threading.Lock())
        with lock:  # concurrent first requests: one opens, the others wait and reuse its instance
            if spec.id not in self._loaded:
                broken = self._broken.get(spec.id)
                if broken is not None:  # it failed while this request waited
                    raise broken.again()
                started = time.perf_counter()
                checkpoint = self._open(spec, progress) if needs_store(spec, cls) else None
                self._loaded[spec.id] = self._build(spec, cls, checkpoint)
                metrics.model_loaded(spec.id, time.perf_counter() - started)
                logger.info("model %s loaded (family %s)", spec.id, spec.family)
        return self._loaded[spec.id]

    def _build(self, spec: ModelSpec, cls: type[Family], checkpoint) -> Family:
        try:
            return cls(spec, checkpoint)
        except Exception as exc:  # the plugin's own check of weights and hparams, or a bug in it
            logger.exception("model %s: family %s cannot use its checkpoint", spec.id, spec.family)
            error = self._broken_error(spec, checkpoint, exc)
            self._broken[spec.id] = Broken(error, declaration(spec), checkpoint.sha256 if checkpoint else None)
            raise error from exc

    @staticmethod
    def _broken_error(spec: ModelSpec, checkpoint, exc: Exception) -> ModelBroken:
        details = {"model": spec.id, "family": spec.family, "source": spec.source, "reason": str(exc)}
        where = spec.source or "its models.yaml"
        if checkpoint is None:  # nothing was read: the declaration itself does not build
            details["fix"] = f"correct the declaration of {spec.id} in {where}"
            return ModelBroken(f"model {spec.id!r} cannot be built: {exc}", details)
        details["fix"] = (
            f"declare {spec.id} in {where} with a family (and hparams) that runs this checkpoint, or point it "
            f"at a checkpoint family {spec.family!r} runs; until then the model is not served"
        )
        message = f"model {spec.id!r}: family {spec.family!r} cannot run this checkpoint: {exc}"
        return ModelBroken(message, details, INCOMPATIBLE)
