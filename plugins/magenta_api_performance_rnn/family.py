"""The ``performance_rnn`` family: Magenta's PerformanceRNN (expressive piano: note-on/off, 10 ms time
shifts, velocity bins), optionally conditioned on note density and a pitch-class histogram, on the
events RNN and beam search the melody_rnn plugin already has.

A generation runs as ``PerformanceRnnSequenceGenerator`` (with ``get_generator_map``'s
``fill_generate_section=False``): ``length`` is the output's end in 10 ms steps, the primer included
(``performance_rnn_generate --num_steps``; ``seconds`` says it in seconds); the RNN takes
``ceil(4 * max(1, mean notes_per_second) * steps / 100)`` steps once, and the performance is then cut
or padded to that end, with notes held past 5 seconds turned off.
"""

import logging
import math
import numbers

from note_seq.performance_lib import Performance

from magenta_api import Family, GenerateRequest, GenerateResult, InvalidRequest, Unprocessable
from magenta_api_melody_rnn import beam, beam_request
from magenta_api_melody_rnn.engine import EventRnn

from .configs import (
    CONFIG_NAMES,
    CONFIGS,
    DEFAULT_NOTE_DENSITY,
    DENSITY,
    MAX_NOTE_DURATION_SECONDS,
    PITCH,
    STEPS_PER_SECOND,
    PerformanceConfig,
)
from .encoding import ControlSchedule, make_encoder
from .primer import events_json, parse_primer

logger = logging.getLogger(__name__)

MAX_SCHEDULE = 64  # values of one control spread over the performance
MAX_DENSITY = 1000.0  # notes per second; the density bins end at 64, and it sizes the RNN-steps estimate
CONTROL_FIELDS = (DENSITY, PITCH, "disable_conditioning")


def _bad_control(field: str, message: str, **details) -> Unprocessable:
    return Unprocessable(message, {"field": f"/{field}", **details}, code="invalid_control")


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_density(value) -> list:
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > MAX_SCHEDULE:
        raise _bad_control(DENSITY, f"notes_per_second takes a number or a list of 1..{MAX_SCHEDULE} numbers")
    for i, v in enumerate(values):
        if not _number(v) or not 0 <= v <= MAX_DENSITY:
            at = f" (item {i})" if isinstance(value, list) else ""
            raise _bad_control(
                DENSITY, f"notes_per_second{at} is {v!r}: expected a number of notes per second, 0..{MAX_DENSITY:g}"
            )
    return [float(v) for v in values]


def _check_histogram(value) -> list:
    if not isinstance(value, list) or not value:
        raise _bad_control(PITCH, "pitch_class_histogram takes 12 weights (C, C#, ..., B) or a list of such lists")
    values = value if isinstance(value[0], list) else [value]
    if len(values) > MAX_SCHEDULE:
        raise _bad_control(PITCH, f"pitch_class_histogram schedules at most {MAX_SCHEDULE} histograms")
    for i, h in enumerate(values):
        at = f" (item {i})" if values is value else ""
        if not isinstance(h, list) or len(h) != 12:
            raise _bad_control(PITCH, f"pitch_class_histogram{at} needs 12 weights, one per pitch class C..B")
        if not all(_number(w) and w >= 0 for w in h):
            raise _bad_control(PITCH, f"pitch_class_histogram{at} weights must be numbers >= 0, got {h!r}")
    return [[float(w) for w in h] for h in values]


def _check_disable(value) -> list:
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > MAX_SCHEDULE or not all(isinstance(v, bool) for v in values):
        raise _bad_control(
            "disable_conditioning", f"disable_conditioning takes true/false or a list of 1..{MAX_SCHEDULE} of them"
        )
    return values


def _config_for(name: str | None, variables, spec_id: str) -> PerformanceConfig:
    model = EventRnn.from_variables(variables)
    sizes = (model.input_size, model.num_classes)
    if name is None:
        raise ValueError(f"model {spec_id}: set hparams.config to one of {', '.join(CONFIG_NAMES)}")
    config = CONFIGS[name]
    if (config.input_size, config.num_classes) == sizes:
        return config
    # The published multiconditioned bundle may carry the optional-conditioning flag input.
    if name == "multiconditioned_performance_with_dynamics":
        optional = CONFIGS["optional_multiconditioned_performance_with_dynamics"]
        if (optional.input_size, optional.num_classes) == sizes:
            return optional
    fits = [n for n, c in CONFIGS.items() if (c.input_size, c.num_classes) == sizes]
    hint = f"; the weights fit config {' or '.join(fits)}: set hparams.config to that" if fits else ""
    raise ValueError(
        f"model {spec_id}: the checkpoint takes {sizes[0]} inputs and predicts {sizes[1]} classes, but config "
        f"{name} encodes {config.input_size} inputs and {config.num_classes} classes{hint}"
    )


