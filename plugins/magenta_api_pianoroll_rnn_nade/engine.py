"""Magenta's RNN-NADE (``pianoroll_rnn_nade_graph``) in NumPy: the events RNN of the melody_rnn plugin
(LSTM stack, optionally attention) whose dense output layer gives, every step, the biases of the core
NADE (``magenta_api.nade``): ``[b_enc (nade_hidden) | b_dec (88)]``.

Magenta builds the RNN inside ``dynamic_decode``, so its variables live under ``decoder/``
(``decoder/multi_rnn_cell/...``, ``decoder/dense/``); :meth:`RnnNade.from_variables` reads them through
the events RNN's own layout (``rnn/...``, ``fully_connected/``) and the NADE from ``nade/``.
"""

from collections.abc import Mapping

import numpy as np

from magenta_api import nn
from magenta_api.nade import Nade
from magenta_api_melody_rnn.engine import EventRnn


def _as_events_rnn(variables: Mapping) -> dict:
    out = {}
    for name, value in variables.items():
        if name.startswith("decoder/dense/"):
            out["fully_connected/" + name[len("decoder/dense/") :]] = value
        elif name.startswith("decoder/"):
            out["rnn/" + name[len("decoder/") :]] = value
    return out


class RnnNade:
    """The RNN (``EventRnn``) and the NADE; ``biases(logits)`` splits the RNN's output into the NADE's."""

    def __init__(self, rnn: EventRnn, nade: Nade):
        if rnn.num_classes != nade.num_hidden + nade.num_dims:
            raise nn.WeightsError(
                f"the RNN's dense layer gives {rnn.num_classes} values; the NADE needs {nade.num_hidden} + "
                f"{nade.num_dims} biases"
            )
        if rnn.input_size != nade.num_dims:
            raise nn.WeightsError(f"the RNN reads {rnn.input_size} inputs; the NADE models {nade.num_dims} pitches")
        self.rnn, self.nade = rnn, nade
        self.num_dims, self.num_hidden = nade.num_dims, nade.num_hidden

    @classmethod
    def from_variables(cls, variables: Mapping, attn_length: int = 0) -> "RnnNade":
        rnn = EventRnn.from_variables(_as_events_rnn(variables), attn_length)
        return cls(rnn, Nade.from_variables(variables, "nade/"))

    def biases(self, out) -> tuple:
        """(b_enc [B, H], b_dec [B, D]) from the RNN's outputs [B, H + D]."""
        out = np.asarray(out, np.float32)
        return out[:, : self.num_hidden], out[:, self.num_hidden :]
