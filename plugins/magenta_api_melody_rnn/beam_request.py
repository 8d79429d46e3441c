"""The beam-search request fields that every events-RNN family takes (MelodyRNN, DrumsRNN, ImprovRNN,
PerformanceRNN, PolyphonyRNN, Pianoroll RNN-NADE): one schema for their ``params_schema``, one reading
of the values, and one limit on the rows a request puts in the engine's batch."""

from magenta_api import GenerateRequest, Unprocessable

MAX_ROWS = 64  # num_outputs * beam_size * branch_factor sequences in one batch

SCHEMA = {
    "beam_size": {
        "type": "integer",
        "minimum": 1,
        "maximum": 64,
        "description": "sequences kept per iteration of beam search (1 = plain sampling)",
    },
    "branch_factor": {
        "type": "integer",
        "minimum": 1,
        "maximum": 64,
        "description": "copies of each beam entry extended per iteration",
    },
    "steps_per_iteration": {
        "type": "integer",
        "minimum": 1,
        "maximum": 1024,
        "description": "RNN steps each branch is extended before pruning",
    },
}


def params(request: GenerateRequest) -> tuple[int, int, int]:
    """(beam_size, branch_factor, steps_per_iteration), 1 where the request leaves them out."""
    p = request.params
    return int(p.get("beam_size", 1)), int(p.get("branch_factor", 1)), int(p.get("steps_per_iteration", 1))


def check_rows(request: GenerateRequest) -> None:
    """422 over_limit when the request's beams would put more than :data:`MAX_ROWS` rows in a batch."""
    beam_size, branch_factor, _ = params(request)
    rows = request.num_outputs * beam_size * branch_factor
    if rows > MAX_ROWS:
        raise Unprocessable(
            f"num_outputs x beam_size x branch_factor is {rows}; at most {MAX_ROWS}",
            {"field": "/beam_size", "limit": MAX_ROWS},
            code="over_limit",
        )
