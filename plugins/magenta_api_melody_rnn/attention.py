"""Magenta's ``AttentionCellWrapper`` (magenta.contrib.rnn, from tf.contrib.rnn) in NumPy.

The wrapper keeps the last ``attn_length`` outputs. Each step it mixes the input with the previous
attention read (``attention_cell_wrapper/kernel``), runs the wrapped cell(s), scores the stored
outputs against the cells' flattened state (Bahdanau: ``v . tanh(W h_i + U q)``; the 1x1 ``attn_w``
convolution is a matmul), reads their softmax-weighted sum and projects
``[cell output, read]`` (``attn_output_projection``) into the new output, which is also pushed
into the window.

Since the window only shifts, the ``attn_w`` features of every stored output are kept in the state
too, so each step projects one new vector instead of ``attn_length``.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class AttentionWeights:
    in_kernel: np.ndarray  # [input + attn_size, input]: attention_cell_wrapper/kernel
    in_bias: np.ndarray
    attn_w: np.ndarray  # [attn_size, attn_vec]: attention/attn_w[0, 0]
    attn_v: np.ndarray  # [attn_vec]
    query_kernel: np.ndarray  # [state size, attn_vec]: attention/kernel
    query_bias: np.ndarray
    out_kernel: np.ndarray  # [cell output + attn_size, attn_size]: attn_output_projection/kernel
    out_bias: np.ndarray


class Attention:
    """The wrapper's weights and its attention read; the caller projects the wrapped cells' input
    (``in_x``, ``in_a``, ``in_bias``) and runs the cells before :meth:`read`."""

    def __init__(self, w: AttentionWeights, attn_length: int):
        if attn_length <= 0:
            raise ValueError("attention weights present but attn_length is not set")
        self.length = int(attn_length)
        self.size = w.attn_w.shape[0]
        self.vec = w.attn_w.shape[1]
        n_in = w.in_kernel.shape[0] - self.size
        self.in_x = np.ascontiguousarray(w.in_kernel[:n_in])
        self.in_a = np.ascontiguousarray(w.in_kernel[n_in:])
        self.in_bias = w.in_bias
        self.attn_w = np.ascontiguousarray(w.attn_w)
        self.attn_v = w.attn_v
        self.query_kernel = w.query_kernel
        self.query_bias = w.query_bias
        n_out = w.out_kernel.shape[0] - self.size
        self.out_h = np.ascontiguousarray(w.out_kernel[:n_out])
        self.out_a = np.ascontiguousarray(w.out_kernel[n_out:])
        self.out_bias = w.out_bias
        self.input_size = n_in
        # Scores are v . tanh(...), so |score| <= sum|v|: below 80, exp() neither overflows float32 (nor
        # does a sum of up to 1000 of them) nor underflows to 0, so a softmax may skip subtracting the
        # maximum (the same value up to rounding, one NumPy call less; EventRnn._plan decides).
        self.scores_bounded = bool(np.abs(self.attn_v).sum() < 80.0 and self.length <= 1000)

    def zero_state(self, batch: int):
        """(attns [B, A], window [B, L, A], window features [B, L, V]) all zero."""
        return (
            np.zeros((batch, self.size), np.float32),
            np.zeros((batch, self.length, self.size), np.float32),
            np.zeros((batch, self.length, self.vec), np.float32),
        )

    def read(self, query, cell_output, window, feats):
        """Attend over the window with ``query`` (the wrapped cells' flattened new state).
        Returns (output, new attns, new window, new features)."""
        y = query @ self.query_kernel
        y += self.query_bias
        t = feats + y[:, None, :]
        np.tanh(t, out=t)
        s = t @ self.attn_v  # [B, L] scores
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        attns = (s[:, None, :] @ window)[:, 0]  # softmax-weighted sum of the window
        output = cell_output @ self.out_h
        output += attns @ self.out_a
        output += self.out_bias
        window = np.concatenate([window[:, 1:], output[:, None, :]], axis=1)
        feats = np.concatenate([feats[:, 1:], (output @ self.attn_w)[:, None, :]], axis=1)
        return output, attns, window, feats
