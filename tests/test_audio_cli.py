"""`magenta-api generate -o` writes audio and pictures by the extension (.wav, .flac, .ogg, .png, .svg)
and refuses what one file cannot hold."""

import io
import logging
import zipfile

import pytest
import soundfile
from PIL import Image

from magenta_api import cli


@pytest.fixture
def generate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args):
        code = cli.main(["generate", "embedded-mel_2bar", "--seed", "3", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("name, magic", [("a.wav", b"RIFF"), ("a.flac", b"fLaC"), ("a.ogg", b"OggS")])
def test_audio_files_are_written_by_their_extension(tmp_path, generate, name, magic):
    code, _, err = generate("--params", '{"sample_rate": 16000}', "-o", name)
    assert code == 0, err
    data = (tmp_path / name).read_bytes()
    assert data[:4] == magic and soundfile.info(io.BytesIO(data)).samplerate == 16000


def test_pictures_are_written_and_several_outputs_stack(tmp_path, generate):
    assert generate("-o", "one.png")[0] == 0
    assert generate("-n", "3", "-o", "three.png")[0] == 0
    one, three = Image.open(tmp_path / "one.png"), Image.open(tmp_path / "three.png")
    assert one.format == three.format == "PNG" and three.height > 2 * one.height and three.width == one.width
    assert generate("-o", "roll.svg")[0] == 0
    assert (tmp_path / "roll.svg").read_text().startswith("<svg")


def test_several_sequences_need_a_zip_and_a_zip_can_hold_audio(tmp_path, generate):
    code, _, err = generate("-n", "2", "-o", "two.wav")
    assert code == 2 and "a .wav file holds one" in err and '"format": "wav"' in err
    assert not (tmp_path / "two.wav").exists()
    code, _, err = generate("-n", "2", "--params", '{"format": "flac", "sample_rate": 8000}', "-o", "two.zip")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "two.zip") as zf:
        assert [n[-5:] for n in zf.namelist()] == [".flac", ".flac"]
    code, _, err = generate("--params", '{"format": "wav", "sample_rate": 8000}', "-o", "one.zip")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "one.zip") as zf:
        assert zf.read(zf.namelist()[0])[:4] == b"RIFF"
    code, _, err = generate("--params", '{"format": "png"}', "-o", "x.wav")
    assert code == 2 and "format 'png'" in err
