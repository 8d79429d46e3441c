"""Piano-roll pictures of NoteSequences, as SVG or PNG.

One layout (:func:`layout`) is drawn by two writers: :func:`to_svg` writes the SVG text itself (every
note a ``<rect>`` carrying its pitch and step), :func:`to_png` draws the same boxes with Pillow. Each
sequence is a block of lanes, one lane per instrument (drums as a grid with one row per drum sound),
with bar and beat lines and pitch names; several sequences stack top to bottom. The width follows the
length: :data:`STEP_PX` pixels per sixteenth note.
"""

import io
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

STEP_PX = 8  # one sixteenth note
ROW_PX = 6  # one pitch
DRUM_ROW_PX = 11  # one drum sound: room for its name
LEFT_PX = 56  # pitch names
TITLE_PX = 16  # a sequence's title row
LANE_GAP_PX = 6
PAD_PITCHES = 2  # rows above and below a lane's highest and lowest note
STEPS_PER_QUARTER = 4
NAMES = ("C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B")
ASCII_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
DRUM_NAMES = {
    35: "Kick 2", 36: "Kick", 37: "Stick", 38: "Snare", 39: "Clap", 40: "Snare 2", 41: "Low tom 2",
    42: "Closed hat", 43: "Low tom", 44: "Pedal hat", 45: "Mid tom 2", 46: "Open hat", 47: "Mid tom",
    48: "High tom 2", 49: "Crash", 50: "High tom", 51: "Ride", 52: "China", 53: "Ride bell", 54: "Tambourine",
    55: "Splash", 56: "Cowbell", 57: "Crash 2", 59: "Ride 2",
}  # fmt: skip
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
DRUM_COLOUR = "#444444"
BACKGROUND, LANE_BG, BAR, BEAT, TEXT = "#ffffff", "#f4f4f4", "#888888", "#dddddd", "#222222"


def pitch_name(pitch: int, ascii_only: bool = False) -> str:
    return f"{(ASCII_NAMES if ascii_only else NAMES)[pitch % 12]}{pitch // 12 - 1}"


@dataclass
class Box:
    """One note: where it is drawn and what it is."""

    x: int
    y: int
    w: int
    h: int
    pitch: int
    step: int
    steps: int
    colour: str


@dataclass
class Lane:
    title: str
    top: int
    rows: list  # pitches, top row first
    drums: bool
    boxes: list = field(default_factory=list)

    @property
    def row_px(self) -> int:
        return DRUM_ROW_PX if self.drums else ROW_PX

    @property
    def height(self) -> int:
        return len(self.rows) * self.row_px

    def row_y(self, pitch: int) -> int:
        return self.top + self.rows.index(pitch) * self.row_px


@dataclass
class Picture:
    width: int
    height: int
    steps: int
    steps_per_bar: int
    titles: list  # (y, text)
    lanes: list
    blocks: list  # (top, bottom) of each sequence's lanes


def _steps_per_second(seq) -> float:
    qpm = seq.tempos[0].qpm if seq.tempos else 120.0
    return qpm / 60.0 * STEPS_PER_QUARTER


def _steps_per_bar(seq) -> int:
    if seq.time_signatures:
        ts = seq.time_signatures[0]
        return max(1, round(ts.numerator * STEPS_PER_QUARTER * 4 / ts.denominator))
    return 4 * STEPS_PER_QUARTER


def _note_steps(seq, note) -> tuple:
    """(first step, number of steps): the quantized steps if the sequence has them, else from seconds."""
    if seq.quantization_info.steps_per_quarter and note.quantized_end_step > note.quantized_start_step:
        scale = STEPS_PER_QUARTER / seq.quantization_info.steps_per_quarter
        start = round(note.quantized_start_step * scale)
        return start, max(1, round(note.quantized_end_step * scale) - start)
    sps = _steps_per_second(seq)
    start = round(note.start_time * sps)
    return start, max(1, round(note.end_time * sps) - start)


def _total_steps(seq) -> int:
    ends = [sum(_note_steps(seq, n)) for n in seq.notes]
    return max([round(seq.total_time * _steps_per_second(seq)), *ends, 1])


