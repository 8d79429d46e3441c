"""The ``melody_rnn`` family: MelodyRNN (basic, mono, lookback, attention) and DrumsRNN (drum_kit)
continuing a primer, on the NumPy events RNN, with Magenta's beam search."""

import logging

from note_seq import DrumTrack, Melody, PitchChordsEncoderDecoder, TriadChordOneHotEncoding
from note_seq import encoder_decoder as ed
from note_seq.melody_encoder_decoder import KeyMelodyEncoderDecoder, MelodyOneHotEncoding

from magenta_api import Family, GenerateRequest, GenerateResult, Unprocessable, progress

from . import beam, beam_request, rows
from .encoders import CONFIG_NAMES, InputEncoder, make_config, make_encoder
from .engine import EventRnn
from .primer import parse_primer, primer_too_long

logger = logging.getLogger(__name__)

# .mag bundles name their generator; drums_rnn calls drum_kit "drum_kit".
GENERATOR_IDS = {"drum_kit": "drum_kit_rnn"}
MAX_START_STEP = 1_000_000  # a primer lasts at most music.MAX_SECONDS (240,000 steps at 1000 qpm)


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


IMPROV_UNSUPPORTED = (
    "the melody_rnn family does not run it: ImprovRNN improvises a melody over a chord progression, and its "
    "extra inputs are those chords; declare the model with family improv_rnn (the chords field)"
)
# ImprovRNN's conditional encodings (magenta's improv_rnn_model.default_configs): melody part, chord part.
IMPROV_CONFIGS = {
    "basic_improv": ("one_hot", "triad"),
    "attention_improv": ("key", "triad"),
    "chord_pitches_improv": ("one_hot", "pitches"),
}


def _sizes(x) -> tuple[int, int]:
    return int(x.input_size), int(x.num_classes)


def _fit_counter_bits(cfg, overrides, model):
    if cfg.drums and "binary_counter_bits" not in overrides:
        # drum_kit's lookback encoder adds binary counters; a plain one-hot drum model has none.
        cfg.binary_counter_bits = max(0, model.input_size - 512)


def _improv_layout(cfg, model) -> str | None:
    """How an ImprovRNN checkpoint's inputs split into melody + chord, if they do for this pitch range."""
    melody = {
        "one_hot": MelodyOneHotEncoding(cfg.min_note, cfg.max_note),
        "key": KeyMelodyEncoderDecoder(min_note=cfg.min_note, max_note=cfg.max_note),
    }
    chords = {
        "triad": ed.OneHotEventSequenceEncoderDecoder(TriadChordOneHotEncoding()),
        "pitches": PitchChordsEncoderDecoder(),
    }
    for improv, (m, c) in IMPROV_CONFIGS.items():
        mel = melody[m]
        mel_inputs = mel.input_size if m == "key" else mel.num_classes  # a one-hot encoding's input is its classes
        if model.num_classes == mel.num_classes and model.input_size == mel_inputs + chords[c].input_size:
            return (
                f"this looks like an ImprovRNN checkpoint ({improv}): {model.input_size} inputs = {mel_inputs} "
                f"melody + {chords[c].input_size} chord; {IMPROV_UNSUPPORTED}"
            )
    return None


def _improv_reason(overrides, variables, declared) -> str:
    """Why an ImprovRNN checkpoint does not load (a Magenta.js config.json naming a ``chordEncoder``, or a
    bundle's improv_rnn generator id), with the arithmetic of its inputs when the weights show it."""
    attn = overrides.get("attn_length") or (40 if declared.get("generator_id") == "attention_improv" else 0)
    cfg = make_config("attention_rnn" if attn else "basic_rnn", {**overrides, "attn_length": attn})
    try:
        layout = _improv_layout(cfg, EventRnn.from_variables(variables, cfg.attn_length))
    except ValueError:  # weights this engine cannot even lay out
        layout = None
    said = (
        f"its config.json names the chord encoder {declared['chordEncoder']}"
        if declared.get("chordEncoder")
        else f"its bundle's generator is {declared['generator_id']}"
    )
    return layout or f"this is an ImprovRNN checkpoint ({said}); {IMPROV_UNSUPPORTED}"


