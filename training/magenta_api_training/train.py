"""Seeded, resumable training loop for the embedded models (Adam, Magenta's loss and schedules).

Every step draws its batch from ``np.random.default_rng([seed, step])`` and seeds torch with
``(seed, step)`` too, so a run resumed from ``checkpoint.pt`` continues exactly as an
uninterrupted one. Progress goes to a tqdm bar and ``log.jsonl`` (one JSON object per logged
step); at the end the weights are exported to ``<model>.safetensors`` in Magenta's layout.
"""

import copy
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .configs import CONFIGS
from .models_torch import HierMusicVAE, MelodyRNN, MusicVAE, drums_roll_input, vae_loss

log = logging.getLogger(__name__)

SMOKE_OVERRIDES = {
    "musicvae": {"enc_rnn_size": [16], "dec_rnn_size": [16, 16], "z_size": 8},
    "melody_rnn": {"rnn_layer_sizes": [16, 16]},
    "hier_musicvae": {"enc_rnn_size": [16], "dec_rnn_size": [16, 16], "z_size": 8},
}
SMOKE_TUNES = {"melody16": 20}  # 16-bar windows need more tunes than 12 to have validation ones too


def build_config(model_name: str, smoke: bool = False) -> dict:
    if model_name not in CONFIGS:
        raise ValueError(f"unknown model {model_name!r}; choose from {sorted(CONFIGS)}")
    cfg = copy.deepcopy(CONFIGS[model_name])
    cfg["name"] = model_name
    if smoke:
        cfg["arch"].update(SMOKE_OVERRIDES[cfg["kind"]])
        cfg["batch_size"] = 16
    return cfg


def build_model(cfg: dict) -> torch.nn.Module:
    a = cfg["arch"]
    if cfg["kind"] == "musicvae":
        return MusicVAE(a["input_depth"], a["output_depth"], a["enc_rnn_size"], a["dec_rnn_size"], a["z_size"])
    if cfg["kind"] == "hier_musicvae":
        return HierMusicVAE(
            a["input_depth"], a["output_depth"], a["enc_rnn_size"], a["dec_rnn_size"], a["z_size"], a["level_lengths"]
        )
    return MelodyRNN(a["num_classes"], a["rnn_layer_sizes"], cfg.get("dropout", 0.0))


def build_data(cfg: dict, seed: int, cache_dir: Path, smoke: bool):
    from . import datasets

    if cfg["data"] == "drums":
        return datasets.DrumData(seed=seed, smoke=smoke)
    limit = SMOKE_TUNES.get(cfg["data"], 12) if smoke else None
    ts = datasets.load_or_extract_tunes(
        cache_dir, limit=limit, seed=0, progress=not smoke, expand_repeats=cfg["data"] == "melody16"
    )
    if cfg["data"] == "melody":
        return datasets.MelodyData(ts, tuple(cfg.get("transpose_range", (0, 0))))
    if cfg["data"] == "melody16":
        return datasets.Melody16Data(ts, tuple(cfg.get("transpose_range", (0, 0))))
    return datasets.MelodyRnnData(ts, cfg["seq_len"])


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def compute_loss(model, cfg, labels: torch.Tensor, step: int, deterministic=False):
    """Returns (loss, metrics dict) for one batch of label indices [B, T]."""
    vae = cfg["kind"] in ("musicvae", "hier_musicvae")
    depth = model.output_depth if vae else model.num_classes
    onehot = F.one_hot(labels, depth).float()
    if vae:
        x = drums_roll_input(labels) if cfg["data"] == "drums" else onehot
        mu, sigma = model.encode(x)
        z = mu if deterministic else mu + sigma * torch.randn_like(mu)
        logits = model.decode_logits(z, onehot)
        beta = (1.0 - cfg["beta_rate"] ** step) * cfg["max_beta"]
        loss, r_loss, kl_bits = vae_loss(logits, labels, mu, sigma, beta, cfg["free_bits"])
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {
            "loss": loss.item(),
            "r_loss": r_loss.item(),
            "kl_bits": kl_bits.item(),
            "beta": beta,
            "accuracy": acc.item(),
        }
    logits, _ = model(onehot[:, :-1])
    target = labels[:, 1:]
    loss = F.cross_entropy(logits.transpose(1, 2), target)
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, {"loss": loss.item(), "accuracy": acc.item()}


