"""GrooVAE on NumPy: magenta 2.1.4's ``GrooveConverter`` (hits, velocities, offsets per drum class and
16th step) and ``GrooveLstmDecoder`` (a flat LSTM decoder whose outputs are continuous).

Tensors: per step, [hits (9) | velocities (9) | offsets (9)]; a hit is 0/1, a velocity is MIDI velocity
/ 127, an offset is twice the distance of the onset from its step, earlier positive (-1..1). The
converter's options are the configs' (``humanize``: the input loses velocities and offsets; ``tapify``:
every step's loudest hit moves to the open hi-hat class, the rest go; ``fixed_velocities``;
``add_instruments``: classes removed from the input; ``hits_as_controls``: the output's hits are the
decoder's control inputs). At inference magenta maps pitches with the 9 reduced classes
(``inference_pitch_classes``); a pitch outside them is left out, as Magenta.js does (magenta raises).

Decoding: the decoder reads [previous output (hits, sigmoid(velocities), tanh(offsets)); z; controls];
hits are Bernoulli draws of sigmoid(logits / temperature) from the request's rng, or logits > 0 at
temperature 0 (Magenta.js's argmax).

Paths (``path=`` on :meth:`GrooveModel.sample`, else :meth:`GrooveModel.path_for`): ``"reference"`` is
that arithmetic as written (``GrooveModel._run``, which teacher-forced decoding always takes);
``"rows"`` samples on buffers stepped in place (:class:`.groove_rows.RowDecoder`): the same numbers up
to float rounding, from the same draws.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Mapping

import note_seq
import numpy as np
from note_seq import drums_encoder_decoder, sequences_lib

from magenta_api import deadline, nn

from .converters import DEFAULT_QPM, Tensors
from .groove_rows import RowDecoder, thresholds
from .hierarchy import CoreDecoder, Encoder

__all__ = ["PATHS", "GrooveConverter", "GrooveModel", "GrooveWindow"]

PATHS = ("reference", "rows")

REDUCED_PITCH_CLASSES = [list(p) for p in drums_encoder_decoder.DEFAULT_DRUM_TYPE_PITCHES]
TAPIFY_CHANNEL = 3  # open hi-hat
_QUANTIZE_ERRORS = (
    note_seq.BadTimeSignatureError,
    note_seq.NonIntegerStepsPerBarError,
    note_seq.NegativeTimeError,
    note_seq.MultipleTimeSignatureError,
    note_seq.MultipleTempoError,
)


class GrooveWindow:
    """One window of a groove: encoder input, decoder target and controls ([T, 27], [T, 27], [T, c])."""

    def __init__(self, start_step, inputs, outputs, controls):
        self.piece, self.start_step = 0, start_step
        self.inputs, self.outputs, self.controls = inputs, outputs, controls
        self.instrument, self.instruments = None, (9,)


class GrooveConverter:
    """``GrooveConverter(split_bars, steps_per_quarter=4, quarters_per_bar=4, ...)`` in inference mode."""

    kind = "groove"

    def __init__(
        self,
        split_bars=2,
        steps_per_quarter=4,
        quarters_per_bar=4,
        max_tensors=20,
        humanize=False,
        tapify=False,
        add_instruments=(),
        hits_as_controls=False,
        fixed_velocities=False,
        pitch_classes=None,
    ):
        self.split_bars = split_bars
        self.steps_per_quarter = steps_per_quarter
        self.steps_per_bar = steps_per_quarter * quarters_per_bar
        self.num_steps = self.steps_per_bar * split_bars if split_bars else None
        self.max_tensors = max_tensors
        self.humanize, self.tapify, self.fixed_velocities = humanize, tapify, fixed_velocities
        self.add_instruments = list(add_instruments or ())
        self.hits_as_controls = hits_as_controls
        self.pitch_classes = [list(p) for p in (pitch_classes or REDUCED_PITCH_CLASSES)]
        self.pitch_class_map = {p: c for c, ps in enumerate(self.pitch_classes) for p in ps}
        self.num_drums = len(self.pitch_classes)
        self.input_depth = self.output_depth = 3 * self.num_drums
        self.control_depth = self.num_drums if hits_as_controls else 0

    # -- NoteSequence -> tensors ----------------------------------------------------------------
    def _quantize(self, ns):
        try:
            q = sequences_lib.quantize_note_sequence(ns, self.steps_per_quarter)
            if sequences_lib.steps_per_bar_in_quantized_sequence(q) != self.steps_per_bar:
                return None
        except _QUANTIZE_ERRORS:
            return None
        return q

    def _vectors(self, ns):
        """(hits, velocities, offsets) [steps, drums] of the whole sequence, or None."""
        q = self._quantize(copy.deepcopy(ns))
        if q is None:
            return None
        notes = [n for n in q.notes if n.pitch in self.pitch_class_map]
        if not notes:
            return None
        step_length = 60.0 / q.tempos[0].qpm / q.quantization_info.steps_per_quarter if q.tempos else 0.125
        by_step: dict = collections.defaultdict(lambda: collections.defaultdict(list))
        for n in notes:
            by_step[int(n.quantized_start_step)][self.pitch_class_map[n.pitch]].append(n)
        max_start = max(n.quantized_start_step for n in notes)
        max_step = self.steps_per_bar * int(np.ceil((max_start + 1) / self.steps_per_bar))
        hits, vels, offs = (np.zeros((max_step, self.num_drums)) for _ in range(3))
        for step in range(max_step):
            for drum, group in by_step[step].items():
                n = max(group, key=lambda n: n.velocity) if len(group) > 1 else group[0]
                hits[step, drum] = 1.0
                vels[step, drum] = n.velocity / 127.0
                offs[step, drum] = (step_length * n.quantized_start_step - n.start_time) / step_length * 2
        return hits, vels, offs

    def windows(self, ns) -> list[GrooveWindow]:
        v = self._vectors(ns)
        if v is None:
            return []
        hits, vels, offs = v
        max_step = len(hits)
        in_hits, in_vels, in_offs = hits.copy(), vels.copy(), offs.copy()
        if self.tapify:
            loudest = np.argmax(in_vels, axis=1)
            rows = np.arange(max_step)
            in_hits[:], in_vels[:], in_offs[:] = 0, 0, 0
            in_hits[:, TAPIFY_CHANNEL] = hits[rows, loudest]
            in_vels[:, TAPIFY_CHANNEL] = vels[rows, loudest]
            in_offs[:, TAPIFY_CHANNEL] = offs[rows, loudest]
        if self.humanize:
            in_vels[:], in_offs[:] = 0, 0
        if self.fixed_velocities:
            in_vels[:] = 0
        for k in self.add_instruments:
            in_hits[:, k] = in_vels[:, k] = in_offs[:, k] = 0
        out = np.concatenate([hits, vels, offs], 1).astype(np.float32)
        inp = np.concatenate([in_hits, in_vels, in_offs], 1).astype(np.float32)
        ctl = hits.astype(np.float32) if self.hits_as_controls else None
        size = self.num_steps or max_step
        return [
            GrooveWindow(a, inp[a : a + size], out[a : a + size], None if ctl is None else ctl[a : a + size])
            for a in range(0, max_step - size + 1, size)
        ]

    def to_tensors(self, ns) -> Tensors:
        w = self.windows(ns)
        if self.max_tensors:
            w = w[: self.max_tensors]
        t = Tensors([x.inputs for x in w], [x.outputs for x in w])
        t.controls = [x.controls for x in w]  # type: ignore[attr-defined]
        return t

    def encode_window(self, window: GrooveWindow):
        return window.inputs, window.outputs

    def explain(self, ns) -> str:
        if not any(n.pitch in self.pitch_class_map for n in ns.notes):
            return "the input has no drum hits on pitches of the 9 drum classes (General MIDI drum pitches)"
        if self._quantize(copy.deepcopy(ns)) is None:
            return f"the input cannot be cut into {self.steps_per_bar}-step bars: GrooVAE needs one 4/4 tempo"
        return f"the input is shorter than {self.split_bars} bars ({self.num_steps} sixteenth-note steps)"

    # -- tensors -> NoteSequence ----------------------------------------------------------------
    def from_outputs(self, outputs, qpm: float = DEFAULT_QPM) -> list:
        """NoteSequences from [B, T, 27] (hits, velocities 0..1, offsets -1..1), as ``from_tensors``:
        a hit > 0.5 is a note of the class's first pitch, velocity round(v * 127), onset
        (step - offset / 2) steps, one step long, on instrument 9."""
        out = []
        step_length = 60.0 / qpm / self.steps_per_quarter
        d = self.num_drums
        first_pitch = np.array([p[0] for p in self.pitch_classes])
        for sample in np.asarray(outputs, np.float64):
            ns = note_seq.NoteSequence(ticks_per_quarter=note_seq.STANDARD_PPQ)
            ns.tempos.add(qpm=qpm)
            steps, drums = np.nonzero(sample[:, :d] > 0.5)  # in (step, drum) order, as magenta loops
            vels = np.clip(np.round(sample[steps, d + drums] * 127), 0, 127).astype(int)
            starts = (steps - np.clip(sample[steps, 2 * d + drums] / 2, -0.5, 0.5)) * step_length
            ends = starts + step_length
            add_drum_notes(ns, first_pitch[drums], vels, starts, ends)
            ns.total_time = max(ends.max(initial=0.0), len(sample) * step_length)
            out.append(ns)
        return out


# One drum note in protobuf's wire format: NoteSequence field 8 (notes), length-delimited, holding
# Note.pitch (1) and velocity (2) as one-byte varints, start_time (3) and end_time (4) as doubles,
# instrument (7) = 9 and is_drum (9) = true.
_NOTE_WIRE = np.dtype(
    [
        ("key", "u1"),
        ("size", "u1"),
        ("pitch_key", "u1"),
        ("pitch", "u1"),
        ("velocity_key", "u1"),
        ("velocity", "u1"),
        ("start_key", "u1"),
        ("start", "<f8"),
        ("end_key", "u1"),
        ("end", "<f8"),
        ("instrument_key", "u1"),
        ("instrument", "u1"),
        ("drum_key", "u1"),
        ("drum", "u1"),
    ]
)


def add_drum_notes(ns, pitches, velocities, starts, ends) -> None:
    """Append drum notes (instrument 9, ``is_drum``) to ``ns``: the same message as one
    ``ns.notes.add(instrument=9, is_drum=True, pitch=..., velocity=..., start_time=..., end_time=...)``
    per note, parsed from their wire format in one call (a request's notes in microseconds, not one
    Python call each). Pitches and velocities must be 0..127 (one-byte varints)."""
    pitches, velocities = np.asarray(pitches), np.asarray(velocities)
    both = np.concatenate([pitches, velocities])
    if len(both) and not (both.min() >= 0 and both.max() < 128):
        raise ValueError("drum note pitches and velocities must be 0..127")
    rec = np.empty(len(pitches), _NOTE_WIRE)
    rec["key"], rec["size"] = 8 << 3 | 2, _NOTE_WIRE.itemsize - 2
    rec["pitch_key"], rec["pitch"] = 1 << 3, pitches
    rec["velocity_key"], rec["velocity"] = 2 << 3, velocities
    rec["start_key"], rec["start"] = 3 << 3 | 1, starts
    rec["end_key"], rec["end"] = 4 << 3 | 1, ends
    rec["instrument_key"], rec["instrument"] = 7 << 3, 9
    rec["drum_key"], rec["drum"] = 9 << 3, 1
    ns.MergeFromString(rec.tobytes())


class GrooveModel:
    """``BidirectionalLstmEncoder`` + ``GrooveLstmDecoder`` from the variables (Magenta's names)."""

    def __init__(self, variables: Mapping[str, np.ndarray]):
        self.encoder = Encoder(variables)
        self.z_size = self.encoder.z_size
        self.core = CoreDecoder(variables, "decoder/", self.z_size)
        self.output_depth = self.core.depth
        if self.output_depth % 3:
            raise nn.WeightsError(f"a GrooVAE decoder outputs hits, velocities and offsets; it has {self.output_depth}")
        self.drums = self.output_depth // 3
        self.control_size = self.core.control_size
        self.input_depth = self.encoder.input_size - self.control_size
        self.rows = RowDecoder(self.core) if self.core.fused else None

    def path_for(self, batch: int) -> str:
        """The sampling path when the caller names none: in place ("rows") whenever the decoder runs
        on its fused kernels."""
        return "rows" if self.rows is not None else "reference"

    def encode(self, inputs, controls=None):
        x = np.asarray(inputs, np.float32)
        if self.control_size:
            c = np.zeros((*x.shape[:2], self.control_size), np.float32) if controls is None else controls
            x = np.concatenate([x, np.asarray(c, np.float32)], axis=-1)
        return self.encoder.encode(x)

    def _controls(self, controls, batch, length):
        """Controls [B, length, control_size] (zeros when the decoder reads them and none are given),
        or None when it reads none."""
        if not self.control_size:
            return None
        if controls is None:
            return np.zeros((batch, length, self.control_size), np.float32)
        c = np.asarray(controls, np.float32)
        c = np.broadcast_to(c, (batch, *c.shape[-2:])) if c.ndim == 2 else c
        return c[:, :length]

    def _run(self, z, length, controls, feed):
        """Decoder outputs [B, T, 27] (raw); ``feed(t, raw)`` gives the vector fed back at t + 1."""
        z = np.asarray(z, np.float32)
        batch = z.shape[0]
        const, states = self.core.start(z)
        if self.control_size:
            c = np.zeros((length, self.control_size), np.float32) if controls is None else np.asarray(controls)
            c = np.broadcast_to(c, (batch, *c.shape[-2:])) if c.ndim == 2 else c
        raw = np.empty((batch, length, self.output_depth), np.float32)
        prev = np.zeros((batch, self.output_depth), np.float32)
        w_prev = self.core.w_prev
        for t in range(length):
            deadline.check()
            part = const + prev @ w_prev
            if self.control_size:
                part += c[:, t] @ self.core.w_ctl
            new, x = [], None
            for k, (lay, (cc, h)) in enumerate(zip(self.core.layers, states)):
                cc, x = lay.step(part, cc, h) if k == 0 else lay.step_xh(x, cc, h)
                new.append((cc, x))
            states = new
            out = nn.matmul(x, self.core.out_k)
            out += self.core.out_b
            raw[:, t] = out
            prev = feed(t, out)
        return raw

    def decode_outputs(self, z, targets, controls=None):
        """Teacher-forced raw outputs [B, T, 27]: step t reads ``targets`` [B, T, 27] at t - 1."""
        y = np.asarray(targets, np.float32)
        return self._run(z, y.shape[1], controls, lambda t, out: y[:, t])

    def sample(self, z, length, temperature=0.0, rng=None, controls=None, return_raw=False, path=None):
        """[B, length, 27]: hits (0/1), velocities (0..1), offsets (-1..1) as the decoder feeds them back.
        ``path``: one of :data:`PATHS` (default :meth:`path_for`); every path draws the same numbers."""
        if temperature and rng is None:
            raise ValueError("sampling with a temperature needs an rng")
        path = path or self.path_for(np.shape(z)[0])
        if path not in PATHS or (path == "rows" and self.rows is None):
            raise ValueError(f"sampling path {path!r}: expected one of {PATHS} ('rows' needs the fused kernels)")
        d = self.drums
        draws = rng.random((length, np.shape(z)[0], d)) if temperature else None
        if path == "rows":
            assert self.rows is not None
            thr = np.zeros((length, np.shape(z)[0], d)) if draws is None else thresholds(draws, temperature)
            outputs, raw = self.rows.sample(z, length, thr, self._controls(controls, np.shape(z)[0], length))
            return (outputs, raw) if return_raw else outputs
        outputs = np.empty((np.shape(z)[0], length, self.output_depth), np.float32)

        def feed(t, out):
            logits = out[:, :d]
            if draws is None:
                hits = (logits > 0).astype(np.float32)
            else:
                hits = (draws[t] < 1.0 / (1.0 + np.exp(-logits / temperature))).astype(np.float32)
            vec = np.concatenate([hits, 1.0 / (1.0 + np.exp(-out[:, d : 2 * d])), np.tanh(out[:, 2 * d :])], 1)
            outputs[:, t] = vec
            return vec.astype(np.float32)

        raw = self._run(z, length, controls, feed)
        return (outputs, raw) if return_raw else outputs
