"""JSON Schemas shipped with the service (models.yaml, the generate request)."""

import json
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent


@cache
def load(name: str) -> dict:
    return json.loads((HERE / f"{name}.schema.json").read_text())


def pointer(path) -> str:
    """A JSON pointer ("/inputs/0/notes") from a jsonschema error path."""
    return "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in path)
