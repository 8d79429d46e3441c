"""Audio output: a real SoundFont synthesizer (TinySoundFont with pretty_midi's GM SoundFont) behind
``format: wav/flac/ogg`` and ``Accept: audio/*``; seeded audio is cached and byte-identical."""

import io
import sys
import wave
import zipfile

import numpy as np
import pytest
import soundfile

import magenta_api_embedded as emb
import magenta_api_melody_rnn
import magenta_api_musicvae
from magenta_api import audio
from magenta_api.music import NoteSequence
from magenta_api.testing import make_app

PLUGINS = [magenta_api_musicvae, magenta_api_melody_rnn, emb]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return make_app(tmp_path_factory.mktemp("audio"), offline=True, plugins=PLUGINS).test_client()


def _wav(client, model, **fields):
    resp = client.post("/v1/generate", json={"model": model, "seed": 3, "format": "wav", **fields})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


@pytest.mark.parametrize("rate", [22050, 44100])
def test_wav_of_a_seeded_sample_has_the_header_rate_and_length_and_is_not_silent(client, rate):
    resp = _wav(client, "embedded-mel_2bar", sample_rate=rate)
    assert resp.mimetype == "audio/wav" and resp.data[:4] == b"RIFF" and resp.data[8:12] == b"WAVE"
    assert resp.headers["Content-Disposition"].endswith('.wav"')
    with wave.open(io.BytesIO(resp.data)) as w:
        assert w.getframerate() == rate and w.getnchannels() == 2 and w.getsampwidth() == 2
        frames = w.getnframes()
    body = client.post("/v1/generate", json={"model": "embedded-mel_2bar", "seed": 3}).get_json()
    total = body["sequences"][0]["totalTime"]
    assert abs(frames - total * rate) <= 64  # one TinySoundFont block
    samples, _ = soundfile.read(io.BytesIO(resp.data))
    assert _rms(samples) > 0.005


def test_melody_and_drums_sound_different_and_the_same_request_gives_the_same_bytes(client):
    melody = _wav(client, "embedded-mel_2bar", sample_rate=22050)
    drums = _wav(client, "embedded-drums_2bar", sample_rate=22050)
    again = _wav(client, "embedded-drums_2bar", sample_rate=22050)
    assert again.data == drums.data and again.headers["X-Cache"] == "HIT" and drums.headers["X-Cache"] == "MISS"
    a, _ = soundfile.read(io.BytesIO(melody.data))
    b, _ = soundfile.read(io.BytesIO(drums.data))
    n = min(len(a), len(b))
    assert _rms(a[:n] - b[:n]) > 0.01


def test_rendering_is_deterministic_without_the_cache(tmp_path):
    client = make_app(tmp_path, offline=True, plugins=PLUGINS, cache_enabled=False).test_client()
    first = _wav(client, "embedded-basic_rnn", sample_rate=16000)
    second = _wav(client, "embedded-basic_rnn", sample_rate=16000)
    assert "X-Cache" not in first.headers and first.data == second.data


def test_flac_decodes_to_the_same_samples_as_the_wav_and_ogg_is_vorbis(client):
    wav = _wav(client, "embedded-mel_2bar", sample_rate=22050)
    flac = client.post(
        "/v1/generate",
        json={"model": "embedded-mel_2bar", "seed": 3, "sample_rate": 22050},
        headers={"Accept": "audio/flac"},
    )
    assert flac.mimetype == "audio/flac" and flac.data[:4] == b"fLaC"
    a, _ = soundfile.read(io.BytesIO(wav.data), dtype="int16")
    b, rate = soundfile.read(io.BytesIO(flac.data), dtype="int16")
    assert rate == 22050 and np.array_equal(a, b)
    ogg = _wav(client, "embedded-mel_2bar", sample_rate=22050, format="ogg")
    assert ogg.mimetype == "audio/ogg" and ogg.data[:4] == b"OggS"
    assert soundfile.info(io.BytesIO(ogg.data)).subtype == "VORBIS"


def test_accept_headers_choose_the_format(client):
    cases = [("audio/wav", "audio/wav"), ("audio/x-wav", "audio/wav"), ("audio/ogg", "audio/ogg")]
    cases += [("image/png", "image/png"), ("image/svg+xml", "image/svg+xml"), ("*/*", "application/json")]
    for accept, mimetype in cases:
        resp = client.post("/v1/generate", json={"model": "embedded-basic_rnn", "seed": 1}, headers={"Accept": accept})
        assert resp.status_code == 200 and resp.mimetype == mimetype, accept
    body_wins = client.post(
        "/v1/generate",
        json={"model": "embedded-basic_rnn", "seed": 1, "format": "json"},
        headers={"Accept": "audio/wav"},
    )
    assert body_wins.mimetype == "application/json"


