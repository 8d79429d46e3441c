"""`magenta-api generate -o FILE` writes what the extension says, and refuses what it cannot hold; the
commands that need no models or cache create no folders.

Writing and refusing run ``cli.main`` in this process (the same code the command runs, with the
installed plugins); where the working folder and the pipe matter, the real command runs as a process."""

import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import note_seq
import pytest

from magenta_api import cli

BIN = Path(sys.executable).parent / "magenta-api"


@pytest.fixture
def generate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # cli.main configures logging as the command does

    def run(*args):
        code = cli.main(["generate", "markov-melody", "--seed", "3", "--length", "16", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def test_two_outputs_are_refused_for_a_mid_file_and_written_to_a_zip(tmp_path, generate):
    code, _, err = generate("-n", "2", "-o", "two.mid")
    assert code == 2 and "a .mid file holds one" in err and "-o two.zip" in err
    assert not (tmp_path / "two.mid").exists()
    code, _, err = generate("-n", "2", "-o", "two.zip")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "two.zip") as zf:
        names = zf.namelist()
        assert len(names) == 2 and all(n.endswith(".mid") for n in names)
        for name in names:
            assert note_seq.midi_to_note_sequence(zf.read(name)).notes


def test_one_output_as_mid_zip_and_json(tmp_path, generate):
    assert generate("-o", "one.mid")[0] == 0
    midi = (tmp_path / "one.mid").read_bytes()
    assert midi.startswith(b"MThd") and note_seq.midi_to_note_sequence(midi).notes
    code, _, err = generate("-o", "one.zip")
    assert code == 0, err
    with zipfile.ZipFile(io.BytesIO((tmp_path / "one.zip").read_bytes())) as zf:
        assert [zf.read(n) for n in zf.namelist()] == [midi]  # the same seed, the same MIDI file
    assert generate("-o", "one.json")[0] == 0
    assert json.loads((tmp_path / "one.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files


@pytest.mark.parametrize("name, what", [("out.mp3", "MP3")])  # .wav/.flac/.png: tests/test_audio_cli.py
def test_formats_not_available_yet_are_refused(tmp_path, generate, name, what):
    code, _, err = generate("-o", name)
    assert code == 2 and f"{what} " in err and "not available yet" in err
    assert not (tmp_path / name).exists()
    assert not (tmp_path / "m").exists() and not (tmp_path / "c").exists()  # refused before any work


def test_an_unknown_extension_and_a_mismatching_format_are_refused(tmp_path, generate):
    code, _, err = generate("-o", "out.txt")
    assert code == 2 and "cannot tell the format" in err
    code, _, err = generate("--params", '{"format": "json"}', "-o", "out.mid")
    assert code == 2 and "format 'json'" in err
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "out.mid").exists()
    code, _, err = generate("--params", "[1, 2]")
    assert code == 2 and "--params is not a JSON object" in err
    code, _, err = generate("-o", str(tmp_path / "no" / "such" / "folder.mid"))
    assert code == 2 and "cannot write -o" in err and "No such file or directory" in err


def run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "CACHE_DIR")}
    return subprocess.run([str(BIN), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["plugins"], ["models", "--json"], ["fetch", "--help"]])
def test_commands_that_need_no_models_create_no_folders(tmp_path, args):
    out = run(args, tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_models_piped_into_a_reader_that_leaves_is_not_a_traceback(tmp_path):
    # `true` exits without reading, long before the command has started: its writes find a closed pipe
    proc = subprocess.run(f"{BIN} models | true", shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
