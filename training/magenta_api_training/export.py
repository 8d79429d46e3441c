"""Export trained PyTorch weights under Magenta's variable names and shapes (safetensors, float32).

TF's LSTMCell keeps one kernel ``[input + units, 4 * units]`` applied to ``concat([x, h])`` with
gate columns i, j, f, o and adds ``forget_bias`` (1.0) to f when it runs. torch keeps
``weight_ih [4u, input]``, ``weight_hh [4u, u]`` with rows i, f, g, o and two biases. So::

    kernel = concat([W_ih, W_hh], axis=1).T with column blocks re-ordered to i, g, f, o
    bias   = (b_ih + b_hh) re-ordered the same way, minus 1.0 on the f block
"""

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def lstm_layer_to_tf(w_ih, w_hh, b_ih, b_hh, forget_bias: float = 1.0):
    """One torch LSTM layer (numpy arrays) -> (TF kernel, TF bias)."""
    units = w_hh.shape[1]
    kernel = np.concatenate([w_ih, w_hh], axis=1).T  # [in + u, 4u], columns i f g o
    bias = (b_ih + b_hh).copy()
    i, f, g, o = (slice(k * units, (k + 1) * units) for k in range(4))
    kernel = np.concatenate([kernel[:, i], kernel[:, g], kernel[:, f], kernel[:, o]], axis=1)
    bias = np.concatenate([bias[i], bias[g], bias[f] - forget_bias, bias[o]])
    return np.ascontiguousarray(kernel, np.float32), bias.astype(np.float32)


def _np(t):
    return t.detach().cpu().numpy().astype(np.float32)


def _lstm_layers(lstm, suffix=""):
    for k in range(lstm.num_layers):
        yield k, lstm_layer_to_tf(_np(getattr(lstm, f"weight_ih_l{k}{suffix}")),
                                  _np(getattr(lstm, f"weight_hh_l{k}{suffix}")),
                                  _np(getattr(lstm, f"bias_ih_l{k}{suffix}")),
                                  _np(getattr(lstm, f"bias_hh_l{k}{suffix}")))


def musicvae_variables(model) -> dict:
    """Variables of a flat MusicVAE as in Magenta's checkpoints (see vars_cat-mel_2bar_small.txt)."""
    v = {}
    for suffix, direction in (("", "fw"), ("_reverse", "bw")):
        for k, (kernel, bias) in _lstm_layers(model.encoder, suffix):
            base = f"encoder/cell_{k}/bidirectional_rnn/{direction}/multi_rnn_cell/cell_0/lstm_cell"
            v[f"{base}/kernel"], v[f"{base}/bias"] = kernel, bias
    for name in ("mu", "sigma"):
        layer = getattr(model, name)
        v[f"encoder/{name}/kernel"] = np.ascontiguousarray(_np(layer.weight).T)
        v[f"encoder/{name}/bias"] = _np(layer.bias)
    for k, (kernel, bias) in _lstm_layers(model.decoder):
        base = f"decoder/multi_rnn_cell/cell_{k}/lstm_cell"
        v[f"{base}/kernel"], v[f"{base}/bias"] = kernel, bias
    for name in ("z_to_initial_state", "output_projection"):
        layer = getattr(model, name)
        v[f"decoder/{name}/kernel"] = np.ascontiguousarray(_np(layer.weight).T)
        v[f"decoder/{name}/bias"] = _np(layer.bias)
    return v


def melody_rnn_variables(model) -> dict:
    """Variables of a MelodyRNN bundle (see vars_basic_rnn.txt): BasicLSTMCell + fully_connected."""
    v = {}
    for k, (kernel, bias) in _lstm_layers(model.rnn):
        base = f"rnn/multi_rnn_cell/cell_{k}/basic_lstm_cell"
        v[f"{base}/kernel"], v[f"{base}/bias"] = kernel, bias
    v["fully_connected/weights"] = np.ascontiguousarray(_np(model.fully_connected.weight).T)
    v["fully_connected/biases"] = _np(model.fully_connected.bias)
    return v


def model_variables(model, cfg) -> dict:
    return musicvae_variables(model) if cfg["kind"] == "musicvae" else melody_rnn_variables(model)


def export_model(model, cfg: dict, path: Path, global_step: int = 0) -> Path:
    """Write the model's variables (plus ``global_step`` for MusicVAE, as Magenta) to ``path``."""
    from safetensors.numpy import save_file

    v = model_variables(model, cfg)
    if cfg["kind"] == "musicvae":
        v["global_step"] = np.array(global_step, np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": cfg.get("name", ""), "kind": cfg["kind"], "global_step": str(global_step),
            "producer": "magenta_api_training"}
    save_file(v, str(path), metadata=meta)
    log.info("exported %d variables to %s", len(v), path)
    return path
