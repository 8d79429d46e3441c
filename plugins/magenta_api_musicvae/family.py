"""The ``musicvae`` family: MusicVAE models behind /v1/generate: flat 2-bar melody and drums, 16-bar
hierarchical melodies and trios (melody, bass, drums) with a conductor, chord-conditioned melodies.

Modes, as Magenta does them:

* ``sample``: z ~ N(0, 1), decoded with the request's temperature (0 = argmax).
* ``interpolate``: two inputs, their encodings' mu, slerp at ``num_outputs`` points from 0 to 1
  inclusive, as ``music_vae_generate.py`` (the ends are the reconstructions of the inputs).
* ``similar``: one input; z = similarity * mu + (1 - similarity) * N(0, 1), as Magenta.js
  ``MusicVAE.similar``.
* ``encode``: z (a draw from the posterior, as ``TrainedModel.encode``), mu and sigma per input.
* ``decode``: ``z`` vectors from the request (``params["z"]``) to sequences.

Inputs the converter cannot use (too short, polyphonic where a melody is needed, out of range,
not 4/4) are a 422 that says why. Chord-conditioned models take ``chords`` (:mod:`magenta_api.chords`)
for every decoding mode; encoding reads them from the request, else the input's chord annotations,
else chords inferred from its notes (as magenta's converter does).
"""

import inspect
import logging

import numpy as np
from note_seq import sequences_lib

from magenta_api import Family, GenerateRequest, GenerateResult, InvalidRequest, Unprocessable, progress
from magenta_api import chords as chords_lib
from magenta_api.batching import RowStreams
from magenta_api.music import parse_sequence

from .build import build
from .converters import MelodyConverter
from .engine import FM_MIN

log = logging.getLogger(__name__)

MAX_LONG_BARS = 512  # long-form: at most this many bars (256 chunks of a 2-bar model)
DEFAULT_BLEND = 4  # long-form: chunks per anchor-to-anchor stretch of the latent path

HPARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "config": {"type": "string", "description": "the magenta configs.py name these weights follow"},
        "converter": {"enum": ["melody", "drums", "trio"]},
        "steps": {"type": "integer", "minimum": 1, "description": "decoder steps (max_seq_len), 16ths"},
        "segments": {"type": "integer", "minimum": 1, "description": "conductor steps (Magenta.js numSegments)"},
        "autoregressive": {"type": "boolean", "description": "conductor reads the core's final state (default no)"},
        "chords": {"enum": ["triad", "major_minor"], "description": "chord encoding of the control inputs"},
        "valid_programs": {"enum": ["melody", None], "description": "melody: programs 0..31 only; null: any"},
        "roll_input": {"type": "boolean", "description": "drums: the encoder reads a roll (else the one-hot)"},
        "steps_per_quarter": {"type": "integer", "minimum": 1},
        "quarters_per_bar": {"type": "integer", "minimum": 1},
        "min_pitch": {"type": "integer", "minimum": 0, "maximum": 127},
        "max_pitch": {"type": "integer", "minimum": 0, "maximum": 127},
        "z_size": {"type": "integer", "minimum": 1},
        "enc_rnn_size": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "dec_rnn_size": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    },
}

PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "similarity": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "similar mode: 1 = the input's encoding, 0 = a fresh random z",
        },
        "z": {
            "type": "array",
            "minItems": 1,
            "maxItems": 256,
            "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
            "description": "decode mode: latent vectors, one per output",
        },
        "chords": chords_lib.CHORDS_SCHEMA,
        "bars": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_LONG_BARS,
            "description": "sample: bars of output; more than the model's own are chained from several z "
            "(long-form, see the plugin README)",
        },
        "blend": {
            "type": "integer",
            "minimum": 1,
            "maximum": 64,
            "description": "long-form: model-length chunks on the slerp path from one random anchor z to the next "
            f"(default {DEFAULT_BLEND})",
        },
        "strict_inputs": {
            "type": "boolean",
            "description": "melody models: refuse chords and out-of-range notes (422) "
            "instead of dropping them as magenta does (default true)",
        },
        "instrument": {
            "type": ["integer", "array"],
            "minimum": 0,
            "maximum": 2**31 - 1,
            "maxItems": 256,
            "items": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**31 - 1},
            "description": "the NoteSequence instrument (a MIDI file's track/instrument, numbered from 0 as "
            "note-seq reads it) to take from each input; a list gives one per input (null: the default). "
            "Default: the only instrument with a usable part; a melody input with several is refused",
        },
    },
}