def test_several_outputs_are_a_zip_of_wav_files(client):
    resp = _wav(client, "embedded-basic_rnn", num_outputs=2, sample_rate=8000)
    assert resp.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.data)) as zf:
        names = zf.namelist()
        assert names == ["embedded-basic_rnn-continue-1.wav", "embedded-basic_rnn-continue-2.wav"]
        assert all(zf.read(n)[:4] == b"RIFF" for n in names)


def test_bad_sample_rates_and_missing_soundfonts_are_clear_errors(client, tmp_path, monkeypatch):
    resp = client.post("/v1/generate", json={"model": "embedded-basic_rnn", "format": "wav", "sample_rate": 12345})
    assert resp.status_code == 400 and resp.get_json()["error"]["details"]["field"] == "/sample_rate"
    with pytest.raises(Exception, match="12345"):
        audio.check_sample_rate(12345)
    monkeypatch.setenv("SOUNDFONT", str(tmp_path / "none.sf2"))
    resp = client.post("/v1/generate", json={"model": "embedded-basic_rnn", "seed": 1, "format": "wav"})
    err = resp.get_json()["error"]
    assert resp.status_code == 503 and err["code"] == "audio_unavailable" and "none.sf2" in err["message"]
    assert resp.headers["Retry-After"]


def test_soundfont_names_another_file_and_that_changes_the_cache_key(client, tmp_path, monkeypatch):
    before = _wav(client, "embedded-basic_rnn", sample_rate=8000)
    copy = tmp_path / "copy.sf2"
    copy.write_bytes(audio.default_soundfont().read_bytes())
    monkeypatch.setenv("SOUNDFONT", str(copy))
    after = _wav(client, "embedded-basic_rnn", sample_rate=8000)
    assert after.headers["X-Cache"] == "MISS" and after.data == before.data  # same samples, new entry


def _seq(notes):
    seq = NoteSequence()
    seq.tempos.add(qpm=120)
    for pitch, start, end, program, drum in notes:
        seq.notes.add(pitch=pitch, velocity=100, start_time=start, end_time=end, program=program, is_drum=drum)
    seq.total_time = max(n[2] for n in notes)
    return seq


def test_general_midi_programs_and_the_drum_kit_on_channel_10():
    piano = audio.synthesize(_seq([(60, 0.0, 0.5, 0, False)]), 16000)
    violin = audio.synthesize(_seq([(60, 0.0, 0.5, 40, False)]), 16000)
    kick = audio.synthesize(_seq([(36, 0.0, 0.5, 0, True)]), 16000)
    low_piano = audio.synthesize(_seq([(36, 0.0, 0.5, 0, False)]), 16000)
    assert piano.shape == (8000, 2)
    for a, b in [(piano, violin), (kick, low_piano)]:
        assert _rms(a) > 0.005 and _rms(b) > 0.005 and _rms(a - b) > 0.005
    channels = audio._channels(_seq([(36, 0, 1, 0, True), (60, 0, 1, 0, False), (64, 0, 1, 33, False)]))
    assert channels[(0, 0, True)] == 9 and sorted(channels.values()) == [0, 1, 9]
    with pytest.raises(Exception, match="no notes"):
        audio.render_audio(NoteSequence(), "wav")


def test_without_the_binding_audio_is_a_503_naming_the_install_command(tmp_path, monkeypatch, capsys):
    """As on a machine without the package: ``import tinysoundfont`` fails (a None entry in sys.modules)."""
    import logging

    from magenta_api import cli

    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    client = make_app(tmp_path / "app", offline=True, plugins=PLUGINS).test_client()
    resp = client.post("/v1/generate", json={"model": "embedded-basic_rnn", "seed": 1}, headers={"Accept": "audio/wav"})
    err = resp.get_json()["error"]
    assert resp.status_code == 503 and err["code"] == "audio_unavailable"
    assert audio.INSTALL_COMMAND in err["message"] and err["details"]["fix"] == audio.INSTALL_COMMAND
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "c"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # cli.main configures logging as the command does
    try:
        code = cli.main(["generate", "embedded-basic_rnn", "--seed", "1", "-o", str(tmp_path / "x.wav")])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 4 and f"fix: {audio.INSTALL_COMMAND}" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
