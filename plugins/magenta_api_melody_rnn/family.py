"""The ``melody_rnn`` family: MelodyRNN (basic, mono, lookback, attention) and DrumsRNN (drum_kit)
continuing a primer, on the NumPy events RNN, with Magenta's beam search."""

import logging

from note_seq import DrumTrack, Melody

from magenta_api import Family, GenerateRequest, GenerateResult, Unprocessable

from . import beam
from .encoders import CONFIG_NAMES, InputEncoder, make_config, make_encoder
from .engine import EventRnn
from .primer import parse_primer

logger = logging.getLogger(__name__)

# .mag bundles name their generator; drums_rnn calls drum_kit "drum_kit".
GENERATOR_IDS = {"drum_kit": "drum_kit_rnn"}
MAX_BEAM_ROWS = 64  # num_outputs * beam_size * branch_factor sequences in one batch


def _magentajs_overrides(js: dict) -> dict:
    """Config values a Magenta.js ``config.json`` carries (its maxPitch is inclusive)."""
    out = {}
    args = (js.get("dataConverter") or {}).get("args") or {}
    if "minPitch" in args:
        out["min_note"] = int(args["minPitch"])
    if "maxPitch" in args:
        out["max_note"] = int(args["maxPitch"]) + 1
    if js.get("attentionLength"):
        out["attn_length"] = int(js["attentionLength"])
    for aux in js.get("auxInputs") or []:
        if aux.get("type") == "BinaryCounter":
            out["binary_counter_bits"] = int(aux["args"]["numBits"])
    return out


class MelodyRnnFamily(Family):
    name = "melody_rnn"
    description = (
        "Magenta's MelodyRNN (basic_rnn, mono_rnn, lookback_rnn, attention_rnn) and DrumsRNN "
        "(drum_kit_rnn): continue a primer step by step, with optional beam search."
    )
    capabilities = ("continue", "sample")
    default_mode = "continue"
    defaults = {"temperature": 1.0, "length": 64, "qpm": 120.0, "num_outputs": 1}
    hparams_schema = {
        "type": "object",
        "properties": {
            "config": {"enum": list(CONFIG_NAMES)},
            "min_note": {"type": "integer", "minimum": 0, "maximum": 127},
            "max_note": {"type": "integer", "minimum": 1, "maximum": 128},
            "transpose_to_key": {"type": ["integer", "null"], "minimum": 0, "maximum": 11},
            "attn_length": {"type": "integer", "minimum": 0},
            "steps_per_quarter": {"type": "integer", "minimum": 1},
            "binary_counter_bits": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    }
    params_schema = {
        "type": "object",
        "properties": {
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
                "description": "steps each branch is extended before pruning",
            },
        },
    }

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        hp = dict(spec.hparams or {})
        meta = getattr(checkpoint, "meta", None) or {}
        name = hp.pop("config", None) or GENERATOR_IDS.get(meta.get("generator_id"), meta.get("generator_id"))
        if name not in CONFIG_NAMES:
            raise ValueError(f"model {spec.id}: set hparams.config to one of {', '.join(CONFIG_NAMES)}")
        overrides = _magentajs_overrides(meta["config"]) if isinstance(meta.get("config"), dict) else {}
        overrides.update(hp)
        cfg = make_config(name, overrides)
        self.model = EventRnn.from_variables(checkpoint.variables, cfg.attn_length)
        if cfg.drums and "binary_counter_bits" not in overrides:
            # drum_kit's lookback encoder adds binary counters; a plain one-hot drum model has none.
            cfg.binary_counter_bits = max(0, self.model.input_size - 512)
        self.config = cfg
        self.encoder = InputEncoder(make_encoder(cfg))
        if (self.encoder.input_size, self.encoder.num_classes) != (self.model.input_size, self.model.num_classes):
            raise ValueError(
                f"model {spec.id}: checkpoint takes {self.model.input_size} inputs and has "
                f"{self.model.num_classes} classes but config {name} encodes {self.encoder.input_size} inputs, "
                f"{self.encoder.num_classes} classes (check min_note/max_note)"
            )
        logger.info(
            "melody_rnn %s: config %s, layers %s, attention %s",
            spec.id,
            name,
            self.model.layer_sizes,
            cfg.attn_length if self.model.attention else 0,
        )

    # -- request checks -------------------------------------------------------------------------
    @staticmethod
    def _beam_params(request):
        p = request.params
        return int(p.get("beam_size", 1)), int(p.get("branch_factor", 1)), int(p.get("steps_per_iteration", 1))

    @classmethod
    def validate(cls, spec, request):
        if request.mode == "sample" and request.primer is not None:
            raise Unprocessable(
                "mode 'sample' starts from the model's default primer; use mode 'continue' to send a primer",
                {"field": "/primer"},
                code="invalid_primer",
            )
        beam_size, branch_factor, _ = cls._beam_params(request)
        rows = request.num_outputs * beam_size * branch_factor
        if rows > MAX_BEAM_ROWS:
            raise Unprocessable(
                f"num_outputs x beam_size x branch_factor is {rows}; at most {MAX_BEAM_ROWS}",
                {"field": "/beam_size", "limit": MAX_BEAM_ROWS},
                code="over_limit",
            )
        if isinstance(request.primer, list) and request.length is not None and len(request.primer) >= request.length:
            raise cls._too_long(len(request.primer), request.length)

    @staticmethod
    def _too_long(primer_steps, length):
        return Unprocessable(
            f"primer is {primer_steps} steps but length is {length}: length counts the primer's steps too "
            "and must be greater",
            {"field": "/length", "primer_steps": primer_steps},
            code="primer_too_long",
        )

    # -- generation -----------------------------------------------------------------------------
    def generate(self, request: GenerateRequest) -> GenerateResult:
        cfg = self.config
        length = int(request.length or self.defaults["length"])
        beam_size, branch_factor, steps_per_iteration = self._beam_params(request)
        primer = parse_primer(request.primer, cfg.drums, cfg.steps_per_quarter, cfg.default_primer)
        track = primer.track  # parsed afresh for this request, so squashing it in place is fine
        transpose = 0
        if not cfg.drums:
            transpose = track.squash(cfg.min_note, cfg.max_note, cfg.transpose_to_key)
        events = list(track)
        if len(events) >= length:
            raise self._too_long(len(events), length)
        results = beam.generate(
            self.model,
            self.encoder,
            events,
            length,
            request.num_outputs,
            request.temperature,
            request.rng,
            beam_size,
            branch_factor,
            steps_per_iteration,
        )
        qpm = request.qpm if "qpm" in request.explicit or not primer.qpm else primer.qpm
        sequences, event_lists = [], []
        for r in results:
            out = (DrumTrack if cfg.drums else Melody)(
                r.events,
                start_step=track.start_step,
                steps_per_bar=track.steps_per_bar,
                steps_per_quarter=track.steps_per_quarter,
            )
            if transpose:
                out.transpose(-transpose)
            sequences.append(out.to_sequence(qpm=qpm))
            event_lists.append([sorted(int(p) for p in e) for e in out] if cfg.drums else [int(e) for e in out])
        extra = {
            "events": event_lists,
            "log_likelihood": [r.score for r in results],
            "primer_steps": len(events),
            "start_step": track.start_step,
        }
        return GenerateResult(sequences=sequences, extra=extra)