@torch.no_grad()
def evaluate(model, cfg, data, step: int) -> dict:
    """Validation metrics: VAE with z = mu (reconstruction), RNN next-step cross-entropy."""
    was = model.training
    model.eval()
    labels = torch.as_tensor(data.validation())
    _, metrics = compute_loss(model, cfg, labels, max(step, 1), deterministic=True)
    model.train(was)
    return {f"val_{k}": v for k, v in metrics.items() if k != "beta"}


def _save(path: Path, payload: dict):
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(
    model_name: str,
    steps=None,
    seed: int = 0,
    out: Path = Path("runs"),
    resume: bool = False,
    smoke: bool = False,
    max_minutes=None,
    cache_dir=None,
    checkpoint_every: int = 100,
    eval_every: int = 250,
    export: bool = True,
) -> dict:
    """Train ``model_name`` into ``out``; returns the summary written to ``summary.json``."""
    from tqdm import tqdm

    from . import datasets
    from .export import export_model

    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "1")))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else datasets.DEFAULT_CACHE
    cfg = build_config(model_name, smoke)
    steps = int(steps if steps is not None else cfg["steps"])
    cfg["seed"] = seed
    torch.manual_seed(seed)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    ckpt_path = out / "checkpoint.pt"
    start = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
        log.info("resumed %s at step %d", model_name, start)
    data = build_data(cfg, seed, cache_dir, smoke)
    log_file = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115  (closed after the loop)
    t0 = time.time()
    last = {}
    step = start
    bar = tqdm(total=steps, initial=start, desc=model_name, unit="step", mininterval=5.0)
    model.train()
    try:
        while step < steps:
            if max_minutes and time.time() - t0 > 60 * max_minutes:
                log.warning("time budget of %s min reached at step %d", max_minutes, step)
                break
            rng = np.random.default_rng([seed, step])
            torch.manual_seed(_step_seed(seed, step))
            lr = cfg["learning_rate"]
            if "decay_rate" in cfg:
                lr = max(cfg["min_learning_rate"], lr * cfg["decay_rate"] ** step)
            for g in opt.param_groups:
                g["lr"] = lr
            labels = torch.as_tensor(data.batch(rng, cfg["batch_size"]))
            loss, metrics = compute_loss(model, cfg, labels, step)
            opt.zero_grad()
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            if math.isfinite(float(gnorm)):
                opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)
            last = dict(metrics, step=step, lr=lr, grad_norm=float(gnorm), elapsed=round(time.time() - t0, 1))
            if step % eval_every == 0 or step == steps:
                last.update(evaluate(model, cfg, data, step))
            if step % 10 == 0 or step == steps or "val_loss" in last:
                log_file.write(json.dumps(last) + "\n")
                log_file.flush()
            if step % checkpoint_every == 0:
                _save(
                    ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "config": cfg}
                )
    finally:
        bar.close()
        _save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "config": cfg})
        log_file.close()
    final = evaluate(model, cfg, data, step)
    summary = {
        "model": model_name,
        "steps": step,
        "requested_steps": steps,
        "stopped_by_budget": step < steps,
        "seed": seed,
        "config": cfg,
        "last": last,
        "final": final,
        "train_windows": len(data.train),
        "validation_windows": len(data.valid),
        "train_seconds_this_run": round(time.time() - t0, 1),
    }
    if export:
        path = out / f"{model_name}.safetensors"
        export_model(model, cfg, path, global_step=step)
        summary["export"] = str(path)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_trained(out: Path):
    """(model, config, step) from a run folder's checkpoint."""
    state = torch.load(Path(out) / "checkpoint.pt", weights_only=False)
    model = build_model(state["config"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["config"], state["step"]
