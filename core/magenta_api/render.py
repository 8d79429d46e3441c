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


def _zip_or_one(files: list, content_type: str, base: str, ext: str, seed) -> Rendered:
    """One file as is, several in a zip (fixed dates: the same bytes each time)."""
    if len(files) == 1:
        return Rendered(files[0], content_type, f"{base}.{ext}", seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, data in enumerate(files, 1):
            zf.writestr(zipfile.ZipInfo(f"{base}-{i}.{ext}", date_time=(2020, 1, 1, 0, 0, 0)), data)
    return Rendered(buf.getvalue(), ZIP_TYPE, f"{base}.zip", seed)


def _audio_renderer(fmt: str):
    def render_audio(model_id: str, request: GenerateRequest, result: GenerateResult, options: dict) -> Rendered:
        from . import audio

        if not result.sequences:
            raise Unprocessable(f"mode {request.mode!r} returns no music to render as audio", {"field": "/format"})
        rate = audio.check_sample_rate(options.get("sample_rate") or audio.DEFAULT_SAMPLE_RATE)
        font = audio.soundfont()
        files = [audio.render_audio(seq, fmt, rate, font) for seq in result.sequences]
        return _zip_or_one(files, audio.AUDIO_FORMATS[fmt][2], f"{model_id}-{request.mode}", fmt, request.seed)

    return render_audio


def _picture_renderer(fmt: str):
    def render_picture(model_id: str, request: GenerateRequest, result: GenerateResult, options: dict) -> Rendered:
        from . import pianoroll

        if not result.sequences:
            raise Unprocessable(f"mode {request.mode!r} returns no music to draw", {"field": "/format"})
        body = pianoroll.to_png(result.sequences) if fmt == "png" else pianoroll.to_svg(result.sequences)
        return Rendered(body, PICTURE_TYPES[fmt], f"{model_id}-{request.mode}.{fmt}", request.seed)

    return render_picture


AUDIO_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}
PICTURE_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
RENDERERS: dict = {
    "json": render_json,
    "midi": render_midi,
    **{fmt: _audio_renderer(fmt) for fmt in AUDIO_TYPES},
    **{fmt: _picture_renderer(fmt) for fmt in PICTURE_TYPES},
}
# What each format answers with (MIDI and audio: a zip for several sequences; pictures stack them).
CONTENT_TYPES = {"json": JSON_TYPE, "midi": MIDI_TYPE, **AUDIO_TYPES, **PICTURE_TYPES}
# Other names clients send for the same types.
TYPE_ALIASES = {"audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav", "audio/x-flac": "flac",
                "audio/vorbis": "ogg", "audio/x-midi": "midi"}  # fmt: skip


def render_identity(fmt: str) -> str:
    """What besides the request decides a format's bytes (the synthesizer and SoundFont for audio), for
    the cache key; raises AudioUnavailable when audio cannot be made here."""
    if fmt in AUDIO_TYPES:
        from . import audio

        return audio.identity()
    return ""


Renderer = Callable[[str, GenerateRequest, GenerateResult, dict], Rendered]


def render(fmt: str, model_id: str, request: GenerateRequest, result: GenerateResult, **options) -> Rendered:
    """Bytes of ``result`` in ``fmt``; ``options`` are the request's rendering fields (``json_style``)."""
    return RENDERERS[fmt](model_id, request, result, options)
