"""A generation result rendered in the format the client asked for: JSON, or MIDI (a zip of MIDI files
when there are several sequences). One renderer per format in :data:`RENDERERS`."""

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Unprocessable
from .family import GenerateRequest, GenerateResult
from .music import sequence_to_json, sequence_to_midi
from .request_builder import SHARED_FIELDS

MIDI_TYPE = "audio/midi"
ZIP_TYPE = "application/zip"
JSON_TYPE = "application/json"


@dataclass
class Rendered:
    body: bytes
    content_type: str
    filename: str | None
    seed: object
    cache: str | None = None  # HIT or MISS when the result cache was consulted


def render_json(model_id: str, request: GenerateRequest, result: GenerateResult, options: dict) -> Rendered:
    sequences = [sequence_to_json(s, options.get("json_style", "proto")) for s in result.sequences]
    body = {
        "model": model_id,
        "mode": request.mode,
        "seed": request.seed,
        "parameters": {k: getattr(request, k) for k in SHARED_FIELDS},
        "sequences": sequences,
        "notes": sequences[0].get("notes", []) if sequences else [],
        **result.extra,
    }
    return Rendered(json.dumps(body).encode(), JSON_TYPE, None, request.seed)


def render_midi(model_id: str, request: GenerateRequest, result: GenerateResult, options: dict) -> Rendered:
    if not result.sequences:
        raise Unprocessable(f"mode {request.mode!r} returns no music to render as MIDI", {"field": "/format"})
    base = f"{model_id}-{request.mode}"
    if len(result.sequences) == 1:
        return Rendered(sequence_to_midi(result.sequences[0]), MIDI_TYPE, f"{base}.mid", request.seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, seq in enumerate(result.sequences, 1):
            info = zipfile.ZipInfo(f"{base}-{i}.mid", date_time=(2020, 1, 1, 0, 0, 0))  # same bytes each time
            zf.writestr(info, sequence_to_midi(seq))
    return Rendered(buf.getvalue(), ZIP_TYPE, f"{base}.zip", request.seed)


RENDERERS: dict = {"json": render_json, "midi": render_midi}
CONTENT_TYPES = {"json": JSON_TYPE, "midi": MIDI_TYPE}  # what each format answers with (MIDI: zip for several)
Renderer = Callable[[str, GenerateRequest, GenerateResult, dict], Rendered]


def render(fmt: str, model_id: str, request: GenerateRequest, result: GenerateResult, **options) -> Rendered:
    """Bytes of ``result`` in ``fmt``; ``options`` are the request's rendering fields (``json_style``)."""
    return RENDERERS[fmt](model_id, request, result, options)
