"""A plugin used by the core's tests: small families whose output depends only on the request."""

import numpy as np
from note_seq.protobuf import music_pb2

from magenta_api import Family, GenerateResult, Unprocessable, hookimpl


def _sequence(pitches, qpm):
    seq = music_pb2.NoteSequence(ticks_per_quarter=220)
    seq.tempos.add(qpm=qpm)
    step = 60.0 / qpm / 4
    for i, p in enumerate(pitches):
        seq.notes.add(pitch=int(p), velocity=90, start_time=i * step, end_time=(i + 1) * step)
    seq.total_time = len(pitches) * step
    return seq


class Toy(Family):
    name = "toy"
    capabilities = ("sample", "continue")
    needs_checkpoint = False
    hparams_schema = {"type": "object", "properties": {"low": {"type": "integer"}}, "required": ["low"]}
    params_schema = {"type": "object", "properties": {"explode": {"type": "boolean"}}}
    defaults = {"length": 8}

    @classmethod
    def validate(cls, spec, request):
        if request.mode == "continue" and not isinstance(request.primer, list):
            raise Unprocessable("mode 'continue' needs a primer list of pitches", {"field": "/primer"})

    def generate(self, request):
        if request.params.get("explode"):
            raise RuntimeError("secret internal detail")
        low = self.spec.hparams["low"]
        seqs = [
            _sequence(request.rng.integers(low, low + 12, request.length), request.qpm)
            for _ in range(request.num_outputs)
        ]
        return GenerateResult(seqs, {"note_count": request.length})


class Scaled(Family):
    """Needs a checkpoint: its variable ``offset`` shifts the pitches."""

    name = "scaled"
    capabilities = ("sample",)
    defaults = {"length": 4}

    def generate(self, request):
        offset = int(np.asarray(self.checkpoint.variables["offset"]).reshape(-1)[0])
        return GenerateResult([_sequence([60 + offset] * request.length, request.qpm)])


class Unbuildable(Family):
    """Refuses its checkpoint at construction, as a family does when weights and hparams disagree."""

    name = "unbuildable"
    needs_checkpoint = False

    def __init__(self, spec, checkpoint):
        raise ValueError(f"{spec.id}: hparams say 3 layers but the weights have 2")


@hookimpl
def register_families(register):
    register(Toy)
    register(Scaled)
    register(Unbuildable)


TOY_MODELS = {
    "toy-a": {
        "family": "toy",
        "description": "toy",
        "hparams": {"low": 60},
        "limits": {"num_outputs": 4, "length": 64},
    },
    "toy-b": {"family": "toy", "hparams": {"low": 40}, "defaults": {"mode": "continue"}},
}
