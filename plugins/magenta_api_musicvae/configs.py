"""What each MusicVAE configuration is, as data: magenta 2.1.4's ``music_vae/configs.py`` names and the
Magenta.js ``config.json`` layouts, reduced to what the NumPy family needs to build a model.

:func:`architecture` merges, lowest first: the defaults, the named Magenta ``config`` (models.yaml
``hparams.config``), the Magenta.js ``config.json`` of the checkpoint, then the models.yaml hparams.
Configurations whose converter or decoder the family does not implement raise
:class:`Unsupported` (the loader reports a 503 ``checkpoint_incompatible`` with the reason).

Keys: ``converter`` (melody, drums, trio), ``steps`` (max_seq_len), ``segments`` (conductor steps:
the hierarchy is ``[segments, steps / segments]``), ``min_pitch``/``max_pitch``, ``valid_programs``
(``"melody"``: programs 0..31 only, as the 2-bar configs; ``None``: any), ``chords`` (``"triad"``:
``TriadChordOneHotEncoding`` control inputs, ``"major_minor"``: ``MajorMinorChordOneHotEncoding``),
``roll_input`` (drums encoder reads a roll + NOR bit), ``roll_output`` (the decoder writes multi-label
rolls: the NADE drums configs), ``pitch_classes`` (drums: ``reduced``, 9, or ``full``, 61).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAGENTA_CONFIGS", "Unsupported", "architecture", "from_magentajs"]


class Unsupported(ValueError):
    """A configuration whose converter or decoder this family does not run."""


_MEL = {"converter": "melody", "min_pitch": 21, "max_pitch": 108}
_MEL2 = {**_MEL, "steps": 32, "valid_programs": "melody"}
_MEL16 = {**_MEL, "steps": 256, "valid_programs": None}
_DRUMS2 = {"converter": "drums", "steps": 32, "roll_input": True}
_TRIO16 = {"converter": "trio", "steps": 256, "min_pitch": 21, "max_pitch": 108}
# 1 bar of up to 8 tracks of 64 performance events: the conductor steps over tracks
_MULTI = {"converter": "multitrack", "steps": 512, "segments": 8}

_GROOVE = "the GrooVAE converter and decoder (declare it with family: groovae)"

MAGENTA_CONFIGS: dict[str, dict[str, Any]] = {
    "cat-mel_2bar_small": _MEL2,
    "cat-mel_2bar_big": _MEL2,
    "cat-mel_2bar_med_chords": {**_MEL2, "valid_programs": None, "chords": "triad"},
    "cat-drums_2bar_small": _DRUMS2,
    "cat-drums_2bar_big": _DRUMS2,
    "nade-drums_2bar_reduced": {**_DRUMS2, "roll_output": True},
    "nade-drums_2bar_full": {**_DRUMS2, "roll_output": True, "pitch_classes": "full"},
    "flat-trio_16bar": _TRIO16,
    "hierdec-trio_16bar": {**_TRIO16, "segments": 16},
    "hier-trio_16bar": {**_TRIO16, "segments": 16},
    "flat-mel_16bar": _MEL16,
    "hierdec-mel_16bar": {**_MEL16, "segments": 16},
    "hier-mel_16bar": {**_MEL16, "segments": 16},
    "hier-multiperf_vel_1bar_med": _MULTI,
    "hier-multiperf_vel_1bar_big": _MULTI,
    "hier-multiperf_vel_1bar_med_chords": {**_MULTI, "chords": "triad"},
    "hier-multiperf_vel_1bar_big_chords": {**_MULTI, "chords": "triad"},
    "groovae_4bar": {"unsupported": _GROOVE},
    "groovae_2bar_humanize": {"unsupported": _GROOVE},
    "groovae_2bar_tap_fixed_velocity": {"unsupported": _GROOVE},
    "groovae_2bar_tap_fixed_velocity_note_dropout": {"unsupported": _GROOVE},
    "groovae_2bar_add_closed_hh": {"unsupported": _GROOVE},
    "groovae_2bar_hits_control_tfds": {"unsupported": _GROOVE},
}

# Magenta.js dataConverter types -> our converter kinds (None: known, not implemented here)
_JS_CONVERTERS: dict[str, str | None] = {
    "MelodyConverter": "melody",
    "DrumsOneHotConverter": "drums",
    "DrumsConverter": "drums",
    "DrumRollConverter": "drums",
    "TrioConverter": "trio",
    "MultitrackConverter": "multitrack",
    "GrooveConverter": None,
    "MelodyRhythmConverter": None,
    "MelodyShapeConverter": None,
    "TrioRhythmConverter": None,
}
_JS_WHY = {"GrooveConverter": _GROOVE}


def from_magentajs(config: dict) -> dict[str, Any]:
    """Our keys from a Magenta.js MusicVAE ``config.json`` (``dataConverter.type`` / ``args``,
    ``chordEncoder``)."""
    out: dict[str, Any] = {}
    dc = config.get("dataConverter") or {}
    kind = str(dc.get("type"))
    args = dc.get("args") or {}
    if kind in _JS_CONVERTERS:
        ours = _JS_CONVERTERS[kind]
        if ours is None:
            out["unsupported"] = _JS_WHY.get(kind, f"the Magenta.js {kind}")
        else:
            out["converter"] = ours
    if "numSteps" in args:
        out["steps"] = int(args["numSteps"])
    if kind == "MultitrackConverter":  # numSteps is events per track there; numSegments the tracks
        out["steps"] = int(args.get("numSteps", 64)) * int(args.get("numSegments", 8))
    if args.get("numSegments"):
        out["segments"] = int(args["numSegments"])
    mel = args.get("melArgs") if kind == "TrioConverter" else args
    for js, key in (("minPitch", "min_pitch"), ("maxPitch", "max_pitch")):
        if isinstance(mel, dict) and js in mel:
            out[key] = int(mel[js])
    if kind in ("DrumRollConverter",):
        out["roll_input"] = True
    if config.get("chordEncoder"):
        encoder = str(config["chordEncoder"])
        ours = {"TriadChordEncoder": "triad", "MajorMinorChordEncoder": "major_minor"}.get(encoder)
        if ours:
            out["chords"] = ours
        else:
            out["unsupported"] = (
                f"the Magenta.js chord encoder {encoder} (triad and major/minor chords are implemented)"
            )
    return out


def architecture(hparams: dict, magentajs: dict | None = None) -> dict[str, Any]:
    """The merged architecture of a model (see the module docstring); raises :class:`Unsupported`."""
    arch: dict[str, Any] = {"steps": 32, "steps_per_quarter": 4, "quarters_per_bar": 4}
    name = hparams.get("config")
    if name in MAGENTA_CONFIGS:
        arch.update(MAGENTA_CONFIGS[name])
    if isinstance(magentajs, dict):
        arch.update(from_magentajs(magentajs))
    arch.update({k: v for k, v in hparams.items() if k != "config"})
    if arch.get("unsupported"):
        what = f"configuration {name}" if name else "this checkpoint"
        raise Unsupported(f"{what} needs {arch['unsupported']}, which the musicvae family does not implement yet")
    segments = arch.get("segments")
    if segments and arch["steps"] % segments:
        raise Unsupported(f"{arch['steps']} steps do not split into {segments} conductor segments")
    return arch
