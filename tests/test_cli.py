"""The `magenta-api` command, run as a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import note_seq

BIN = Path(sys.executable).parent / "magenta-api"


def run(args, plugin_site, tmp_path, **env):
    full_env = {
        **os.environ,
        "PYTHONPATH": str(plugin_site),
        "MODEL_DIR": str(tmp_path / "m"),
        "CACHE_DIR": str(tmp_path / "c"),
        **env,
    }
    return subprocess.run([str(BIN), *args], env=full_env, capture_output=True, text=True, timeout=120)


def test_plugins_and_models_commands(plugin_site, tmp_path):
    out = run(["plugins"], plugin_site, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines()}
    assert "ERROR" in lines["broken_import"] and lines["markov"].rstrip().endswith("ok")
    out = run(["models", "--json"], plugin_site, tmp_path)
    models = {m["id"]: m for m in json.loads(out.stdout)}
    assert models["markov-melody"]["state"] == "ready"


def test_generate_writes_midi_and_json(plugin_site, tmp_path):
    target = tmp_path / "out.mid"
    out = run(["generate", "markov-melody", "--seed", "3", "--length", "16", "-o", str(target)], plugin_site, tmp_path)
    assert out.returncode == 0, out.stderr
    seq = note_seq.midi_file_to_note_sequence(str(target))
    assert seq.notes and seq.total_time <= 2.0 + 1e-6
    out = run(["generate", "markov-melody", "--seed", "3", "--length", "16"], plugin_site, tmp_path)
    assert json.loads(out.stdout)["seed"] == 3
    out = run(["generate", "markov-melody", "--mode", "decode"], plugin_site, tmp_path)
    assert out.returncode == 3 and "[mode_not_supported]" in out.stderr


def test_train_subcommand_hands_everything_to_the_trainer(plugin_site, tmp_path):
    out = run(["train", "--help"], plugin_site, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "data" in out.stdout and "evaluate" in out.stdout
