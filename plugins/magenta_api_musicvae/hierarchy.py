"""MusicVAE's general architecture on NumPy: hierarchical encoders and decoders (conductors), several
output splits (trio), control inputs (chords), as magenta 2.1.4's ``lstm_models`` builds them.

Variable layout (what the weights say, so TF checkpoints and Magenta.js manifests load alike):

* encoder: ``encoder/cell_<i>/bidirectional_rnn/{fw,bw}/...`` (``BidirectionalLstmEncoder``), or one
  such stack per level under ``encoder/hierarchical_level_<l>/`` (``HierarchicalLstmEncoder``: level 0
  encodes each segment of the input, level l+1 the sequence of level l's embeddings); then
  ``encoder/mu`` and ``encoder/sigma`` (softplus). The encoder reads [inputs; controls].
* conductor: ``decoder/hierarchical_level_<l>/`` with ``initial_state`` (tanh dense of its input, split
  into (c, h) per layer) and ``cell_<k>/lstm_cell`` layers. Without autoregression
  (``disable_autoregression``, every published config) its input at each step is a single 0; with it,
  [the lower level's final state (flattened c, h per layer); the level's own initial input].
* core decoders: ``CategoricalLstmDecoder`` under ``decoder/`` (flat), ``core_decoder/decoder/``
  (under a conductor), ``[core_decoder/]core_decoder_<i>/decoder/`` (``SplitMultiOutLstmDecoder``,
  one per output split). Each gets ``z`` (or its conductor embedding) through ``z_to_initial_state``
  and reads [previous output one-hot; z; control] per step. One core with several output splits is
  ``MultiOutCategoricalLstmDecoder`` (flat-trio_16bar): one softmax per split.

Decoding follows ``HierarchicalLstmDecoder.sample``: depth first, each segment's core decoder starts
from the last output of the segment before. Sampling draws Gumbel noise from the request's rng (the
same draw on every batch size); temperature 0 is argmax, per split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from magenta_api import deadline, nn
from magenta_api.nn import WeightsError

__all__ = ["CoreDecoder", "Encoder", "VAEModel", "WeightsError", "is_general"]

_BIDI = r"cell_(\d+)/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel$"


def is_general(variables: Mapping) -> bool:
    """Whether a checkpoint needs this module: a conductor, a hierarchical encoder or split decoders
    (the flat 2-bar ones run on :mod:`.engine`)."""
    return any(
        k.startswith(("decoder/hierarchical_level_", "encoder/hierarchical_level_", "core_decoder")) for k in variables
    )


def _cell(variables, scope):
    return nn.LSTMCell(*nn.kernel_and_bias(variables, scope + "/lstm_cell/"))


def _numbered(variables, pattern) -> list[int]:
    rx = re.compile(pattern)
    found = sorted({int(m.group(1)) for k in variables if (m := rx.match(k))})
    if found != list(range(len(found))):
        raise WeightsError(f"layers {found} are not numbered 0..n-1")
    return found


def _initial_state(kernel, bias, units, x):
    """``lstm_utils.initial_cell_state_from_embedding``: tanh(dense(x)) split into (c, h) per layer."""
    flat = np.tanh(x @ kernel + bias)
    states, at = [], 0
    for n in units:
        states.append((flat[:, at : at + n].copy(), flat[:, at + n : at + 2 * n].copy()))
        at += 2 * n
    return states


class _BidiStack:
    """Stacked bidirectional LSTM layers under ``prefix``; :meth:`final` is [h fw; h bw] of the top layer."""

    def __init__(self, variables, prefix):
        layers = _numbered(variables, "^" + re.escape(prefix) + _BIDI)
        if not layers:
            raise WeightsError(f"no bidirectional LSTM layers under {prefix!r}")
        self.layers = [
            tuple(
                nn.MultiLSTM([_cell(variables, f"{prefix}cell_{i}/bidirectional_rnn/{d}/multi_rnn_cell/cell_0")])
                for d in ("fw", "bw")
            )
            for i in layers
        ]
        self.input_size = self.layers[0][0].cells[0].input_size
        self.output_size = 2 * self.layers[-1][0].units

    def final(self, x, lengths=None):
        for fw, bw in self.layers:
            (out_fw, out_bw), (st_fw, st_bw) = nn.bidirectional(fw, bw, x, lengths)
            x = np.concatenate([out_fw, out_bw], axis=-1)
        return np.concatenate([st_fw[-1].h, st_bw[-1].h], axis=-1)


class Encoder:
    """``BidirectionalLstmEncoder`` or ``HierarchicalLstmEncoder`` plus the mu/sigma layers.
    ``level_lengths`` (hierarchical only): segment length at level 0, then how many embeddings each
    higher level reads; their product is the input length."""

    def __init__(self, variables, level_lengths: Sequence[int] | None = None):
        levels = _numbered(variables, r"^encoder/hierarchical_level_(\d+)/")
        if levels:
            self.levels = [_BidiStack(variables, f"encoder/hierarchical_level_{lv}/") for lv in levels]
        else:
            self.levels = [_BidiStack(variables, "encoder/")]
        self.hierarchical = bool(levels)
        self.level_lengths = list(level_lengths) if level_lengths else None
        if self.hierarchical and (not self.level_lengths or len(self.level_lengths) != len(self.levels)):
            raise WeightsError(
                f"a hierarchical encoder of {len(self.levels)} levels needs {len(self.levels)} level lengths, "
                f"got {self.level_lengths}"
            )
        self.mu_k, self.mu_b = nn.kernel_and_bias(variables, "encoder/mu/")
        self.sigma_k, self.sigma_b = nn.kernel_and_bias(variables, "encoder/sigma/")
        self.input_size = self.levels[0].input_size  # inputs + controls
        self.z_size = self.mu_k.shape[1]

    def embed(self, x, lengths=None):
        """The encoder's output [B, N] for inputs [B, T, input_size]. ``lengths``: [B] (flat), or [B,
        segments] for the hierarchical encoder's first level (magenta's per-segment lengths, as the
        multitrack tracks have); ``"rows"`` infers them from the rows that are not all zero."""
        if isinstance(lengths, str):
            lengths = self._row_lengths(x)
        if not self.hierarchical:
            return self.levels[0].final(x, lengths)
        assert self.level_lengths is not None
        batch, steps = x.shape[:2]
        want = int(np.prod(self.level_lengths))
        if steps != want:
            raise ValueError(
                f"a hierarchical encoder of level lengths {self.level_lengths} reads {want} steps, not {steps}"
            )
        splits = steps
        for i, (level, length) in enumerate(zip(self.levels, self.level_lengths)):
            splits //= length
            segments = x.reshape(batch * splits, length, x.shape[-1])  # segment k of row b is row b*splits+k
            seg_lengths = None if i or lengths is None else np.asarray(lengths).reshape(batch * splits)
            x = level.final(segments, seg_lengths).reshape(batch, splits, level.output_size)
        return x[:, 0]

    def _row_lengths(self, x):
        """Per-segment lengths (hierarchical) or per-row lengths (flat): up to the last row that is not
        all zero (padding is zero rows)."""
        seg = self.level_lengths[0] if self.hierarchical and self.level_lengths else x.shape[1]
        live = np.abs(x).sum(-1).reshape(x.shape[0], -1, seg) > 0
        last = np.where(live.any(-1), seg - np.argmax(live[..., ::-1], axis=-1), 0)
        return last if self.hierarchical else last[:, 0]

    def encode(self, x, lengths=None):
        enc = self.embed(np.asarray(x, np.float32), lengths)
        mu = enc @ self.mu_k + self.mu_b
        sigma = nn.softplus(enc @ self.sigma_k + self.sigma_b).astype(np.float32)
        return mu, sigma


FUSE_LIMIT = 256 << 20  # bytes of decoder kernels up to which the fused copies are made
SGEMM_MIN = 7  # rows from which a decoder step's products run as one sgemm (nn.matmul's gemv per row below)


def _product(x, w):
    """``x @ w`` for a decoder step's batch: ``nn.matmul`` (one gemv per row for 2..6 rows), from
    ``SGEMM_MIN`` rows one sgemm on the batch padded with zero rows to a multiple of 8. On OpenBLAS's
    AVX2 kernels 8 rows of a [1024, 4096] kernel (the trio's) run 1.3x faster as one sgemm than as
    gemv per row, and 7 rows 1.5x slower than 8."""
    rows = x.shape[0]
    if rows < SGEMM_MIN:
        return nn.matmul(x, w)
    pad = -rows % 8
    if not pad:
        return np.matmul(x, w)
    return np.matmul(np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]), w)[:rows]


class _MappedLayer:
    """One LSTM layer stepping on the checkpoint's own arrays (views of its memory map): no fused copy,
    for decoders too big to hold twice (trio_16bar_xl). Same interface as ``nn.FusedLSTM``."""

    def __init__(self, cell: nn.LSTMCell):
        self.cell, self.units, self.w_x, self.bias = cell, cell.units, cell.w_x, cell.bias

    def step(self, part, c, h):
        g = nn.matmul(h, self.cell.w_h)
        g += part
        state = self.cell._gates_to_state(g, c)
        return state.c, state.h


class CoreDecoder:
    """One ``CategoricalLstmDecoder`` (or ``MultiOutCategoricalLstmDecoder``: several ``splits``) under
    ``prefix``. Layer 0 reads [previous one-hot (depth); z (z_size); control (the rest)]. Up to
    ``fuse_limit`` bytes of kernels it steps on the kit's fused kernels (a copy); above, on the
    checkpoint's arrays themselves, so a memory-mapped checkpoint stays mapped."""

    def __init__(
        self, variables, prefix, z_size: int, splits: Sequence[int] | None = None, fuse_limit: int = FUSE_LIMIT
    ):
        layers = _numbered(variables, "^" + re.escape(prefix) + r"multi_rnn_cell/cell_(\d+)/lstm_cell/kernel$")
        if not layers:
            raise WeightsError(f"no decoder LSTM layers under {prefix!r}")
        self.cells = [_cell(variables, f"{prefix}multi_rnn_cell/cell_{k}") for k in layers]
        self.init_k, self.init_b = nn.kernel_and_bias(variables, prefix + "z_to_initial_state/")
        self.out_k, self.out_b = nn.kernel_and_bias(variables, prefix + "output_projection/")
        self.depth = self.out_k.shape[1]
        self.splits = list(splits) if splits else [self.depth]
        if sum(self.splits) != self.depth:
            raise WeightsError(f"{prefix}: output splits {self.splits} do not add up to {self.depth} classes")
        self.z_size = z_size
        self.control_size = self.cells[0].input_size - self.depth - z_size
        if self.control_size < 0:
            raise WeightsError(
                f"{prefix}: decoder input size {self.cells[0].input_size} < outputs {self.depth} + z {z_size}"
            )
        self.units = [c.units for c in self.cells]
        if self.init_k.shape != (z_size, 2 * sum(self.units)):
            raise WeightsError(f"{prefix}z_to_initial_state does not match the decoder layers")
        self.fused = sum(c.w_x.nbytes + c.w_h.nbytes for c in self.cells) <= fuse_limit
        self.layers: list = [nn.FusedLSTM(c) if self.fused else _MappedLayer(c) for c in self.cells]
        w0 = self.layers[0].w_x
        self.w_prev, self.w_z, self.w_ctl = (
            w0[: self.depth],
            w0[self.depth : self.depth + z_size],
            w0[self.depth + z_size :],
        )
        self.offsets = np.cumsum([0, *self.splits[:-1]])

    def start(self, z):
        """(layer 0's per-row constant [B, 4H], the initial (c, h) per layer) for embedding ``z``."""
        return z @ self.w_z + self.layers[0].bias, _initial_state(self.init_k, self.init_b, self.units, z)

    def step(self, const, states, prev, control=None):
        """Logits [B, depth] and the new states; ``prev`` [B, splits] (classes, -1 for none)."""
        part = const.copy()
        for k, off in enumerate(self.offsets):
            live = prev[:, k] >= 0
            if live.all():
                part += self.w_prev[prev[:, k] + off]
            elif live.any():
                part[live] += self.w_prev[prev[live, k] + off]
        if control is not None and self.control_size:
            part += control @ self.w_ctl
        new, x = [], None
        sgemm = self.fused and len(prev) >= SGEMM_MIN
        for k, (lay, (c, h)) in enumerate(zip(self.layers, states)):
            if k:
                part = _product(x, lay.w_x)
                part += lay.bias
            if sgemm:  # FusedLSTM.step with the product chosen here
                g = _product(h, lay.w_h)
                g += part
                c, x = nn.fused_lstm_update(g, c, lay.units)
            else:
                c, x = lay.step(part, c, h)
            new.append((c, x))
        logits = _product(x, self.out_k)
        logits += self.out_b
        return logits, new

    def pick(self, logits, noise=None):
        """Classes [B, splits]: argmax per split of logits (+ Gumbel noise when sampling)."""
        if noise is not None:
            logits = logits + noise
        return np.stack([logits[:, o : o + d].argmax(-1) for o, d in zip(self.offsets, self.splits)], axis=-1)


class _Conductor:
    """One level of ``HierarchicalLstmDecoder``'s conductor: a MultiRNNCell with its initial state."""

    def __init__(self, variables, level):
        prefix = f"decoder/hierarchical_level_{level}/"
        layers = _numbered(variables, "^" + re.escape(prefix) + r"cell_(\d+)/lstm_cell/kernel$")
        if not layers:
            raise WeightsError(f"no conductor LSTM layers under {prefix!r}")
        self.lstm = nn.MultiLSTM([_cell(variables, f"{prefix}cell_{k}") for k in layers])
        self.init_k, self.init_b = nn.kernel_and_bias(variables, prefix + "initial_state/")
        self.units = [c.units for c in self.lstm.cells]
        self.input_size = self.lstm.cells[0].input_size

    def initial(self, x):
        return [nn.LSTMState(c, h) for c, h in _initial_state(self.init_k, self.init_b, self.units, x)]


class _Enough(Exception):
    """Raised inside the depth-first decode once the requested number of steps is out."""


class VAEModel:
    """Encoder and decoder of any MusicVAE in the variables: flat, conductor (``level_lengths``: steps per
    conductor level then the core decoder's segment length), split or multi-out outputs (``splits``),
    control inputs. ``autoregressive``: the conductor levels that read the lower level's final state
    (magenta's default; every published config disables it)."""

    def __init__(
        self,
        variables: Mapping[str, np.ndarray],
        level_lengths: Sequence[int] | None = None,
        encoder_level_lengths: Sequence[int] | None = None,
        splits: Sequence[int] | None = None,
        autoregressive: Sequence[int] = (),
        fuse_limit: int = FUSE_LIMIT,
        padded_segments: bool = False,
    ):
        self.padded_segments = padded_segments  # multitrack: segments end early, padded with zero rows
        conductor = _numbered(variables, r"^decoder/hierarchical_level_(\d+)/")
        self.conductor = [_Conductor(variables, lv) for lv in conductor]
        if self.conductor and (not level_lengths or len(level_lengths) != len(self.conductor) + 1):
            raise WeightsError(
                f"a decoder with {len(self.conductor)} conductor level(s) needs {len(self.conductor) + 1} "
                f"level lengths, got {level_lengths}"
            )
        self.level_lengths = list(level_lengths) if self.conductor and level_lengths else []
        if encoder_level_lengths is None and self.level_lengths:
            encoder_level_lengths = self.level_lengths[::-1]  # as every hierarchical config pairs them
        self.encoder = Encoder(variables, encoder_level_lengths)
        self.z_size = self.encoder.z_size
        emb = self.conductor[-1].units[-1] if self.conductor else self.z_size
        root = "core_decoder/" if self.conductor else ""
        split_ids = _numbered(variables, "^" + re.escape(root) + r"core_decoder_(\d+)/decoder/")
        if split_ids:
            if splits is not None and len(splits) != len(split_ids):
                raise WeightsError(f"{len(split_ids)} split decoders but output splits {list(splits)}")
            self.cores = [
                CoreDecoder(variables, f"{root}core_decoder_{i}/decoder/", emb, fuse_limit=fuse_limit)
                for i in split_ids
            ]
        else:
            self.cores = [CoreDecoder(variables, f"{root}decoder/", emb, splits, fuse_limit)]
        self.splits = [d for core in self.cores for d in core.splits]
        self.output_depth = sum(self.splits)
        self.control_size = self.cores[0].control_size
        self.input_depth = self.encoder.input_size - self.control_size
        self.autoregressive = set(autoregressive)
        for lv, cond in enumerate(self.conductor):
            want = 1
            if lv in self.autoregressive:
                below = (
                    sum(2 * u for u in self.cores[0].units) * len(self.cores)
                    if lv == len(self.conductor) - 1
                    else sum(2 * u for u in self.conductor[lv + 1].units)
                )
                want = below + (self.z_size if lv == 0 else self.conductor[lv - 1].units[-1])
            if cond.input_size != want:
                raise WeightsError(
                    f"conductor level {lv} reads {cond.input_size} inputs; "
                    f"{'with' if lv in self.autoregressive else 'without'} autoregression it would read {want}"
                )
        self.steps = int(np.prod(self.level_lengths)) if self.level_lengths else None
        self.segment = self.level_lengths[-1] if self.level_lengths else None

    # --- encoder ----------------------------------------------------------------------------------
    def encode(self, inputs, controls=None, lengths=None):
        """(mu, sigma) for inputs [B, T, input_depth] (and controls [B, T, control_size])."""
        x = np.asarray(inputs, np.float32)
        if lengths is None and self.padded_segments and x.ndim == 3:
            lengths = self.encoder._row_lengths(x)  # from the inputs: controls may fill the padding rows
        if controls is not None and self.control_size:
            x = np.concatenate([x, np.asarray(controls, np.float32)], axis=-1)
        if x.ndim != 3 or x.shape[2] != self.encoder.input_size:
            raise ValueError(f"expected inputs [batch, steps, {self.encoder.input_size}], got {x.shape}")
        return self.encoder.encode(x, lengths)

    # --- decoder ----------------------------------------------------------------------------------
    def _walk(self, z, base):
        """``HierarchicalLstmDecoder._hierarchical_decode``: depth first from z, ``base(embedding)``
        decodes one segment and returns the core decoder's final state (flattened)."""
        batch = z.shape[0]

        def rec(initial, level):
            if level == len(self.conductor):
                return base(initial)
            cond = self.conductor[level]
            states = cond.initial(initial)
            ar = level in self.autoregressive
            next_input = np.zeros((batch, cond.input_size - initial.shape[1]), np.float32) if ar else None
            for _ in range(self.level_lengths[level]):
                x = np.concatenate([next_input, initial], axis=1) if ar else np.zeros((batch, 1), np.float32)
                h, states = cond.lstm.step(x, states)
                next_input = rec(h, level + 1)
            return np.concatenate([a for s in states for a in (s.c, s.h)], axis=-1)

        try:
            rec(z, 0)
        except _Enough:
            pass

    def _run(self, z, length, choose, controls, on_step=None):
        """Decode ``length`` steps; ``choose(t, logits per core)`` returns the classes fed back [B, splits].
        ``on_step(done, classes)`` hears each decided step (streaming clients: bar by bar)."""
        batch = z.shape[0]
        seg = self.segment or length
        classes = np.empty((batch, length, len(self.splits)), np.int64)
        logits_out = np.empty((batch, length, self.output_depth), np.float32)
        prev = np.full((batch, len(self.splits)), -1, np.int64)
        done = [0]

        def base(emb):
            starts = [core.start(emb) for core in self.cores]
            states = [s for _, s in starts]
            for _ in range(seg):
                t = done[0]
                if t >= length:
                    break
                deadline.check()
                ctl = None if controls is None else controls[:, t]
                outs, at = [], 0
                for k, core in enumerate(self.cores):
                    n = len(core.splits)
                    lg, states[k] = core.step(starts[k][0], states[k], prev[:, at : at + n], ctl)
                    outs.append(lg)
                    at += n
                all_logits = np.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
                logits_out[:, t] = all_logits
                prev[:] = choose(t, all_logits)
                classes[:, t] = prev
                done[0] += 1
                if on_step is not None:
                    on_step(done[0], classes)
            if done[0] >= length:
                raise _Enough
            # the merged final state, flattened: per layer (c, h), each concatenated over the split decoders
            flat = []
            for per_core in zip(*states):
                flat += [np.concatenate([c for c, _ in per_core], -1), np.concatenate([h for _, h in per_core], -1)]
            return np.concatenate(flat, axis=-1)

        if self.conductor:
            self._walk(z, base)
        else:
            try:
                base(z)
            except _Enough:
                pass
        return classes, logits_out

    def _controls(self, controls, batch, length):
        if not self.control_size:
            return None
        if controls is None:  # the family requires chords; a warm-up or a probe decodes without
            return np.zeros((batch, length, self.control_size), np.float32)
        c = np.asarray(controls, np.float32)
        if c.ndim == 2:
            c = np.broadcast_to(c[None], (batch, *c.shape))
        if c.shape[1] < length or c.shape[2] != self.control_size:
            raise ValueError(f"expected controls [batch, >= {length}, {self.control_size}], got {c.shape}")
        return c

    def _check_length(self, length):
        if self.steps is not None and length > self.steps:
            raise ValueError(f"this model decodes at most {self.steps} steps")

    def decode_logits(self, z, targets, controls=None):
        """Teacher-forced logits [B, T, depth]: step t reads the classes of ``targets`` (one-hot
        [B, T, depth] over all splits) at t-1, across segment boundaries too."""
        z = np.asarray(z, np.float32)
        y = np.asarray(targets)
        length = y.shape[1]
        self._check_length(length)
        offsets = np.cumsum([0, *self.splits[:-1]])
        idx = np.stack([y[..., o : o + d].argmax(-1) for o, d in zip(offsets, self.splits)], -1)  # [B, T, S]
        idx[~(y != 0).any(-1)] = -1  # an all-zero (padding) row feeds zeros, as magenta's shifted inputs do
        _, logits = self._run(z, length, lambda t, lg: idx[:, t], self._controls(controls, z.shape[0], length))
        return logits

    def sample(self, z, length, temperature=1.0, rng=None, controls=None, return_logits=False, on_step=None):
        """Free-running decode of ``length`` steps: classes [B, length, splits] (and the logits);
        ``on_step(done, classes)`` after each step."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_size:
            raise ValueError(f"expected z [batch, {self.z_size}], got {z.shape}")
        if temperature and rng is None:
            raise ValueError("sampling with a temperature needs an rng")
        self._check_length(length)
        batch = z.shape[0]
        noise = None
        if temperature:
            u = rng.random((length, batch, self.output_depth), dtype=np.float32)
            np.maximum(u, np.finfo(np.float32).tiny, out=u)
            noise = -np.log(-np.log(u))
            scale = np.float32(1.0 / temperature)
        cores = self.cores

        def choose(t, logits):
            if noise is not None:
                logits = logits * scale + noise[t]
            out, at = [], 0
            for core in cores:
                out.append(core.pick(logits[:, at : at + core.depth]))
                at += core.depth
            return np.concatenate(out, axis=-1) if len(out) > 1 else out[0]

        classes, logits = self._run(z, length, choose, self._controls(controls, batch, length), on_step)
        return (classes, logits) if return_logits else classes