DEFAULT_SIMILARITY = 0.8


class MusicVAEFamily(Family):
    name = "musicvae"
    description = (
        "MusicVAE (2-bar melody and drums, 16-bar hierarchical melody and trio, chord-conditioned melody): "
        "sample, interpolate, similar, encode, decode"
    )
    capabilities = ("sample", "interpolate", "similar", "encode", "decode")
    default_mode = "sample"
    hparams_schema = HPARAMS_SCHEMA
    params_schema = PARAMS_SCHEMA
    defaults = {"temperature": 0.5, "num_outputs": 1}

    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        built = build(spec.id, spec.hparams, checkpoint)
        self.engine, self.converter, self.hparams = built.engine, built.converter, built.hparams
        self.chord_encoding = built.chord_encoding  # None unless the model is conditioned on chords
        self.general = built.general
        self.steps = self.hparams["steps"]

    # -- request checks that need no weights ----------------------------------------------------
    @classmethod
    def validate(cls, spec, request: GenerateRequest) -> None:
        mode, n_in = request.mode, len(request.inputs)
        if mode == "interpolate":
            if n_in != 2:
                raise Unprocessable(f"interpolate needs exactly 2 inputs, got {n_in}", {"field": "/inputs"})
            if request.num_outputs < 2:
                raise Unprocessable(
                    "interpolate needs num_outputs >= 2 (both reconstructions plus the points between)",
                    {"field": "/num_outputs"},
                )
        elif mode == "similar":
            if n_in + (request.primer is not None) != 1:
                raise Unprocessable("similar needs exactly one input (in `inputs` or `primer`)", {"field": "/inputs"})
        elif mode == "encode" and n_in == 0 and request.primer is None:
            raise Unprocessable("encode needs at least one input", {"field": "/inputs"})
        if isinstance(request.params.get("instrument"), list) and mode in ("interpolate", "similar", "encode"):
            given = n_in if n_in else int(request.primer is not None)
            if len(request.params["instrument"]) != given:
                raise Unprocessable(
                    f"instrument lists {len(request.params['instrument'])} instruments for {given} inputs; "
                    "give one per input (null for the default), or one number for all",
                    {"field": "/instrument"},
                )
        if mode == "decode":
            z = request.params.get("z")
            if not z:
                raise Unprocessable("decode needs latent vectors in `z`", {"field": "/z"})
            limit = (spec.limits or {}).get("num_outputs")
            if limit is not None and len(z) > limit:
                raise Unprocessable(
                    f"{len(z)} z vectors is over this model's limit of {limit} outputs",
                    {"field": "/z", "limit": limit},
                    code="over_limit",
                )

    # -- generation -----------------------------------------------------------------------------
    def generate(self, request: GenerateRequest) -> GenerateResult:
        if request.mode == "encode":
            return self._encode(request)
        z, extra = self._latent(request)
        return self._decode_z(z, request, extra)

    def _latent(self, request):
        """A decoding mode's z [n, z_size] (its draws from ``request.rng``) and its extra fields."""
        self._check_length(request)
        return getattr(self, "_" + request.mode)(request)

    # -- dynamic batching (magenta_api.batching) ------------------------------------------------
    def warm(self) -> None:
        """Build the flat engine's batched-path weights (transposed, blocked copies made on first use) and
        run one argmax step of a feature-major batch: built before the fork, the workers share them."""
        if not self.general:
            self.engine.warm()
            self.engine.sample(np.zeros((FM_MIN + 1, self.engine.z_size), np.float32), 1, 0.0)

    def batch_key(self, request: GenerateRequest):
        """Decoding modes of one length and temperature share the flat decoder's pass. Encode runs alone:
        its answer is floats, which a batch would change in the last bit (BLAS sums in another order);
        so do the general engine's models (hierarchical, trio, chords), which draw their noise otherwise."""
        if request.mode == "encode" or self.general:  # the flat engine only: its noise is one [T, B, C] draw
            return None
        if self._chunks(request) > 1:  # long-form joins its chunks itself
            return None
        return ("decode", self._length(request), request.temperature)

    def generate_batch(self, requests: list) -> list:
        """Each request's z as alone (inputs encoded per request), then one decoder pass over all of them,
        each request's noise drawn from its own rng (:class:`~magenta_api.batching.RowStreams`)."""
        results: list = [None] * len(requests)
        latents = {}
        for i, request in enumerate(requests):
            try:
                latents[i] = self._latent(request)
            except (InvalidRequest, Unprocessable) as exc:  # this request's own error; the others go on
                results[i] = exc
        if latents:
            order = list(latents)
            rows = [len(latents[i][0]) for i in order]
            first = requests[order[0]]
            noise = RowStreams([requests[i].rng for i in order], rows, axis=1)  # the engine's noise is [T, B, C]
            z = np.concatenate([latents[i][0] for i in order]).astype(np.float32)
            classes = self.engine.sample(z, self._length(first), first.temperature, noise)
            at = 0
            for i, n in zip(order, rows):
                results[i] = GenerateResult(self._sequences(classes[at : at + n], requests[i].qpm), latents[i][1])
                at += n
        return results

    def _check_length(self, request):
        """The decoder runs at most the model's steps (from the hparams it was built with: models.yaml,
        else its Magenta.js config.json); longer music comes from ``bars`` (long-form)."""
        if request.params.get("bars") is not None:
            if request.mode != "sample":
                raise Unprocessable("bars (long-form) is for mode sample", {"field": "/bars"})
            if request.length is not None:
                raise Unprocessable("send bars or length, not both", {"field": "/bars"})
            limit = (self.spec.limits or {}).get("num_outputs")
            if request.num_outputs * self._chunks(request) > max(256, limit or 0):
                raise Unprocessable(
                    f"{request.num_outputs} outputs of {request.params['bars']} bars need "
                    f"{request.num_outputs * self._chunks(request)} decodes; at most 256",
                    {"field": "/bars"},
                    code="over_limit",
                )
            return
        if request.length is not None and request.length > self.steps:
            raise Unprocessable(
                f"length {request.length} is over this model's {self.steps} steps (16th notes)",
                {"field": "/length", "limit": self.steps},
                code="over_limit",
            )

    def _length(self, request):
        if self._chunks(request) > 1:
            return self.steps
        bars = request.params.get("bars")
        if bars is not None and request.mode == "sample" and self.converter.kind != "multitrack":
            return int(bars) * self.converter.steps_per_bar
        return int(request.length or self.steps)

    @property
    def _chunk_bars(self) -> int:
        """Bars one decode covers (a multitrack model's steps are events, its window one bar)."""
        if self.converter.kind == "multitrack":
            return self.converter.hop_size_bars
        return max(1, self.steps // self.converter.steps_per_bar)

    # -- long-form ------------------------------------------------------------------------------
    def _chunks(self, request) -> int:
        """How many model-length chunks a ``sample`` request's ``bars`` needs (1: the model's own length)."""
        bars = request.params.get("bars")
        if bars is None or request.mode != "sample":
            return 1
        if self.converter.kind == "multitrack":
            return -(-int(bars) // self._chunk_bars)
        return -(-int(bars) * self.converter.steps_per_bar // self.steps)

    def _long_z(self, request, chunks):
        """z for each chunk of each output [num_outputs * chunks, z_size], output-major. Anchors are drawn
        from the request's rng (one per ``blend`` chunks, plus the last); chunk k lies on the slerp from
        anchor k // blend to the next at (k % blend) / blend, so neighbouring chunks share most of their
        code and the piece drifts smoothly (deterministic for a seed)."""
        blend = int(request.params.get("blend", DEFAULT_BLEND))
        anchors = -(-chunks // blend) + 1
        a = request.rng.standard_normal((request.num_outputs, anchors, self.engine.z_size)).astype(np.float32)
        z = [
            slerp(a[o, k // blend], a[o, k // blend + 1], (k % blend) / blend)
            for o in range(request.num_outputs)
            for k in range(chunks)
        ]
        return np.asarray(z, np.float32)

    def _decode_long(self, z, request, chunks, extra):
        """Long-form: every chunk decoded in one batch (a chord model's chunks each get their bars'
        chords), then each output's chunks joined in time."""
        steps = self.steps
        symbols = self._request_chords(request, chunks * steps)
        if symbols is not None and self.converter.kind == "multitrack":
            symbols = self._multitrack_symbols(request, chunks)
        stream = self._streaming(request.qpm, chunks, request)
        if symbols is None:
            classes = self.engine.sample(z, steps, request.temperature, request.rng, **stream)
        else:
            controls = np.tile(self._chord_controls(symbols).reshape(chunks, steps, -1), (request.num_outputs, 1, 1))
            classes = self.engine.sample(z, steps, request.temperature, request.rng, controls=controls, **stream)
        seqs = self._join_long(self._sequences(classes, request.qpm), request, chunks)
        if symbols is not None:
            total = int(request.params["bars"]) * self.converter.steps_per_bar
            grid = self._bar_symbols(request, total)
            for s in seqs:
                chords_lib.annotate(s, grid, self.converter.steps_per_quarter, request.qpm)
        info = {
            "chunks": chunks,
            "bars": int(request.params["bars"]),
            "blend": request.params.get("blend", DEFAULT_BLEND),
        }
        return GenerateResult(seqs, {**(extra or {}), "long_form": info})

    def _join_long(self, seqs, request, chunks):
        """One sequence per output from its chunks, each shifted by the chunk's start (bars exactly)."""
        quarters = self.converter.steps_per_bar / self.converter.steps_per_quarter
        seconds = self._chunk_bars * quarters * 60.0 / request.qpm
        out = []
        for o in range(request.num_outputs):
            parts = seqs[o * chunks : (o + 1) * chunks]
            joined = sequences_lib.concatenate_sequences(parts, [seconds] * len(parts))
            total = int(request.params["bars"]) * seconds / self._chunk_bars
            keep = [n for n in joined.notes if n.start_time < total - 1e-9]  # bars not a multiple of chunks
            del joined.notes[:]
            joined.notes.extend(keep)
            for n in joined.notes:
                n.end_time = min(n.end_time, total)
            del joined.text_annotations[:]  # chord annotations are written once for the whole piece
            joined.total_time = total
            out.append(joined)
        return out

    def _decode_z(self, z, request, extra=None):
        chunks = self._chunks(request)
        if chunks > 1:
            return self._decode_long(z, request, chunks, extra)
        length = self._length(request)
        symbols = self._request_chords(request, length)
        grid = symbols
        if symbols is not None and self.converter.kind == "multitrack":
            grid = self._bar_symbols(request, self._chunk_bars * self.converter.steps_per_bar)
            symbols = self._multitrack_symbols(request, 1)
        stream = self._streaming(request.qpm)  # bar by bar to streaming clients
        if symbols is None:
            classes = self.engine.sample(z, length, request.temperature, request.rng, **stream)
        else:
            controls = self._chord_controls(symbols)
            classes = self.engine.sample(z, length, request.temperature, request.rng, controls=controls, **stream)
        seqs = self._sequences(classes, request.qpm)
        if grid is not None:
            for s in seqs:
                chords_lib.annotate(s, grid, self.converter.steps_per_quarter, request.qpm)
        return GenerateResult(seqs, extra or {})

    # -- chords ---------------------------------------------------------------------------------
    def _request_chords(self, request, length, required=True):
        """Per-step chord symbols from the request's ``chords`` (None for a model without chords);
        a chord model needs them to decode, as Magenta.js's ``chordProgression``."""
        value = request.params.get("chords")
        if self.chord_encoding is None:
            if value is not None:
                raise Unprocessable(
                    f"{self.spec.id} is not conditioned on chords; send chords only to a chord model",
                    {"field": "/chords"},
                )
            return None
        progression = chords_lib.parse_chords(value)
        if progression is None:
            if not required:
                return None
            raise Unprocessable(
                f"{self.spec.id} is conditioned on chords: send `chords` (one symbol per bar, e.g. "
                '["C", "G", "Am", "F"], or {symbol, step} changes)',
                {"field": "/chords"},
                code="chords_required",
            )
        progression.check(self.chord_encoding.encode_event, f"{self.spec.id}'s chord encoding")
        spq = self.converter.steps_per_quarter
        return progression.per_step(length, spq, self.converter.steps_per_bar // spq, request.qpm)

    def _bar_symbols(self, request, steps):
        """The request's chords on the 16th grid for ``steps`` steps (for the output's annotations)."""
        progression = chords_lib.parse_chords(request.params.get("chords"))
        spq = self.converter.steps_per_quarter
        return progression.per_step(steps, spq, self.converter.steps_per_bar // spq, request.qpm)

    def _multitrack_symbols(self, request, chunks):
        """A multitrack model's controls follow its events, not time: as Magenta.js does, each track gets
        "no chord" for its program token, then the bar's chords spread evenly over its other 63 event
        positions; every track of a chunk the same. Chunk k takes the chords of its own bars."""
        bar_steps = self._chunk_bars * self.converter.steps_per_bar
        grid = self._bar_symbols(request, chunks * bar_steps)
        events = self.converter.max_events
        out = []
        for k in range(chunks):
            bar = grid[k * bar_steps : (k + 1) * bar_steps]
            changes = [s for i, s in enumerate(bar) if i == 0 or s != bar[i - 1]]
            track = [chords_lib.NO_CHORD] + [changes[i * len(changes) // (events - 1)] for i in range(events - 1)]
            out += track * self.converter.max_num_instruments
        return out

    def _chord_controls(self, symbols):
        """One-hot control inputs [T, classes] of per-step chord symbols."""
        enc = self.chord_encoding
        out = np.zeros((len(symbols), enc.num_classes), np.float32)
        out[np.arange(len(symbols)), [enc.encode_event(s) for s in symbols]] = 1.0
        return out

    def _input_chords(self, ns, window, pointer):
        """Per-step chords of an input's window: its chord annotations, else inferred from its notes
        (note-seq's ``infer_chords_for_sequence``, what magenta's converter does without annotations)."""
        import note_seq

        spq = self.converter.steps_per_quarter
        try:
            q = sequences_lib.quantize_note_sequence(ns, spq)
            if not chords_lib.from_sequence(q):
                note_seq.infer_chords_for_sequence(q)
        except note_seq.ChordInferenceError as exc:
            raise Unprocessable(
                f"cannot infer chords from the input ({exc}); send `chords`", {"field": pointer}, code="unusable_input"
            ) from None
        kind = note_seq.NoteSequence.TextAnnotation.CHORD_SYMBOL
        changes = sorted((a.quantized_step, a.text) for a in q.text_annotations if a.annotation_type == kind)
        progression = chords_lib.parse_chords([{"symbol": t, "step": int(st)} for st, t in changes] or None)
        if progression is None:
            return [chords_lib.NO_CHORD] * self.steps
        progression.check(self.chord_encoding.encode_event, f"{self.spec.id}'s chord encoding")
        return progression.per_step(self.steps, start_step=window.start_step)

    def _streaming(self, qpm, chunks: int = 1, request=None) -> dict:
        """``{"on_step": reporter}`` for the engine's sample when a streaming client listens and the engine
        reports steps (the flat and general decoders; not GrooVAE's or the NADE drums'), else ``{}``."""
        if not progress.listening() or "on_step" not in inspect.signature(self.engine.sample).parameters:
            return {}
        return {"on_step": self._bar_reporter(qpm, chunks, request)}

    def _bar_reporter(self, qpm, chunks: int = 1, request=None):
        """An ``on_step`` for the engines: once a bar is decoded, the notes that start in it (as decoded
        so far: a note held into the next bar ends at the bar line here) go to :mod:`progress`. Long-form
        (``chunks`` > 1) decodes every chunk at once, so bar b of each chunk is done at the same step;
        its notes are shifted to the chunk's place in the piece, and bars past ``bars`` are left out."""
        steps_per_bar = self.converter.steps_per_bar
        step_s = 60.0 / (qpm * self.converter.steps_per_quarter)
        bars_per_chunk = self.steps // steps_per_bar if chunks > 1 else 0
        total_bars = int(request.params["bars"]) if chunks > 1 else 0

        def on_step(done: int, classes) -> None:
            if done % steps_per_bar:
                return
            bar = done // steps_per_bar - 1
            start, end = bar * steps_per_bar * step_s, done * step_s
            for row, seq in enumerate(self._sequences(classes[:, :done], qpm)):
                notes = [n for n in seq.notes if start - 1e-9 <= n.start_time < end - 1e-9]
                if chunks == 1:
                    progress.bar(row, bar, notes)
                    continue
                output, chunk = divmod(row, chunks)
                piece_bar = chunk * bars_per_chunk + bar
                if piece_bar >= total_bars:
                    continue
                shift = chunk * self.steps * step_s
                for n in notes:
                    n.start_time += shift
                    n.end_time += shift
                progress.bar(output, piece_bar, notes)

        return on_step

    def _sequences(self, classes, qpm):
        if classes.ndim == 3 and classes.shape[2] == 1:
            classes = classes[..., 0]
        seqs = self.converter.from_classes(classes, qpm=qpm)
        if self.converter.kind == "multitrack":  # one bar per window, whatever its events
            full = self._chunk_bars * self.converter.steps_per_bar * 60.0 / (qpm * self.converter.steps_per_quarter)
        else:
            full = classes.shape[1] * 60.0 / (qpm * self.converter.steps_per_quarter)
        for s in seqs:
            s.total_time = max(s.total_time, full)
        return seqs

    def _sample(self, request):
        chunks = self._chunks(request)
        if chunks > 1:
            z = self._long_z(request, chunks)
        else:
            z = request.rng.standard_normal((request.num_outputs, self.engine.z_size)).astype(np.float32)
        return z, {}

    def _interpolate(self, request):
        mu, _, used = self._encode_inputs(request.inputs, request)
        z = np.stack([slerp(mu[0], mu[1], t) for t in np.linspace(0.0, 1.0, request.num_outputs)])
        return z.astype(np.float32), {"inputs_used": used}

    def _similar(self, request):
        raw = request.inputs if request.inputs else [request.primer]
        mu, _, used = self._encode_inputs(raw, request, pointer="/inputs" if request.inputs else "/primer")
        similarity = float(request.params.get("similarity", DEFAULT_SIMILARITY))
        noise = request.rng.standard_normal((request.num_outputs, self.engine.z_size)).astype(np.float32)
        z = similarity * mu[0] + (1.0 - similarity) * noise
        return z.astype(np.float32), {"similarity": similarity, "inputs_used": used}

    def _encode(self, request):
        raw = request.inputs if request.inputs else [request.primer]
        mu, sigma, used = self._encode_inputs(raw, request, pointer="/inputs" if request.inputs else "/primer")
        z = mu + sigma * request.rng.standard_normal(mu.shape).astype(np.float32)
        return GenerateResult(
            [],
            {
                "z": z.tolist(),
                "mu": mu.tolist(),
                "sigma": sigma.tolist(),
                "z_size": self.engine.z_size,
                "inputs_used": used,
            },
        )

    def _decode(self, request):
        z = request.params["z"]
        bad = [i for i, v in enumerate(z) if len(v) != self.engine.z_size]
        if bad:
            raise Unprocessable(
                f"z vectors must have {self.engine.z_size} numbers; item {bad[0]} has {len(z[bad[0]])}",
                {"field": f"/z/{bad[0]}", "z_size": self.engine.z_size},
            )
        arr = np.asarray(z, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise Unprocessable("z vectors must be finite numbers", {"field": "/z"})
        return arr, {}

    # -- inputs ---------------------------------------------------------------------------------
    def _encode_inputs(self, raw_inputs, request, pointer="/inputs"):
        """Parse, check and convert each input to its first window; encode them in one batch.
        Returns (mu, sigma, what was used per input)."""
        xs, used, controls = [], [], []
        given = self._request_chords(request, self.steps, required=False)
        strict = request.params.get("strict_inputs", True)
        choices = request.params.get("instrument")
        for i, raw in enumerate(raw_inputs):
            where = f"{pointer}/{i}" if pointer == "/inputs" else pointer
            ns = _normalize_input(parse_sequence(raw, where))
            choice = choices[i] if isinstance(choices, list) else choices
            ns, windows = self._part(ns, choice, where)
            if strict and isinstance(self.converter, MelodyConverter):
                self._check_melody(ns, where)
            if not windows:
                on = f"instrument {choice}: " if choice is not None else ""
                raise Unprocessable(
                    f"cannot use input: {on}{self.converter.explain(ns)}",
                    {"field": where, "converter": self.converter.kind, "steps": self.converter.num_steps},
                    code="unusable_input",
                )
            w = windows[0]
            x, _ = self.converter.encode_window(w)
            xs.append(x)
            if self.chord_encoding is not None and self.converter.kind == "multitrack":
                # the converter's per-event chords (annotations, else inferred), or the request's
                mt = self._multitrack_symbols(request, 1) if given else None
                controls.append(self._chord_controls(mt) if mt else w.controls)
            elif self.chord_encoding is not None:
                controls.append(self._chord_controls(given or self._input_chords(ns, w, where)))
            used.append({"windows": len(windows), "piece": w.piece, "start_step": w.start_step, **_named(ns, w)})
        if self.chord_encoding is not None:
            mu, sigma = self.engine.encode(np.stack(xs), controls=np.stack(controls))
        else:
            mu, sigma = self.engine.encode(np.stack(xs))
        return mu, sigma, used

    def _part(self, ns, choice, where):
        """The part of an input the model takes, and its windows in time order.

        Magenta's ``TrainedModel.encode`` refuses any input that yields more than one example
        (MultipleExtractedExamplesError). The service takes the first 2-bar window of one part instead:
        the instrument the request names, else the only instrument with a usable melody. Drum notes of
        every instrument form one kit, as Magenta's drum extraction merges them. A melody input with
        usable windows on several instruments is ambiguous (which line is the melody?) and refused."""
        present = sorted({n.instrument for n in ns.notes})
        if choice is not None:
            if choice not in present:
                raise Unprocessable(
                    f"the input has no notes on instrument {choice}; its instruments are {present}",
                    {"field": where, "instruments": present},
                    code="unusable_input",
                )
            ns = _only_instrument(ns, choice)
            return ns, self.converter.windows(ns)
        windows = self.converter.windows(ns)
        parts = sorted({w.instrument for w in windows if w.instrument is not None})
        if len(parts) > 1:
            options = [_describe(ns, k, [w for w in windows if w.instrument == k]) for k in parts]
            raise Unprocessable(
                f"the input has a usable melody on {len(parts)} instruments ({'; '.join(o['text'] for o in options)}); "
                'send "instrument": <number> to pick one (Magenta refuses an input with several examples)',
                {"field": where, "instruments": [{k: v for k, v in o.items() if k != "text"} for o in options]},
                code="ambiguous_input",
            )
        if parts and len(present) > 1:  # one usable part among others: check and encode that part alone
            return _only_instrument(ns, parts[0]), windows
        return ns, windows

    def _check_melody(self, ns, where):
        """Refuse what magenta would silently drop: notes out of the model's range, and chords."""
        conv = self.converter
        pitched = [n for n in ns.notes if not n.is_drum]
        out = sorted({n.pitch for n in pitched if not conv.min_pitch <= n.pitch <= conv.max_pitch})
        if out:
            raise Unprocessable(
                f"pitches {out[:8]} are outside this model's range {conv.min_pitch}..{conv.max_pitch}",
                {"field": where, "min_pitch": conv.min_pitch, "max_pitch": conv.max_pitch},
                code="unusable_input",
            )
        try:
            q = sequences_lib.quantize_note_sequence(ns, conv.steps_per_quarter)
        except Exception:  # the converter reports quantization problems itself
            return
        onsets = {}
        for n in q.notes:
            if n.is_drum or n.velocity == 0:
                continue
            onsets.setdefault((n.instrument, n.quantized_start_step), []).append(n.pitch)
        chords = [(step, inst, sorted(p)) for (inst, step), p in sorted(onsets.items()) if len(p) > 1]
        if chords:
            step, inst, pitches = min(chords)
            on = f" on instrument {inst}" if len({i for i, _ in onsets}) > 1 else ""
            raise Unprocessable(
                f"polyphonic input: {len(chords)} step(s) start several notes at once (first at 16th step "
                f"{step}{on}: pitches {pitches}); this melody model needs one note at a time "
                f"(send strict_inputs=false to keep only the highest, as magenta does)",
                {"field": where},
                code="unusable_input",
            )


def slerp(p0, p1, t):
    """Spherical interpolation as magenta's ``_slerp``; straight line when p0, p1 are parallel."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    cos = np.dot(p0 / np.linalg.norm(p0), p1 / np.linalg.norm(p1))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    so = np.sin(omega)
    if so < 1e-8:
        return (1.0 - t) * p0 + t * p1
    return np.sin((1.0 - t) * omega) / so * p0 + np.sin(t * omega) / so * p1


def _only_instrument(ns, instrument):
    """A copy of ``ns`` with the notes of one instrument (tempos, time signatures and times kept)."""
    out = type(ns)()
    out.CopyFrom(ns)
    del out.notes[:]
    out.notes.extend(n for n in ns.notes if n.instrument == instrument)
    return out


def _instrument_info(ns, instrument):
    """(program, name) of an instrument: its notes' program and its MIDI track name, if any."""
    program = next((n.program for n in ns.notes if n.instrument == instrument), None)
    name = next((i.name for i in ns.instrument_infos if i.instrument == instrument and i.name), None)
    return program, name


def _named(ns, window) -> dict:
    """Which instrument a window came from, for ``inputs_used``."""
    instrument = window.instrument
    if instrument is None and len(window.instruments) == 1:
        instrument = window.instruments[0]
    program, name = _instrument_info(ns, instrument) if instrument is not None else (None, None)
    return {"instrument": instrument, "instruments": list(window.instruments), "program": program, "name": name}


def _describe(ns, instrument, windows) -> dict:
    program, name = _instrument_info(ns, instrument)
    label = f"{instrument}" + (f" {name!r}" if name else "") + f" (program {program})"
    text = f"{label}: {len(windows)} window(s) from step {windows[0].start_step}"
    return {
        "instrument": instrument,
        "program": program,
        "name": name,
        "windows": len(windows),
        "start_step": windows[0].start_step,
        "text": text,
    }


def _normalize_input(ns):
    """Make Magenta.js-style input usable: quantized-only sequences (steps, no times) get times, and
    notes without a velocity (proto default 0, which note-seq would skip) get 100."""
    for n in ns.notes:
        if n.velocity == 0:
            n.velocity = 100
    steps = ns.quantization_info.steps_per_quarter
    if steps and ns.notes and all(n.end_time == 0 for n in ns.notes):
        qpm = ns.tempos[0].qpm if ns.tempos else 120.0
        sps = 60.0 / (qpm * steps)
        for n in ns.notes:
            n.start_time = n.quantized_start_step * sps
            n.end_time = n.quantized_end_step * sps
        ns.total_time = max(n.end_time for n in ns.notes)
    if ns.HasField("quantization_info"):  # our converters quantize themselves, from the times
        ns.ClearField("quantization_info")
        ns.total_quantized_steps = 0
        for n in ns.notes:
            n.quantized_start_step = n.quantized_end_step = 0
    return ns
