"""Piano-roll pictures: notes sit at their pitch and step, lanes per instrument, drums as a grid, the
size follows the length, several outputs stack; served as ``format: png`` / ``svg``."""

import io
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

import magenta_api_embedded as emb
import magenta_api_melody_rnn
import magenta_api_musicvae
from magenta_api import pianoroll
from magenta_api.music import NoteSequence
from magenta_api.testing import make_app

SVG = "{http://www.w3.org/2000/svg}"


def _seq(notes, qpm=120.0, total=None):
    seq = NoteSequence()
    seq.tempos.add(qpm=qpm)
    for pitch, start_step, end_step, instrument, drum in notes:
        seconds = 60.0 / qpm / 4
        seq.notes.add(
            pitch=pitch, velocity=90, start_time=start_step * seconds, end_time=end_step * seconds,
            instrument=instrument, is_drum=drum,
        )  # fmt: skip
    seq.total_time = (total or max(n[2] for n in notes)) * 60.0 / qpm / 4
    return seq


KNOWN = _seq(
    [(60, 0, 4, 0, False), (64, 4, 6, 0, False), (67, 8, 16, 0, False), (36, 0, 1, 9, True), (42, 2, 3, 9, True)]
)


def test_svg_notes_sit_at_their_pitches_and_steps():
    root = ET.fromstring(pianoroll.to_svg([KNOWN]))
    rects = root.iter(f"{SVG}rect")
    notes = [r for r in rects if r.get("class") == "note"]
    got = sorted((int(r.get("data-pitch")), int(r.get("data-step")), int(r.get("data-steps"))) for r in notes)
    assert got == [(36, 0, 1), (42, 2, 1), (60, 0, 4), (64, 4, 2), (67, 8, 8)]
    by_pitch = {int(r.get("data-pitch")): r for r in notes}
    x = {p: int(r.get("x")) for p, r in by_pitch.items()}
    assert x[64] - x[60] == 4 * pianoroll.STEP_PX and x[67] - x[60] == 8 * pianoroll.STEP_PX
    assert int(by_pitch[67].get("width")) == 8 * pianoroll.STEP_PX
    y = {p: int(r.get("y")) for p, r in by_pitch.items()}
    assert y[60] - y[64] == 4 * pianoroll.ROW_PX and y[64] - y[67] == 3 * pianoroll.ROW_PX  # higher is up
    lanes = [g.get("data-title") for g in root.iter(f"{SVG}g")]
    assert lanes == ["instrument 0 · program 0", "drums"]
    assert y[36] > y[60] and y[42] < y[36]  # the drum lane below, hi-hat row above kick
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"C4", "Kick", "Closed hat"} <= set(texts)
    bars = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "bar"]
    assert len(bars) == 2 * 2  # steps 0 and 16 in each of the two lanes


def test_png_draws_the_same_boxes_and_its_width_follows_the_length():
    pic = pianoroll.layout([KNOWN])
    image = Image.open(io.BytesIO(pianoroll.to_png([KNOWN]))).convert("RGB")
    assert image.size == (pic.width, pic.height)
    for lane in pic.lanes:
        for box in lane.boxes:
            centre = image.getpixel((box.x + box.w // 2, box.y + box.h // 2))
            assert centre == Image.new("RGB", (1, 1), box.colour).getpixel((0, 0)), box
    lane = pic.lanes[0]
    empty = image.getpixel((pianoroll.LEFT_PX + 12 * pianoroll.STEP_PX + 3, lane.row_y(60) + 2))
    assert empty == (0xF4, 0xF4, 0xF4)  # no note at C4, step 12
    longer = Image.open(io.BytesIO(pianoroll.to_png([_seq([(60, 0, 4, 0, False)], total=64)])))
    assert longer.width - pianoroll.LEFT_PX - 1 == 64 * pianoroll.STEP_PX


def test_quantized_steps_and_several_outputs_stack():
    seq = _seq([(62, 0, 2, 0, False)])
    seq.quantization_info.steps_per_quarter = 4
    seq.notes[0].quantized_start_step, seq.notes[0].quantized_end_step = 3, 5
    pic = pianoroll.layout([seq, KNOWN])
    assert (pic.lanes[0].boxes[0].step, pic.lanes[0].boxes[0].steps) == (3, 2)
    assert len(pic.blocks) == 2 and pic.blocks[1][0] > pic.blocks[0][1]
    assert pic.height > pianoroll.layout([KNOWN]).height


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    plugins = [magenta_api_musicvae, magenta_api_melody_rnn, emb]
    return make_app(tmp_path_factory.mktemp("roll"), offline=True, plugins=plugins).test_client()


def test_the_api_answers_png_and_svg(client):
    one = client.post("/v1/generate", json={"model": "embedded-drums_2bar", "seed": 2, "format": "png"})
    two = client.post(
        "/v1/generate", json={"model": "embedded-drums_2bar", "seed": 2, "format": "png", "num_outputs": 2}
    )
    assert one.mimetype == "image/png" and one.data[:8] == b"\x89PNG\r\n\x1a\n"
    a, b = Image.open(io.BytesIO(one.data)), Image.open(io.BytesIO(two.data))
    assert b.width == a.width and b.height > a.height + pianoroll.TITLE_PX
    svg = client.post(
        "/v1/generate", json={"model": "embedded-mel_2bar", "seed": 2}, headers={"Accept": "image/svg+xml"}
    )
    assert svg.mimetype == "image/svg+xml"
    assert [g.get("data-title") for g in ET.fromstring(svg.data).iter(f"{SVG}g")] == ["instrument 0 · program 0"]
    body = client.post("/v1/generate", json={"model": "embedded-mel_2bar", "seed": 2}).get_json()
    notes = body["sequences"][0]["notes"]
    rects = [r for r in ET.fromstring(svg.data).iter(f"{SVG}rect") if r.get("class") == "note"]
    assert sorted(int(r.get("data-pitch")) for r in rects) == sorted(n["pitch"] for n in notes)
