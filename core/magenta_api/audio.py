"""NoteSequences as sound: a SoundFont synthesizer (TinySoundFont) plays every note, and soundfile writes
WAV, FLAC or Ogg Vorbis.

Why these: TinySoundFont plays a SoundFont's samples (not sine waves) and its Python binding,
``tinysoundfont``, ships compiled wheels, so audio needs no system library; ``soundfile`` ships
libsndfile inside its wheels. The default SoundFont is ``TimGM6mb.sf2``, a small General MIDI set
(Tim Brechbill, GPL-2.0) that ``pretty_midi`` (a dependency of note-seq) already installs; ``SOUNDFONT``
names any other ``.sf2``/``.sf3`` file.

Instruments map to General MIDI: each (instrument, program) pair of the sequence gets its own MIDI
channel with its program, drums play the GM drum kit (bank 128) on channel 10. Rendering is
deterministic, so the same sequence gives the same bytes, which is what makes audio cacheable.
"""

import importlib.metadata
import io
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import AudioUnavailable, Unprocessable

logger = logging.getLogger(__name__)

SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_SAMPLE_RATE = 44100
DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0
MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)
# What each format writes: soundfile's container and sample encoding, and the MIME type.
AUDIO_FORMATS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
}
# The binding installs with --no-deps: its only dependency, PyAudio, plays sound on a device (not used
# here) and does not build without PortAudio's headers.
INSTALL_COMMAND = "pip install --no-deps tinysoundfont==0.3.7"


@dataclass(frozen=True)
class SoundFont:
    path: Path
    identity: str  # path, size and mtime: part of the cache key, so a new SoundFont renders anew


def default_soundfont() -> Path | None:
    """pretty_midi's TimGM6mb.sf2, when pretty_midi is installed."""
    try:
        import pretty_midi
    except ImportError:  # pragma: no cover - note-seq depends on pretty_midi
        return None
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return path if path.is_file() else None


def soundfont(env=None) -> SoundFont:
    """The SoundFont to play with: ``SOUNDFONT``, else pretty_midi's; AudioUnavailable if there is none."""
    env = os.environ if env is None else env
    named = env.get("SOUNDFONT")
    path = Path(named) if named else default_soundfont()
    if path is None or not path.is_file():
        raise AudioUnavailable(
            f"no SoundFont file at {named}" if named else "no SoundFont: pretty_midi's TimGM6mb.sf2 is missing",
            {"soundfont": named, "fix": "set SOUNDFONT to the path of an .sf2 file"},
        )
    stat = path.stat()
    return SoundFont(path, f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}")


def _binding():
    try:
        import tinysoundfont
    except ImportError as exc:
        raise AudioUnavailable(
            f"audio output needs the tinysoundfont package: {INSTALL_COMMAND}",
            {"fix": INSTALL_COMMAND, "missing": "tinysoundfont"},
        ) from exc
    return tinysoundfont


def identity(env=None) -> str:
    """The binding's version and the SoundFont's identity; AudioUnavailable if either is missing."""
    _binding()
    return f"tinysoundfont {importlib.metadata.version('tinysoundfont')}|{soundfont(env).identity}"


@lru_cache(maxsize=4)
def _soundfont_bytes(identity: str, path: Path) -> bytes:
    return path.read_bytes()


def check_sample_rate(rate) -> int:
    if rate not in SAMPLE_RATES:
        raise Unprocessable(
            f"sample_rate {rate} is not one of {', '.join(map(str, SAMPLE_RATES))}",
            {"field": "/sample_rate", "supported": list(SAMPLE_RATES)},
            code="bad_sample_rate",
        )
    return int(rate)


def _channels(seq) -> dict:
    """(instrument, program, is_drum) → MIDI channel: drums on channel 10, the rest in order of appearance
    on the other 15 (parts past 15 share the last channel's neighbours in turn)."""
    parts = sorted({(n.instrument, n.program, n.is_drum) for n in seq.notes})
    melodic = [p for p in parts if not p[2]]
    mapping = {p: DRUM_CHANNEL for p in parts if p[2]}
    for i, part in enumerate(melodic):
        mapping[part] = MELODIC_CHANNELS[i % len(MELODIC_CHANNELS)]
    return mapping


def _events(seq, rate: int, channels: dict) -> list:
    """(frame, order, kind, channel, pitch, velocity): note-offs sort before note-ons at the same frame."""
    events = []
    for n in seq.notes:
        chan = channels[(n.instrument, n.program, n.is_drum)]
        start = round(n.start_time * rate)
        end = max(start + 1, round(n.end_time * rate))
        events.append((start, 1, "on", chan, n.pitch, max(1, min(127, n.velocity or 100))))
        events.append((end, 0, "off", chan, n.pitch, 0))
    events.sort()
    return events


def synthesize(seq, rate: int = DEFAULT_SAMPLE_RATE, font: SoundFont | None = None) -> np.ndarray:
    """Stereo float32 samples, ``[frames, 2]``, of ``seq`` played to its ``total_time`` (the end of its last note)."""
    tsf = _binding()
    font = font or soundfont()
    synth = tsf.Synth(samplerate=rate)
    sfid = synth.sfload(_soundfont_bytes(font.identity, font.path))
    channels = _channels(seq)
    for (_, program, is_drum), chan in sorted(channels.items(), key=lambda kv: kv[1]):
        try:
            if is_drum:
                synth.program_select(chan, sfid, 128, 0, True)
            else:
                synth.program_select(chan, sfid, 0, program, False)
        except RuntimeError:  # the SoundFont lacks that program: its first one rather than silence
            synth.program_select(chan, sfid, 0, 0, False)
    total = max(seq.total_time, max((n.end_time for n in seq.notes), default=0.0))
    frames = round(total * rate)
    out = np.zeros((frames, 2), dtype=np.float32)
    pos = 0
    for frame, _, kind, chan, pitch, velocity in _events(seq, rate, channels):
        frame = min(frame, frames)
        if frame > pos:
            out[pos:frame] = np.frombuffer(synth.generate_simple(frame - pos), dtype=np.float32).reshape(-1, 2)
            pos = frame
        if kind == "on":
            synth.noteon(chan, pitch, velocity)
        else:
            synth.noteoff(chan, pitch)
    if frames > pos:
        out[pos:] = np.frombuffer(synth.generate_simple(frames - pos), dtype=np.float32).reshape(-1, 2)
    return out


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """``samples`` in a WAV, FLAC or Ogg Vorbis file (16-bit PCM for the lossless ones)."""
    import soundfile

    container, subtype, _ = AUDIO_FORMATS[fmt]
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 1.0:  # a dense chord can sum past full scale: scale down rather than clip
        samples = samples / peak
    if subtype == "PCM_16":  # quantized here, once: libsndfile rounds differently for WAV and FLAC
        samples = np.round(samples * 32767.0).astype(np.int16)
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=container, subtype=subtype)
    return buf.getvalue()


def render_audio(seq, fmt: str, rate: int = DEFAULT_SAMPLE_RATE, font: SoundFont | None = None) -> bytes:
    if not seq.notes:
        raise Unprocessable("the sequence has no notes to play", {"field": "/format"}, code="nothing_to_render")
    return encode(synthesize(seq, rate, font), rate, fmt)
