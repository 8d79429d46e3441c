"""A slowed model for the streaming tests: one note a step, ``delay`` seconds a step, each note reported
through ``magenta_api.progress`` as it is decided; it records how far each generation got."""

import threading
import time

from note_seq.protobuf import music_pb2

from magenta_api import Family, GenerateResult, Unprocessable, hookimpl, progress
from magenta_api import deadline as limits

RUNS: list = []  # one dict per generation: steps done, whether it finished, and an event when it ended


class Slow(Family):
    name = "slow"
    capabilities = ("sample", "continue")
    needs_checkpoint = False
    params_schema = {
        "type": "object",
        "properties": {
            "delay": {"type": "number", "minimum": 0, "maximum": 1},
            "fail_at": {"type": "integer"},  # a refusal mid-way (Unprocessable)
            "explode_at": {"type": "integer"},  # a bug mid-way
        },
    }
    defaults = {"length": 8}

    def generate(self, request):
        run = {"steps": 0, "finished": False, "ended": threading.Event()}
        RUNS.append(run)
        delay = request.params.get("delay", 0.05)
        step = 60.0 / request.qpm / 4
        seq = music_pb2.NoteSequence(ticks_per_quarter=220)
        seq.tempos.add(qpm=request.qpm)
        start = 0.0
        if isinstance(request.primer, dict):  # continue: after the primer's notes
            start = max((n.get("endTime", 0.0) for n in request.primer.get("notes", [])), default=0.0)
            for n in request.primer.get("notes", []):
                seq.notes.add(pitch=n["pitch"], velocity=n.get("velocity", 90), start_time=n.get("startTime", 0.0),
                              end_time=n["endTime"])  # fmt: skip
        try:
            for i in range(request.length):
                limits.check()  # as every engine's step loop does
                if i == request.params.get("fail_at"):
                    raise Unprocessable(f"cannot go past step {i}", {"step": i}, code="test_refusal")
                if i == request.params.get("explode_at"):
                    raise RuntimeError("secret internal detail")
                time.sleep(delay)
                pitch = int(request.rng.integers(60, 72))
                note = seq.notes.add(
                    pitch=pitch, velocity=90, start_time=start + i * step, end_time=start + (i + 1) * step
                )
                progress.notes(0, [note], step=i)
                run["steps"] = i + 1
            run["finished"] = True
        finally:
            run["ended"].set()
        seq.total_time = start + request.length * step
        return GenerateResult([seq], {"steps": request.length})


@hookimpl
def register_families(register):
    register(Slow)


MODELS = {"slow": {"family": "slow", "description": "a slowed test model", "limits": {"length": 400}}}