def _mismatch(cfg, overrides, model) -> str:
    """Why a checkpoint does not fit its declared config, in words that say what to change."""
    encoder = make_encoder(cfg)
    said = (
        f"the checkpoint takes {model.input_size} inputs and predicts {model.num_classes} classes, but config "
        f"{cfg.name} encodes {encoder.input_size} inputs and {encoder.num_classes} classes"
    )
    # ImprovRNN's own pitch range is basic_rnn's (48..84), whatever the declared config says.
    improv = _improv_layout(cfg, model) or _improv_layout(make_config("basic_rnn"), model)
    if improv:
        return improv
    fits = []
    for other in CONFIG_NAMES:
        alt = make_config(other, overrides)
        _fit_counter_bits(alt, overrides, model)
        if other != cfg.name and _sizes(make_encoder(alt)) == _sizes(model):
            fits.append(other)
    if fits:
        return f"{said}; the weights fit config {' or '.join(fits)}: set hparams.config to that"
    if not cfg.drums:
        # A melody's classes are its pitches (max_note - min_note) plus the config's special classes.
        pitches = model.num_classes - (encoder.num_classes - (cfg.max_note - cfg.min_note))
        if pitches > 0 and cfg.min_note >= 0 and cfg.min_note + pitches <= 128:
            alt = make_config(cfg.name, {**overrides, "max_note": cfg.min_note + pitches})
            if _sizes(make_encoder(alt)) == _sizes(model):
                return (
                    f"{said}: the checkpoint's pitch range is {pitches} pitches, the config's "
                    f"{cfg.min_note}..{cfg.max_note - 1} is {cfg.max_note - cfg.min_note}; set min_note/max_note "
                    f"(e.g. max_note {cfg.min_note + pitches} with min_note {cfg.min_note})"
                )
    return f"{said}; no melody_rnn config or pitch range makes those sizes"


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
            **beam_request.SCHEMA,
            "start_step": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_START_STEP,
                "description": "the first generated step, in steps from the primer's time 0 (at least where the "
                "primer ends); default: where Magenta's sequence generator starts, the first step after the "
                "primer's end",
            },
        },
    }

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        hp = dict(spec.hparams or {})
        meta = getattr(checkpoint, "meta", None) or {}
        name = hp.pop("config", None) or GENERATOR_IDS.get(meta.get("generator_id"), meta.get("generator_id"))
        js = meta.get("config") if isinstance(meta.get("config"), dict) else None
        overrides = _magentajs_overrides(js) if js else {}
        overrides.update(hp)
        if js and js.get("chordEncoder"):  # Magenta.js's config.json of an ImprovRNN (MusicRNN with chords)
            raise ValueError(f"model {spec.id}: {_improv_reason(overrides, checkpoint.variables, js)}")
        if meta.get("generator_id") in IMPROV_CONFIGS:  # a .mag bundle of improv_rnn
            raise ValueError(f"model {spec.id}: {_improv_reason(overrides, checkpoint.variables, meta)}")
        if name not in CONFIG_NAMES:
            raise ValueError(f"model {spec.id}: set hparams.config to one of {', '.join(CONFIG_NAMES)}")
        cfg = make_config(name, overrides)
        self.model = EventRnn.from_variables(checkpoint.variables, cfg.attn_length)
        _fit_counter_bits(cfg, overrides, self.model)
        self.config = cfg
        self.encoder = InputEncoder(make_encoder(cfg))
        if _sizes(self.encoder) != _sizes(self.model):
            raise ValueError(f"model {spec.id}: {_mismatch(cfg, overrides, self.model)}")
        logger.info(
            "melody_rnn %s: config %s, layers %s, attention %s",
            spec.id,
            name,
            self.model.layer_sizes,
            cfg.attn_length if self.model.attention else 0,
        )

    # -- request checks -------------------------------------------------------------------------
    @classmethod
    def validate(cls, spec, request):
        if request.mode == "sample" and request.primer is not None:
            raise Unprocessable(
                "mode 'sample' starts from the model's default primer; use mode 'continue' to send a primer",
                {"field": "/primer"},
                code="invalid_primer",
            )
        beam_request.check_rows(request)
        if isinstance(request.primer, list) and request.primer and request.length is not None:
            # An event list starts at step 0 and ends at step len: checks that need no parsing.
            primer = request.primer
            start = request.params.get("start_step", len(primer) + 1)
            if start >= request.length and start >= len(primer):
                raise primer_too_long(len(primer), start, start, request.length)

    # -- generation -----------------------------------------------------------------------------
    def _prepare(self, request: GenerateRequest) -> tuple:
        """The primer as the events the RNN continues: (:class:`~.rows.Row`, context), the context being
        what :meth:`_answer` needs besides the results (track, start, transpose, qpm, primer)."""
        cfg = self.config
        length = int(request.length or self.defaults["length"])
        primer = parse_primer(request.primer, cfg.drums, cfg.steps_per_quarter, cfg.default_primer)
        # Parsed afresh for this request, so padding and squashing the track in place is fine.
        track, start = primer.align(request.params.get("start_step"), length)
        transpose = 0
        if not cfg.drums:
            transpose = track.squash(cfg.min_note, cfg.max_note, cfg.transpose_to_key)
        qpm = request.qpm if "qpm" in request.explicit or not primer.qpm else primer.qpm
        row = rows.Row(self.encoder, list(track), length, request.temperature, request.rng)
        return row, (track, start, transpose, qpm, primer)

    def generate(self, request: GenerateRequest) -> GenerateResult:
        row, context = self._prepare(request)
        track, _, transpose, qpm, _ = context
        beam_size, branch_factor, steps_per_iteration = beam_request.params(request)
        on_step = self._reporter(track, transpose, qpm) if progress.listening() else None
        results = beam.generate(
            self.model,
            row.encoder,
            row.primer,
            row.num_steps,
            request.num_outputs,
            request.temperature,
            request.rng,
            beam_size,
            branch_factor,
            steps_per_iteration,
            on_step,
        )
        return self._answer(results, *context)

    # -- dynamic batching (magenta_api.batching) ------------------------------------------------
    def batch_key(self, request: GenerateRequest):
        """See :func:`~.rows.batch_key`: one-output sampling of one length shares a batch."""
        return rows.batch_key(self.model, request, int(request.length or self.defaults["length"]), self.encoder)

    def generate_batch(self, requests: list) -> list:
        """Each request's primer as alone, then every row's steps together (:func:`~.rows.run_batch`)."""
        return rows.run_batch(self.model, requests, self._prepare, self._answer, self.generate)

    def _answer(self, results, track, start, transpose, qpm, primer) -> GenerateResult:
        cfg = self.config
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
            "log_likelihood": [beam.json_score(r.score) for r in results],
            "primer_steps": primer.steps_before(start, track),
            "start_step": start,
            "events_start_step": track.start_step,
        }
        return GenerateResult(sequences=sequences, extra=extra)

    def _reporter(self, track, transpose: int, qpm: float):
        """An ``on_step`` for :func:`beam.generate` that reports each output's newly decided notes to
        streaming clients: a melody's last note may still be held, a drum hit is decided when drawn."""
        drums = self.config.drums
        sent: dict = {}

        def on_step(output: int, events: list) -> None:
            out = (DrumTrack if drums else Melody)(
                list(events),
                start_step=track.start_step,
                steps_per_bar=track.steps_per_bar,
                steps_per_quarter=track.steps_per_quarter,
            )
            if transpose:
                out.transpose(-transpose)
            notes = list(out.to_sequence(qpm=qpm).notes)
            decided = notes if drums else notes[:-1]
            if len(decided) > sent.get(output, 0):
                progress.notes(output, decided[sent.get(output, 0) :], step=track.start_step + len(events) - 1)
                sent[output] = len(decided)

        return on_step
