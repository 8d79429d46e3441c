"""The generator-family contract between the core and its plugins.

A family is a class: the core instantiates it once per model with the model's
:class:`ModelSpec` and its loaded :class:`~magenta_api.checkpoint.Checkpoint`, then calls
:meth:`Family.generate` for each request. The core owns HTTP, validation (once per request, in
:mod:`magenta_api.request_builder`), seeding, caching and rendering; the family owns the music.
"""

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .checkpoint import Checkpoint


@dataclass
class ModelSpec:
    """One model as declared in a models.yaml."""

    id: str
    family: str
    description: str = ""
    hparams: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    checkpoint: dict | None = None
    source: str = ""  # the models.yaml file that declared it
    serving: dict = field(default_factory=dict)  # batching and queue (magenta_api.batching.ServingConfig)


@dataclass
class GenerateRequest:
    """A validated request with defaults applied. ``rng`` is seeded from ``seed``."""

    mode: str
    num_outputs: int
    temperature: float
    length: int | None
    qpm: float
    seed: Any  # int or list of ints: the entropy of numpy's SeedSequence
    rng: np.random.Generator
    primer: Any = None  # raw, as sent (event list, NoteSequence JSON, base64 MIDI)
    inputs: list = field(default_factory=list)  # raw, as sent
    params: dict = field(default_factory=dict)  # the family's own fields (its params_schema), as sent
    explicit: frozenset = frozenset()  # names of the fields the client set; the others are defaults


@dataclass
class GenerateResult:
    """NoteSequences (``note_seq`` protobufs) plus extra JSON fields (e.g. ``z`` for encode)."""

    sequences: list
    extra: dict = field(default_factory=dict)


class Family:
    """Base class for a generator family. Subclasses set the class attributes and implement
    :meth:`generate`; they raise :class:`~magenta_api.errors.Unprocessable` for input they cannot use.
    ``__init__`` may raise (``ValueError``...) when the weights or hparams do not make a model: the
    core reports the model as unusable instead of serving it."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[tuple] = ("sample",)
    default_mode: ClassVar[str] = "sample"
    needs_checkpoint: ClassVar[bool] = True
    # JSON Schema of the model's `hparams` in models.yaml (checked at start-up).
    hparams_schema: ClassVar[dict] = {"type": "object"}
    # JSON Schema of the family's own request fields (checked per request, 400 on violation).
    params_schema: ClassVar[dict] = {"type": "object"}
    # Defaults for the shared fields (temperature, length, ...); models.yaml `defaults` override.
    defaults: ClassVar[dict] = {}

    def __init__(self, spec: ModelSpec, checkpoint: Checkpoint | None):
        self.spec = spec
        self.checkpoint = checkpoint

    def generate(self, request: GenerateRequest) -> GenerateResult:
        raise NotImplementedError

    def warm(self) -> None:
        """Build now what the first requests would build lazily (derived weight layouts...). The server
        calls it in the gunicorn master before forking, so that the workers share one copy. Default: nothing."""

    # -- dynamic batching (optional; magenta_api.batching) ------------------------------------------
    def batch_key(self, request: GenerateRequest) -> Hashable | None:
        """Requests with equal keys (not None) may run together in one :meth:`generate_batch` call: a
        family that opts in returns what must match for them to share a forward pass (the mode's kind,
        the length, the temperature...). None, the default, runs the request alone with :meth:`generate`."""
        return None

    def generate_batch(self, requests: list[GenerateRequest]) -> list:
        """One result per request, in order: its :class:`GenerateResult`, or the domain error
        (:class:`~magenta_api.errors.MagentaApiError`) that request alone raised. Each request draws its
        randomness from its own ``rng``, so a seeded request gives the same result batched or not.
        The default runs :meth:`generate` for each; a family that batches overrides it."""
        from .errors import MagentaApiError

        results: list = []
        for request in requests:
            try:
                results.append(self.generate(request))
            except MagentaApiError as exc:
                results.append(exc)
        return results

    @classmethod
    def validate(cls, spec: ModelSpec, request: GenerateRequest) -> None:
        """Checks of a request that need no weights, run once by the core before the checkpoint is
        loaded (after it has refused modes outside ``capabilities`` and values over ``spec.limits``);
        :meth:`generate` only receives requests that passed. Override to raise
        :class:`~magenta_api.errors.Unprocessable` early. Checks that depend on what the weights
        imply (a model's steps from its config.json) belong in :meth:`generate`."""