class PerformanceRnnFamily(Family):
    name = "performance_rnn"
    description = (
        "Magenta's PerformanceRNN: expressive piano performances (note-on/off, 10 ms time shifts, velocity), "
        "optionally conditioned on notes_per_second and pitch_class_histogram; continue a primer or start from "
        "silence, with beam search."
    )
    capabilities = ("continue", "sample")
    default_mode = "continue"
    defaults = {"temperature": 1.0, "length": 3000, "num_outputs": 1}
    hparams_schema = {
        "type": "object",
        "properties": {"config": {"enum": list(CONFIG_NAMES)}},
        "additionalProperties": False,
    }
    params_schema = {
        "type": "object",
        "properties": {
            **beam_request.SCHEMA,
            "seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 3600,
                "description": "the output's end in seconds, the primer included (instead of length, in 10 ms steps)",
            },
            DENSITY: {
                "description": "conditioned models: notes per second (a number, or a list spread evenly over the "
                "performance); default 15 for the density models. Also sets how many RNN steps are run."
            },
            PITCH: {
                "description": "conditioned models: 12 weights for the pitch classes C..B (normalised), or a list "
                "of such histograms spread evenly over the performance; default uniform"
            },
            "disable_conditioning": {
                "description": "optionally conditioned models: true runs the model without its controls (or a "
                "list of true/false spread over the performance)"
            },
        },
    }

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        hp = dict(spec.hparams or {})
        meta = getattr(checkpoint, "meta", None) or {}
        name = hp.get("config") or meta.get("generator_id")
        if name is not None and name not in CONFIGS:
            raise ValueError(f"model {spec.id}: {name!r} is not a PerformanceRNN config ({', '.join(CONFIG_NAMES)})")
        self.config = _config_for(name, checkpoint.variables, spec.id)
        self.model = EventRnn.from_variables(checkpoint.variables)
        logger.info("performance_rnn %s: config %s, layers %s", spec.id, self.config.name, self.model.layer_sizes)

    # -- request checks -------------------------------------------------------------------------
    @classmethod
    def _config_of(cls, spec) -> PerformanceConfig | None:
        name = (spec.hparams or {}).get("config")
        return CONFIGS.get(name) if name else None

    @classmethod
    def validate(cls, spec, request):
        p = request.params
        if request.mode == "sample" and request.primer is not None:
            raise Unprocessable(
                "mode 'sample' starts from silence; use mode 'continue' to send a primer",
                {"field": "/primer"},
                code="invalid_primer",
            )
        if "seconds" in p and "length" in request.explicit:
            raise InvalidRequest("give length (10 ms steps) or seconds, not both", {"field": "/seconds"})
        limit = (spec.limits or {}).get("length")
        if "seconds" in p and limit and round(float(p["seconds"]) * STEPS_PER_SECOND) > limit:
            raise Unprocessable(
                f"seconds {p['seconds']:g} is {round(float(p['seconds']) * STEPS_PER_SECOND)} steps of 10 ms; this "
                f"model's limit is {limit} steps ({limit / STEPS_PER_SECOND:g} s)",
                {"field": "/seconds", "limit": limit},
                code="over_limit",
            )
        beam_request.check_rows(request)
        checks = {DENSITY: _check_density, PITCH: _check_histogram, "disable_conditioning": _check_disable}
        for field, check in checks.items():
            if field in p:
                check(p[field])
        config = cls._config_of(spec)
        if config is not None:
            cls._check_fields(config, p)

    @staticmethod
    def _check_fields(config: PerformanceConfig, params):
        for field in (DENSITY, PITCH):
            if field in params and field not in config.controls:
                takes = f"it takes {', '.join(config.controls)}" if config.controls else "it is not conditioned"
                raise _bad_control(field, f"config {config.name} has no {field} control: {takes}")
        if "disable_conditioning" in params and not config.optional:
            raise _bad_control(
                "disable_conditioning",
                f"config {config.name} cannot run without its controls (its inputs have no disable flag)",
            )

    # -- generation -----------------------------------------------------------------------------
    def _length(self, request) -> int:
        if "seconds" in request.params:
            return max(1, round(float(request.params["seconds"]) * STEPS_PER_SECOND))
        return int(request.length or self.defaults["length"])

    def generate(self, request: GenerateRequest) -> GenerateResult:
        config, p = self.config, request.params
        self._check_fields(config, p)
        length = self._length(request)
        beam_size, branch_factor, steps_per_iteration = beam_request.params(request)
        primer = parse_primer(request.primer, config.num_velocity_bins, length)
        perf = primer.performance
        values = {
            DENSITY: _check_density(p[DENSITY]) if DENSITY in p else [DEFAULT_NOTE_DENSITY],
            PITCH: _check_histogram(p[PITCH]) if PITCH in p else [[1.0] * 12],
        }
        disable = _check_disable(p["disable_conditioning"]) if "disable_conditioning" in p else None
        schedule = ControlSchedule(config, values, disable, primer.total_steps) if config.controls else None
        encoder = make_encoder(config, schedule)
        # The generator's estimate of the RNN steps: 4 per note at the mean requested density.
        density = sum(values[DENSITY]) / len(values[DENSITY]) if DENSITY in p else DEFAULT_NOTE_DENSITY
        steps_to_gen = primer.total_steps - perf.num_steps
        rnn_steps = int(math.ceil(4.0 * max(1.0, density) * steps_to_gen / STEPS_PER_SECOND))
        events = list(perf)
        results = []
        if rnn_steps > 0:
            results = beam.generate(
                self.model,
                encoder,
                events,
                len(events) + rnn_steps,
                request.num_outputs,
                request.temperature,
                request.rng,
                beam_size,
                branch_factor,
                steps_per_iteration,
            )
        sequences, event_lists, scores = [], [], []
        for r in results or [beam.Generated(events, 0.0)] * request.num_outputs:
            out = Performance(
                steps_per_second=STEPS_PER_SECOND,
                start_step=perf.start_step,
                num_velocity_bins=config.num_velocity_bins,
            )
            for e in r.events:
                out.append(e)
            out.set_length(primer.total_steps)
            sequences.append(out.to_sequence(max_note_duration=MAX_NOTE_DURATION_SECONDS))
            event_lists.append(events_json(out))
            scores.append(r.score)
        extra = {
            "events": event_lists,
            "log_likelihood": [beam.json_score(s) for s in scores],
            "rnn_steps": rnn_steps,
            "start_step": primer.start_step,
            "end_step": perf.start_step + primer.total_steps,
            "steps_per_second": STEPS_PER_SECOND,
        }
        return GenerateResult(sequences=sequences, extra=extra)
