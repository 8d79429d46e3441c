"""From a declared model and its checkpoint to a runnable MusicVAE: engine, converter, chord encoding.

:func:`build` reads the architecture (:mod:`.configs`: Magenta config name, Magenta.js config.json,
models.yaml hparams), checks it against the weights and picks the engine: the flat 2-bar models run on
:class:`~.engine.MusicVAEEngine` (its measured fast paths), everything with a conductor, a hierarchical
encoder, output splits (trio) or control inputs (chords) on :class:`~.hierarchy.VAEModel`. What the
family does not implement (NADE, GrooVAE, multitrack) raises :class:`~.configs.Unsupported`, which the
loader reports as 503 ``checkpoint_incompatible`` with the reason. NADE drum decoders run on
:class:`~.nade_drums.NadeDrumsModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import note_seq

from . import configs
from .configs import Unsupported
from .converters import (
    DRUM_PITCH_CLASSES,
    FULL_DRUM_PITCH_CLASSES,
    MEL_PROGRAMS,
    PIANO_MAX_PITCH,
    PIANO_MIN_PITCH,
    DrumsConverter,
    MelodyConverter,
)
from .engine import MusicVAEEngine
from .hierarchy import VAEModel, is_general
from .multitrack import MultitrackConverter
from .nade_drums import NadeDrumsModel, is_nade
from .trio import TrioConverter

__all__ = ["Built", "Unsupported", "build"]

CHORD_ENCODINGS = {
    "triad": note_seq.TriadChordOneHotEncoding,
    "major_minor": note_seq.MajorMinorChordOneHotEncoding,
}
_CHORDS_BY_SIZE = {cls().num_classes: name for name, cls in CHORD_ENCODINGS.items()}


@dataclass
class Built:
    engine: Any  # MusicVAEEngine or VAEModel
    converter: Any  # MelodyConverter, DrumsConverter or TrioConverter
    hparams: dict
    chord_encoding: Any = None  # a note-seq OneHotEncoding of chord symbols, for chord-conditioned models

    @property
    def general(self) -> bool:
        return isinstance(self.engine, VAEModel)


def _converter(arch, spb):
    slice_bars = arch["steps"] // spb or None
    common = dict(
        steps_per_quarter=arch["steps_per_quarter"],
        quarters_per_bar=arch["quarters_per_bar"],
        max_tensors=None,
    )
    kind = arch["converter"]
    lo, hi = arch.get("min_pitch", PIANO_MIN_PITCH), arch.get("max_pitch", PIANO_MAX_PITCH)
    if kind == "trio":
        return TrioConverter(slice_bars=slice_bars, min_pitch=lo, max_pitch=hi, **common)
    if kind == "multitrack":
        chords = CHORD_ENCODINGS[arch["chords"]]() if arch.get("chords") else None
        tracks = int(arch.get("segments") or 8)
        return MultitrackConverter(
            max_num_instruments=tracks, max_events_per_instrument=arch["steps"] // tracks, chord_encoding=chords
        )
    if kind == "drums":
        conv = DrumsConverter(
            slice_bars=slice_bars,
            one_hot_input=not arch.get("roll_input", True),
            roll_output=bool(arch.get("roll_output")),
            pitch_classes=FULL_DRUM_PITCH_CLASSES if arch.get("pitch_classes") == "full" else DRUM_PITCH_CLASSES,
            **common,
        )
    else:
        programs = MEL_PROGRAMS if arch.get("valid_programs", "melody") == "melody" else None
        conv = MelodyConverter(min_pitch=lo, max_pitch=hi, valid_programs=programs, slice_bars=slice_bars, **common)
    conv.num_steps = arch["steps"]
    return conv


def build(model_id: str, hparams: dict, checkpoint) -> Built:
    """The engine, converter and chord encoding of one model; raises ``ValueError`` (``Unsupported``
    for what is not implemented) when the declaration and the weights do not make a model."""
    variables = checkpoint.variables
    js = (checkpoint.meta or {}).get("config")
    arch = configs.architecture(dict(hparams or {}), js if isinstance(js, dict) else None)
    if is_nade(variables):  # MultiLabelRnnNadeDecoder: multi-label drum rolls
        nade = NadeDrumsModel(variables)
        arch.setdefault("converter", "drums")
        arch["roll_output"] = True
        if "pitch_classes" not in arch:
            arch["pitch_classes"] = "full" if nade.output_depth == len(FULL_DRUM_PITCH_CLASSES) else "reduced"
        rolls = _converter(arch, arch["steps_per_quarter"] * arch["quarters_per_bar"])
        _check_depths(model_id, arch, nade, rolls)
        return Built(nade, rolls, arch, None)
    spb = arch["steps_per_quarter"] * arch["quarters_per_bar"]
    out = next((v for k, v in variables.items() if k.endswith("output_projection/kernel")), None)
    out_depth = sum(
        v.shape[1] for k, v in variables.items() if k.endswith("output_projection/kernel") and "core_decoder_" in k
    ) or (out.shape[1] if out is not None else 0)
    if "converter" not in arch:
        first = "cell_0/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel"
        inp = next((v for k, v in variables.items() if k.endswith(first)), None)
        in_depth = (inp.shape[0] - inp.shape[1] // 4) if inp is not None else 0
        by_depth = {692: "trio", 512: "drums", 490: "multitrack"}
        arch["converter"] = by_depth.get(out_depth, "melody")
        if arch["converter"] == "drums" and in_depth == 512:
            arch["roll_input"] = False
    if arch["converter"] == "drums" and "roll_input" not in arch:
        arch["roll_input"] = True
    converter = _converter(arch, spb)
    needs_general = is_general(variables) or arch["converter"] in ("trio", "multitrack") or bool(arch.get("chords"))
    if not needs_general:
        try:
            engine: Any = MusicVAEEngine(variables)
        except ValueError as exc:  # e.g. a decoder that reads more than [previous output; z]: controls
            if "decoder input size" not in str(exc):
                raise
            needs_general = True
    if needs_general:
        segments = arch.get("segments")
        conductor = any(k.startswith("decoder/hierarchical_level_") for k in variables)
        if conductor and not segments:
            segments = max(1, arch["steps"] // spb)  # one conductor step per bar unless declared
        if segments and arch["steps"] % segments:
            raise Unsupported(f"{arch['steps']} steps do not split into {segments} conductor segments")
        levels = [segments, arch["steps"] // segments] if conductor and segments else None
        engine = VAEModel(
            variables,
            level_lengths=levels,
            splits=getattr(converter, "splits", None),
            autoregressive=range(len(levels) - 1) if levels and arch.get("autoregressive") else (),
            padded_segments=arch["converter"] == "multitrack",  # tracks end early: lengths from the padding
        )
    _check_depths(model_id, arch, engine, converter)
    chord_encoding = _chords(model_id, arch, engine)
    return Built(engine, converter, arch, chord_encoding)


def _check_depths(model_id, arch, engine, converter):
    e, c = engine, converter
    if (e.input_depth, e.output_depth) != (c.input_depth, c.output_depth):
        raise ValueError(
            f"{model_id}: weights expect input/output depth {e.input_depth}/{e.output_depth}, the "
            f"{arch['converter']} converter makes {c.input_depth}/{c.output_depth}: check its hparams"
        )
    if isinstance(e, NadeDrumsModel):
        sizes = {
            "z_size": e.z_size,
            "enc_rnn_size": [fw.units for fw, _ in e.encoder.levels[0].layers],
            "dec_rnn_size": e.units,
        }
    elif isinstance(e, VAEModel):
        sizes = {
            "z_size": e.z_size,
            "enc_rnn_size": [fw.units for fw, _ in e.encoder.levels[0].layers],
            "dec_rnn_size": e.cores[0].units,
        }
    else:
        sizes = {
            "z_size": e.z_size,
            "enc_rnn_size": [f.cells[0].units for f, _ in e.enc],
            "dec_rnn_size": [cell.units for cell in e.dec.cells],
        }
    for key, got in sizes.items():
        if key in arch and arch[key] != got:
            raise ValueError(f"{model_id}: hparams say {key}={arch[key]} but the weights have {got}")


def _chords(model_id, arch, engine):
    size = getattr(engine, "control_size", 0)
    name = arch.get("chords")
    if not size:
        if name:
            raise ValueError(f"{model_id}: hparams say chords={name} but the weights take no control inputs")
        return None
    name = name or _CHORDS_BY_SIZE.get(size)
    if name is None:
        raise Unsupported(
            f"the decoder reads {size} control inputs, which match no chord encoding the family implements "
            f"({', '.join(f'{n}: {k}' for k, n in _CHORDS_BY_SIZE.items())})"
        )
    encoding = CHORD_ENCODINGS[name]()
    if encoding.num_classes != size:
        raise ValueError(f"{model_id}: {name} chords are {encoding.num_classes} values, the weights read {size}")
    return encoding
