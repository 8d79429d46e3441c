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
        yield (
            k,
            lstm_layer_to_tf(
                _np(getattr(lstm, f"weight_ih_l{k}{suffix}")),
                _np(getattr(lstm, f"weight_hh_l{k}{suffix}")),
                _np(getattr(lstm, f"bias_ih_l{k}{suffix}")),
                _np(getattr(lstm, f"bias_hh_l{k}{suffix}")),
            ),
        )


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


def _dense(v, name, layer):
    v[f"{name}/kernel"] = np.ascontiguousarray(_np(layer.weight).T)
    v[f"{name}/bias"] = _np(layer.bias)


def hier_musicvae_variables(model) -> dict:
    """Variables of a ``hier-mel_16bar`` MusicVAE as Magenta's graph names them (see the hier_mel
    fixture of reference/musicvae_hier_reference.py): encoder levels under
    ``encoder/hierarchical_level_<l>/``, the conductor under ``decoder/hierarchical_level_0/``, the core
    decoder under ``core_decoder/decoder/``."""
    v = {}
    for level, lstm in enumerate(model.encoder_levels):
        for suffix, direction in (("", "fw"), ("_reverse", "bw")):
            for k, (kernel, bias) in _lstm_layers(lstm, suffix):
                base = (
                    f"encoder/hierarchical_level_{level}/cell_{k}/bidirectional_rnn/{direction}"
                    "/multi_rnn_cell/cell_0/lstm_cell"
                )
                v[f"{base}/kernel"], v[f"{base}/bias"] = kernel, bias
    _dense(v, "encoder/mu", model.mu)
    _dense(v, "encoder/sigma", model.sigma)
    _dense(v, "decoder/hierarchical_level_0/initial_state", model.conductor_initial_state)
    for k, (kernel, bias) in _lstm_layers(model.conductor):
        base = f"decoder/hierarchical_level_0/cell_{k}/lstm_cell"
        v[f"{base}/kernel"], v[f"{base}/bias"] = kernel, bias
    for k, (kernel, bias) in _lstm_layers(model.decoder):
        base = f"core_decoder/decoder/multi_rnn_cell/cell_{k}/lstm_cell"
        v[f"{base}/kernel"], v[f"{base}/bias"] = kernel, bias
    _dense(v, "core_decoder/decoder/z_to_initial_state", model.z_to_initial_state)
    _dense(v, "core_decoder/decoder/output_projection", model.output_projection)
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
    if cfg["kind"] == "hier_musicvae":
        return hier_musicvae_variables(model)
    return musicvae_variables(model) if cfg["kind"] == "musicvae" else melody_rnn_variables(model)


def export_model(model, cfg: dict, path: Path, global_step: int = 0) -> Path:
    """Write the model's variables (plus ``global_step`` for MusicVAE, as Magenta) to ``path``."""
    from safetensors.numpy import save_file

    v = model_variables(model, cfg)
    if cfg["kind"] in ("musicvae", "hier_musicvae"):
        v["global_step"] = np.array(global_step, np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": cfg.get("name", ""),
        "kind": cfg["kind"],
        "global_step": str(global_step),
        "producer": "magenta_api_training",
    }
    save_file(v, str(path), metadata=meta)
    log.info("exported %d variables to %s", len(v), path)
    return path


def tf_to_lstm_layer(kernel, bias, input_size: int, forget_bias: float = 1.0):
    """Inverse of :func:`lstm_layer_to_tf`: (w_ih, w_hh, b_ih, b_hh) with ``b_hh`` zero."""
    units = kernel.shape[1] // 4
    i, j, f, o = (slice(k * units, (k + 1) * units) for k in range(4))
    k = np.concatenate([kernel[:, i], kernel[:, f], kernel[:, j], kernel[:, o]], axis=1).T
    b = np.concatenate([bias[i], bias[f] + forget_bias, bias[j], bias[o]])
    return k[:, :input_size], k[:, input_size:], b, np.zeros_like(b)


def load_variables(model, variables) -> None:
    """Load Magenta-layout ``variables`` (e.g. a shipped safetensors file) into a torch twin."""
    import torch

    def set_lstm(lstm, k, suffix, prefix):
        w_ih, w_hh, b_ih, b_hh = tf_to_lstm_layer(
            np.asarray(variables[prefix + "/kernel"]),
            np.asarray(variables[prefix + "/bias"]),
            getattr(lstm, f"weight_ih_l{k}{suffix}").shape[1],
        )
        for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
            getattr(lstm, f"{name}_l{k}{suffix}").copy_(torch.as_tensor(np.ascontiguousarray(value)))

    def set_dense(layer, kernel, bias):
        layer.weight.copy_(torch.as_tensor(np.ascontiguousarray(np.asarray(variables[kernel]).T)))
        layer.bias.copy_(torch.as_tensor(np.array(variables[bias], np.float32)))

    with torch.no_grad():
        if hasattr(model, "encoder_levels"):
            for level, lstm in enumerate(model.encoder_levels):
                for suffix, direction in (("", "fw"), ("_reverse", "bw")):
                    for k in range(lstm.num_layers):
                        set_lstm(
                            lstm,
                            k,
                            suffix,
                            f"encoder/hierarchical_level_{level}/cell_{k}/bidirectional_rnn/{direction}"
                            "/multi_rnn_cell/cell_0/lstm_cell",
                        )
            for k in range(model.conductor.num_layers):
                set_lstm(model.conductor, k, "", f"decoder/hierarchical_level_0/cell_{k}/lstm_cell")
            for k in range(model.decoder.num_layers):
                set_lstm(model.decoder, k, "", f"core_decoder/decoder/multi_rnn_cell/cell_{k}/lstm_cell")
            for layer, name in (
                (model.mu, "encoder/mu"),
                (model.sigma, "encoder/sigma"),
                (model.conductor_initial_state, "decoder/hierarchical_level_0/initial_state"),
                (model.z_to_initial_state, "core_decoder/decoder/z_to_initial_state"),
                (model.output_projection, "core_decoder/decoder/output_projection"),
            ):
                set_dense(layer, f"{name}/kernel", f"{name}/bias")
        elif hasattr(model, "encoder"):
            for suffix, direction in (("", "fw"), ("_reverse", "bw")):
                for k in range(model.encoder.num_layers):
                    set_lstm(
                        model.encoder,
                        k,
                        suffix,
                        f"encoder/cell_{k}/bidirectional_rnn/{direction}/multi_rnn_cell/cell_0/lstm_cell",
                    )
            for k in range(model.decoder.num_layers):
                set_lstm(model.decoder, k, "", f"decoder/multi_rnn_cell/cell_{k}/lstm_cell")
            for name in ("mu", "sigma"):
                set_dense(getattr(model, name), f"encoder/{name}/kernel", f"encoder/{name}/bias")
            for name in ("z_to_initial_state", "output_projection"):
                set_dense(getattr(model, name), f"decoder/{name}/kernel", f"decoder/{name}/bias")
        else:
            for k in range(model.rnn.num_layers):
                set_lstm(model.rnn, k, "", f"rnn/multi_rnn_cell/cell_{k}/basic_lstm_cell")
            set_dense(model.fully_connected, "fully_connected/weights", "fully_connected/biases")
