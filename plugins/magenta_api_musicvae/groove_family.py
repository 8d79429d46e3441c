"""The ``groovae`` family: GrooVAE drum models (hits, velocities, micro-timing) behind /v1/generate.

Modes, named as Magenta Studio names them:

* ``humanize`` (Groove): quantized, constant-velocity drums in, expressive timing and velocities out.
  For models whose converter flattens its input (``groovae_2bar_humanize``, Magenta.js ``humanize``).
* ``drumify`` / ``tap2drum``: a tapped rhythm (any notes: drums, a melody, a tapped key) in, a drum
  groove out. For the tap models (``groovae_2bar_tap_fixed_velocity``, Magenta.js ``tap2drum_*``).
* ``groove``: the same pipeline for any GrooVAE (``groovae_4bar`` re-grooves, ``add_closed_hh`` adds
  hi-hats, ``hits_control`` keeps the input's hits and redraws velocities and timing).

Each runs magenta's pipeline: the model's converter turns every window of the input into its encoder
input, the encoder's mu is decoded, and the windows' outputs are joined in time. The output keeps the
input's tempo unless the request sets ``qpm``. Also ``sample``, ``encode``, ``decode`` and
``interpolate`` as the musicvae family has them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from magenta_api import Family, GenerateRequest, GenerateResult, Unprocessable
from magenta_api.music import parse_sequence

from .configs import Unsupported
from .family import DEFAULT_SIMILARITY, _normalize_input, slerp
from .groove import GrooveConverter, GrooveModel

log = logging.getLogger(__name__)

# converter options of magenta's GrooVAE configs (configs.py)
GROOVE_CONFIGS: dict[str, dict[str, Any]] = {
    "groovae_4bar": dict(split_bars=4),
    "groovae_2bar_humanize": dict(split_bars=2, humanize=True),
    "groovae_2bar_humanize_nokl": dict(split_bars=2, humanize=True),
    "groovae_2bar_tap_fixed_velocity": dict(split_bars=2, tapify=True, fixed_velocities=True),
    "groovae_2bar_tap_fixed_velocity_note_dropout": dict(split_bars=2, tapify=True, fixed_velocities=True),
    "groovae_2bar_add_closed_hh": dict(split_bars=2, add_instruments=[2]),
    "groovae_2bar_hits_control_tfds": dict(split_bars=2, hits_as_controls=True),
    "groovae_2bar_hits_control": dict(split_bars=2, hits_as_controls=True),
}
MAX_WINDOWS = 64  # windows of one input a humanize/drumify request converts (128 bars of a 2-bar model)
TAP_PITCH = 46  # a tapped note that is no drum pitch becomes an open hi-hat (tapify squashes to it)

HPARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "config": {"enum": sorted(GROOVE_CONFIGS)},
        "bars": {"type": "integer", "minimum": 1, "maximum": 16},
        "humanize": {"type": "boolean"},
        "tapify": {"type": "boolean"},
        "fixed_velocities": {"type": "boolean"},
        "add_instruments": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 8}},
        "hits_as_controls": {"type": "boolean"},
        "z_size": {"type": "integer", "minimum": 1},
    },
}

PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "similarity": {"type": "number", "minimum": 0, "maximum": 1},
        "z": {
            "type": "array",
            "minItems": 1,
            "maxItems": 256,
            "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
            "description": "decode mode: latent vectors, one per output",
        },
    },
}


def converter_options(hparams: dict, magentajs: dict | None) -> dict[str, Any]:
    """The GrooveConverter options: the named config, then Magenta.js's config.json, then hparams."""
    opts: dict[str, Any] = dict(split_bars=2)
    name = hparams.get("config")
    if name:
        opts.update(GROOVE_CONFIGS[name])
    dc = (magentajs or {}).get("dataConverter") or {}
    if dc:
        if dc.get("type") != "GrooveConverter":
            raise Unsupported(f"the groovae family runs GrooveConverter checkpoints, not {dc.get('type')}")
        args = dc.get("args") or {}
        if args.get("splitInstruments"):
            raise Unsupported("GrooveConverter with splitInstruments (one drum per step) is not implemented")
        if "numSteps" in args:
            opts["split_bars"] = max(1, int(args["numSteps"]) // (4 * int(args.get("stepsPerQuarter", 4))))
        for key in ("humanize", "tapify"):
            if key in args:
                opts[key] = bool(args[key])
        if args.get("pitchClasses"):
            opts["pitch_classes"] = args["pitchClasses"]
    for key in ("humanize", "tapify", "fixed_velocities", "add_instruments", "hits_as_controls"):
        if key in hparams:
            opts[key] = hparams[key]
    if "bars" in hparams:
        opts["split_bars"] = hparams["bars"]
    return opts


class GrooVAEFamily(Family):
    name = "groovae"
    description = "GrooVAE drum grooves: humanize, drumify / tap2drum, groove, sample, encode, decode, interpolate"
    capabilities = ("sample", "humanize", "drumify", "tap2drum", "groove", "encode", "decode", "interpolate", "similar")
    default_mode = "sample"
    hparams_schema = HPARAMS_SCHEMA
    params_schema = PARAMS_SCHEMA
    defaults = {"temperature": 1.0, "num_outputs": 1}

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        js = (checkpoint.meta or {}).get("config")
        opts = converter_options(dict(spec.hparams or {}), js if isinstance(js, dict) else None)
        self.converter = GrooveConverter(**opts, max_tensors=None)
        self.engine = GrooveModel(checkpoint.variables)
        e, c = self.engine, self.converter
        if (e.input_depth, e.output_depth, e.control_size) != (c.input_depth, c.output_depth, c.control_depth):
            raise ValueError(
                f"{spec.id}: weights read {e.input_depth} inputs + {e.control_size} controls and write "
                f"{e.output_depth}; the converter makes {c.input_depth} + {c.control_depth} and {c.output_depth}"
            )
        z = (spec.hparams or {}).get("z_size")
        if z is not None and z != e.z_size:
            raise ValueError(f"{spec.id}: hparams say z_size={z} but the weights have {e.z_size}")
        self.steps = c.num_steps

    @classmethod
    def validate(cls, spec, request: GenerateRequest) -> None:
        n_in = len(request.inputs) + (request.primer is not None)
        if request.mode in ("humanize", "drumify", "tap2drum", "groove", "encode", "similar") and n_in == 0:
            raise Unprocessable(f"{request.mode} needs an input (in `inputs` or `primer`)", {"field": "/inputs"})
        if request.mode == "interpolate" and (len(request.inputs) != 2 or request.num_outputs < 2):
            raise Unprocessable("interpolate needs exactly 2 inputs and num_outputs >= 2", {"field": "/inputs"})
        if request.mode == "decode" and not request.params.get("z"):
            raise Unprocessable("decode needs latent vectors in `z`", {"field": "/z"})
        if request.mode == "similar" and n_in != 1:
            raise Unprocessable("similar needs exactly one input", {"field": "/inputs"})

    # -- generation -----------------------------------------------------------------------------
    def generate(self, request: GenerateRequest) -> GenerateResult:
        if request.length is not None and request.length > self.steps:
            raise Unprocessable(
                f"length {request.length} is over this model's {self.steps} steps (16th notes)",
                {"field": "/length", "limit": self.steps},
                code="over_limit",
            )
        mode = request.mode
        if mode in ("humanize", "drumify", "tap2drum", "groove"):
            return self._groove(request)
        return getattr(self, "_" + mode)(request)

    def _check_mode(self, request):
        c = self.converter
        if request.mode == "humanize" and not c.humanize:
            raise Unprocessable(
                f"{self.spec.id} does not humanize (its converter keeps the input's velocities and timing); "
                "use a humanize model, or mode groove",
                {"field": "/mode"},
            )
        if request.mode in ("drumify", "tap2drum") and not c.tapify:
            raise Unprocessable(
                f"{self.spec.id} is not a tap model (its converter does not tapify); use a tap2drum model, or "
                "mode groove",
                {"field": "/mode"},
            )

    def _inputs(self, request):
        raws = request.inputs if request.inputs else [request.primer]
        pointer = "/inputs" if request.inputs else "/primer"
        out = []
        for i, raw in enumerate(raws):
            where = f"{pointer}/{i}" if request.inputs else pointer
            ns = _normalize_input(parse_sequence(raw, where))
            if self.converter.tapify:  # a tapped line may be any instrument: its notes become taps
                for n in ns.notes:
                    if n.pitch not in self.converter.pitch_class_map:
                        n.pitch = TAP_PITCH
            windows = self.converter.windows(ns)
            if not windows:
                raise Unprocessable(
                    f"cannot use input: {self.converter.explain(ns)}",
                    {"field": where, "converter": "groove", "steps": self.steps},
                    code="unusable_input",
                )
            out.append((ns, windows))
        return out

    def _decode(self, request):
        z = request.params["z"]
        if any(len(v) != self.engine.z_size for v in z) or not np.all(np.isfinite(np.asarray(z, np.float64))):
            raise Unprocessable(f"z vectors must be {self.engine.z_size} finite numbers each", {"field": "/z"})
        z = np.asarray(z, np.float32)
        return GenerateResult(self._sequences(self._run(z, request, None), request.qpm))

    def _run(self, z, request, controls):
        if self.engine.control_size and controls is None:
            raise Unprocessable(
                f"{self.spec.id} is conditioned on the input's hits: use mode groove with an input",
                {"field": "/mode"},
            )
        length = int(request.length or self.steps)
        return self.engine.sample(z, length, request.temperature, request.rng, controls=controls)

    def _sequences(self, outputs, qpm):
        seqs = self.converter.from_outputs(outputs, qpm)
        for s in seqs:
            for n in s.notes:  # an early first hit (offset before step 0) starts at 0
                if n.start_time < 0:
                    n.end_time -= n.start_time
                    n.start_time = 0.0
        return seqs

    def _qpm(self, request, ns):
        if "qpm" in request.explicit or not ns.tempos:
            return request.qpm
        return ns.tempos[0].qpm

    def _groove(self, request):
        self._check_mode(request)
        seqs, used = [], []
        for ns, windows in self._inputs(request):
            windows = windows[:MAX_WINDOWS]
            x = np.stack([w.inputs for w in windows])
            ctl = np.stack([w.controls for w in windows]) if self.engine.control_size else None
            mu, _ = self.engine.encode(x, ctl)
            out = self._run(mu.astype(np.float32), request, ctl)  # [windows, T, 27]
            joined = out.reshape(1, -1, out.shape[-1])
            qpm = self._qpm(request, ns)
            seqs.extend(self._sequences(joined, qpm))
            used.append({"windows": len(windows), "start_step": windows[0].start_step, "qpm": qpm})
        return GenerateResult(seqs, {"inputs_used": used})

    def _encode_first(self, request):
        xs, ctls, used = [], [], []
        for _, windows in self._inputs(request):
            w = windows[0]
            xs.append(w.inputs)
            ctls.append(w.controls)
            used.append({"windows": len(windows), "start_step": w.start_step})
        ctl = np.stack(ctls) if self.engine.control_size else None
        mu, sigma = self.engine.encode(np.stack(xs), ctl)
        return mu, sigma, ctl, used

    def _encode(self, request):
        mu, sigma, _, used = self._encode_first(request)
        z = mu + sigma * request.rng.standard_normal(mu.shape).astype(np.float32)
        extra = {"z": z.tolist(), "mu": mu.tolist(), "sigma": sigma.tolist(), "z_size": self.engine.z_size}
        return GenerateResult([], {**extra, "inputs_used": used})

    def _sample(self, request):
        z = request.rng.standard_normal((request.num_outputs, self.engine.z_size)).astype(np.float32)
        return GenerateResult(self._sequences(self._run(z, request, None), request.qpm))

    def _interpolate(self, request):
        mu, _, ctl, used = self._encode_first(request)
        z = np.stack([slerp(mu[0], mu[1], t) for t in np.linspace(0.0, 1.0, request.num_outputs)]).astype(np.float32)
        if ctl is not None:  # hits-conditioned: the first input's hits throughout
            ctl = np.broadcast_to(ctl[:1], (len(z), *ctl.shape[1:]))
        out = self._run(z, request, ctl)
        return GenerateResult(self._sequences(out, request.qpm), {"inputs_used": used})

    def _similar(self, request):
        mu, _, ctl, used = self._encode_first(request)
        s = float(request.params.get("similarity", DEFAULT_SIMILARITY))
        noise = request.rng.standard_normal((request.num_outputs, self.engine.z_size)).astype(np.float32)
        z = (s * mu[0] + (1.0 - s) * noise).astype(np.float32)
        if ctl is not None:
            ctl = np.broadcast_to(ctl[:1], (len(z), *ctl.shape[1:]))
        out = self._run(z, request, ctl)
        return GenerateResult(self._sequences(out, request.qpm), {"similarity": s, "inputs_used": used})