def layout(sequences) -> Picture:
    """Where every lane, line, name and note goes, for the sequences stacked in order."""
    steps = max([_total_steps(s) for s in sequences] or [1])
    steps_per_bar = _steps_per_bar(sequences[0]) if sequences else 16
    lanes, titles, blocks = [], [], []
    y = 0
    for index, seq in enumerate(sequences, 1):
        titles.append((y + TITLE_PX - 4, f"{index}" if len(sequences) > 1 else ""))
        y += TITLE_PX
        block_top = y
        parts = sorted({(n.is_drum, n.instrument) for n in seq.notes}) or [(False, 0)]
        for colour_index, (is_drum, instrument) in enumerate(parts):
            notes = [n for n in seq.notes if (n.is_drum, n.instrument) == (is_drum, instrument)]
            pitches = sorted({n.pitch for n in notes})
            if is_drum:
                rows = sorted(pitches, reverse=True) or [36]
            else:
                low = (min(pitches) if pitches else 60) - PAD_PITCHES
                high = (max(pitches) if pitches else 72) + PAD_PITCHES
                rows = list(range(min(127, high), max(0, low) - 1, -1))
            program = notes[0].program if notes else 0
            title = "drums" if is_drum else f"instrument {instrument} · program {program}"
            lane = Lane(title, y, rows, is_drum)
            colour = DRUM_COLOUR if is_drum else PALETTE[colour_index % len(PALETTE)]
            for n in notes:
                step, length = _note_steps(seq, n)
                lane.boxes.append(
                    Box(LEFT_PX + step * STEP_PX, lane.row_y(n.pitch), length * STEP_PX, lane.row_px, n.pitch, step,
                        length, colour)
                )  # fmt: skip
            lanes.append(lane)
            y += lane.height + LANE_GAP_PX
        blocks.append((block_top, y - LANE_GAP_PX))
    return Picture(LEFT_PX + steps * STEP_PX + 1, max(y, 1), steps, steps_per_bar, titles, lanes, blocks)


def _row_label(lane: Lane, pitch: int, ascii_only: bool = False) -> str | None:
    if lane.drums:
        return DRUM_NAMES.get(pitch, str(pitch))
    near_c = any((pitch + d) % 12 == 0 for d in range(-2, 3))
    if pitch % 12 == 0 or (pitch in (lane.rows[0], lane.rows[-1]) and not near_c):
        return pitch_name(pitch, ascii_only)
    return None


def _grid(pic: Picture):
    """(x, is_bar) of every beat line."""
    for step in range(0, pic.steps + 1, STEPS_PER_QUARTER):
        yield LEFT_PX + step * STEP_PX, step % pic.steps_per_bar == 0


def to_svg(sequences) -> bytes:
    """The piano roll as an SVG document; each note is a ``<rect class="note">`` with ``data-pitch`` and
    ``data-step`` so that a reader (or a test) can tell what it shows."""
    pic = layout(sequences)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{pic.width}" height="{pic.height}" '
        f'viewBox="0 0 {pic.width} {pic.height}" font-family="sans-serif" font-size="9">',
        f'<rect width="{pic.width}" height="{pic.height}" fill="{BACKGROUND}"/>',
    ]
    for y, text in pic.titles:
        if text:
            out.append(f'<text x="2" y="{y}" fill="{TEXT}" font-weight="bold">{escape(text)}</text>')
    for lane in pic.lanes:
        out.append(
            f'<g class="lane" data-title="{escape(lane.title)}"><rect x="{LEFT_PX}" y="{lane.top}" '
            f'width="{pic.width - LEFT_PX}" height="{lane.height}" fill="{LANE_BG}"/>'
        )
        for pitch in lane.rows:
            label = _row_label(lane, pitch)
            if label:
                y = lane.row_y(pitch) + lane.row_px
                out.append(f'<text x="2" y="{y}" fill="{TEXT}">{escape(label)}</text>')
        for x, is_bar in _grid(pic):
            out.append(
                f'<line x1="{x}" y1="{lane.top}" x2="{x}" y2="{lane.top + lane.height}" '
                f'stroke="{BAR if is_bar else BEAT}" class="{"bar" if is_bar else "beat"}"/>'
            )
        for b in lane.boxes:
            out.append(
                f'<rect class="note" x="{b.x}" y="{b.y}" width="{b.w}" height="{b.h}" fill="{b.colour}" '
                f'stroke="#000" stroke-width="0.5" data-pitch="{b.pitch}" data-step="{b.step}" data-steps="{b.steps}"/>'
            )
        out.append(f'<text x="{LEFT_PX + 2}" y="{lane.top + 8}" fill="{TEXT}">{escape(lane.title)}</text></g>')
    out.append("</svg>")
    return "\n".join(out).encode()


def to_png(sequences) -> bytes:
    """The same piano roll drawn with Pillow, as a PNG file."""
    from PIL import Image, ImageDraw, ImageFont

    pic = layout(sequences)
    image = Image.new("RGB", (pic.width, pic.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for y, text in pic.titles:
        if text:
            draw.text((2, y - 10), text, fill=TEXT, font=font)
    for lane in pic.lanes:
        bottom = lane.top + lane.height - 1
        draw.rectangle([LEFT_PX, lane.top, pic.width - 1, bottom], fill=LANE_BG)
        for x, is_bar in _grid(pic):
            draw.line([x, lane.top, x, bottom], fill=BAR if is_bar else BEAT)
        for pitch in lane.rows:
            label = _row_label(lane, pitch, ascii_only=True)
            if label:
                draw.text((2, lane.row_y(pitch) + lane.row_px // 2 - 6), label, fill=TEXT, font=font)
        for b in lane.boxes:
            draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], fill=b.colour, outline="#000000")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
