"""Melody data from music21's offline corpus (public-domain tune books), in Magenta's encodings.

Only three collections are used: O'Neill's Music of Ireland (``oneills1850``), Ryan's Mammoth
Collection (``ryansMammoth``) and Aird's Selection of Airs (``airdsAirs``). Essen is excluded
(non-commercial licence). Tunes in 4/4 (``C``) and 2/2 (``C|``) are parsed with music21 and turned
into Magenta melody event lists at 16th-note steps: ``-2`` no event (hold), ``-1`` note-off,
``0..127`` note-on, exactly as ``note_seq.Melody``. Windows are encoded with
``note_seq.MelodyOneHotEncoding(min_note, max_note)``: index 0 = no event, 1 = note-off,
``2 + pitch - min_note`` = note-on.

The train/validation split is by tune (a hash of the normalised title with a fixed seed), so
the same tune printed in two books never lands on both sides.
"""

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs")
STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 16
NO_EVENT, NOTE_OFF = -2, -1
# cat-mel_2bar: MelodyOneHotEncoding(21, 109) -> 90 classes.
VAE_MIN_PITCH, VAE_MAX_PITCH = 21, 108
# basic_rnn: MelodyOneHotEncoding(48, 84) -> 38 classes.
RNN_MIN_NOTE, RNN_MAX_NOTE = 48, 84
ACCEPTED_METERS = {"C", "C|", "4/4", "2/2"}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)


def corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def encode_events(events, min_note: int) -> np.ndarray:
    """Magenta's MelodyOneHotEncoding.encode_event for a whole event list."""
    ev = np.asarray(events, np.int64)
    return np.where(ev < 0, ev + 2, ev - min_note + 2).astype(np.int64)


def decode_events(indices, min_note: int) -> np.ndarray:
    idx = np.asarray(indices, np.int64)
    return np.where(idx < 2, idx - 2, idx - 2 + min_note)


def split_abc_tunes(text: str):
    """Split an ABC file into (file header, [tune text]) on ``X:`` lines."""
    parts = re.split(r"(?m)^(?=X:)", text)
    header = parts[0] if not parts[0].lstrip().startswith("X:") else ""
    tunes = [p for p in parts if p.lstrip().startswith("X:")]
    return header, tunes


def _field(tune: str, name: str) -> str:
    m = re.search(rf"(?m)^{name}:\s*(.*)$", tune)
    return m.group(1).strip() if m else ""


def tune_key(title: str) -> str:
    """A normalised title, so duplicates across books share one split."""
    t = re.sub(r"[^a-z0-9]+", "", title.lower())
    t = re.sub(r"(reel|hornpipe|jig|strathspey|the)", "", t)
    return t or title


def tune_in_validation(title: str, seed: int = 0, fraction: float = 0.1) -> bool:
    h = hashlib.sha256(f"{seed}:{tune_key(title)}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def _meters(tune: str):
    return [m.strip() for m in re.findall(r"(?m)^M:\s*(\S+)", tune)] + re.findall(r"\[M:\s*(\S+?)\]", tune)


def _measure_starts(measures, shift: float):
    """Start (quarters) of each measure of an expanded part: measures follow one another, except that
    a full-length measure starts on the next bar line (a short closing bar of a repeated part, whose
    complementing pickup the repeat does not play again, leaves a rest instead of shifting the grid)."""
    starts, at = [], 0.0
    for k, m in enumerate(measures):
        try:
            bar_q, dur_q = float(m.barDuration.quarterLength), float(m.duration.quarterLength)
        except Exception:
            bar_q = dur_q = 0.0
        if k == 0:
            at = shift
        elif bar_q and dur_q >= bar_q and at % bar_q > 1e-6:
            at += bar_q - at % bar_q
        starts.append(at)
        at += dur_q
    return starts


def tune_to_events(tune_text: str, expand_repeats: bool = False):
    """Parse one ABC tune with music21; return its melody event list at 16th steps, or None.

    The grid is aligned to bar lines: a pickup bar shifts the tune so that its first full bar
    starts at a multiple of 16 steps. Ties are merged, grace notes and chord symbols dropped,
    chords reduced to their top note (Magenta keeps the highest pitch in polyphony).
    ``expand_repeats``: the tune as played, repeats and first/second endings written out
    (music21's ``expandRepeats``), each full bar on a bar line (16-bar windows: a tune's AABB form).
    """
    from music21 import chord, converter, harmony, note

    try:
        score = converter.parse(tune_text, format="abc")
    except Exception as exc:  # music21 raises many kinds on odd ABC
        log.debug("unparseable tune: %s", exc)
        return None
    if hasattr(score, "scores") and len(score.scores):
        score = score.scores[0]
    if not expand_repeats:
        try:
            score = score.stripTies()
        except Exception:
            pass
    parts = score.parts if hasattr(score, "parts") and len(score.parts) else [score]
    part = parts[0]
    if expand_repeats:
        try:
            part = part.expandRepeats()
        except Exception as exc:  # inconsistent repeat marks: the tune as written
            log.debug("repeats not expanded: %s", exc)
        try:
            part = part.stripTies()
        except Exception:
            pass
    measures = list(part.getElementsByClass("Measure"))
    shift = 0.0
    if measures:
        m0 = measures[0]
        try:
            bar_q = m0.barDuration.quarterLength
            dur_q = m0.duration.quarterLength
            if 0 < dur_q < bar_q:
                shift = bar_q - dur_q
        except Exception:
            pass
    placed = [(n, float(n.getOffsetInHierarchy(part)) + shift) for n in part.recurse().notes]
    if expand_repeats and measures:
        starts = _measure_starts(measures, shift)
        placed = [
            (n, at + float(n.getOffsetInHierarchy(m))) for m, at in zip(measures, starts) for n in m.recurse().notes
        ]
    onsets = []
    for n, off in placed:
        if isinstance(n, harmony.ChordSymbol) or n.duration.isGrace:
            continue
        if isinstance(n, chord.Chord):
            if not n.pitches:
                continue
            pitch = max(p.midi for p in n.pitches)
        elif isinstance(n, note.Note):
            pitch = n.pitch.midi
        else:
            continue
        start = int(round(off * STEPS_PER_QUARTER))
        end = int(round((off + float(n.quarterLength)) * STEPS_PER_QUARTER))
        onsets.append((start, max(end, start + 1), pitch))
    if not onsets:
        return None
    onsets.sort(key=lambda x: (x[0], -x[2]))
    total = max(e for _, e, _ in onsets)
    total = -(-total // STEPS_PER_BAR) * STEPS_PER_BAR
    ev = np.full(total, NO_EVENT, np.int64)
    for k, (s, e, p) in enumerate(onsets):
        if k and onsets[k - 1][0] == s:
            continue  # same onset: the highest pitch (sorted first) wins
        ev[s] = p
        nxt = next((o[0] for o in onsets[k + 1 :] if o[0] > s), total)
        end = min(e, nxt)
        if end < nxt and end < total:
            ev[end] = NOTE_OFF
    return ev


def iter_corpus_tunes(collections=COLLECTIONS, limit=None):
    """Yield (collection, title, tune_text) for every 4/4 or 2/2 tune of the collections."""
    root = corpus_dir()
    count = 0
    for coll in collections:
        for path in sorted((root / coll).glob("*.abc")):
            _header, tunes = split_abc_tunes(path.read_text(encoding="utf-8", errors="replace"))
            for tune in tunes:
                meters = _meters(tune)
                if not meters or any(m not in ACCEPTED_METERS for m in meters):
                    continue
                yield coll, _field(tune, "T") or f"{path.name}#{count}", tune
                count += 1
                if limit and count >= limit:
                    return


@dataclass
class TuneSet:
    """Event lists of all tunes, concatenated: ``events[offsets[i]:offsets[i+1]]`` is tune i."""

    events: np.ndarray
    offsets: np.ndarray
    titles: list
    collections: list
    valid: np.ndarray  # bool per tune

    def tune(self, i):
        return self.events[self.offsets[i] : self.offsets[i + 1]]

    def __len__(self):
        return len(self.titles)


def extract_tunes(collections=COLLECTIONS, limit=None, seed=0, progress=False, expand_repeats=False) -> TuneSet:
    """Every accepted tune of ``collections`` (see :func:`tune_to_events`), split by tune."""
    items = list(iter_corpus_tunes(collections, limit))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="parse ABC", unit="tune")
    evs, titles, colls = [], [], []
    for coll, title, text in items:
        ev = tune_to_events(text, expand_repeats)
        if ev is None or len(ev) < 2 * STEPS_PER_BAR:
            continue
        evs.append(ev)
        titles.append(title)
        colls.append(coll)
    offsets = np.cumsum([0] + [len(e) for e in evs])
    valid = np.array([tune_in_validation(t, seed) for t in titles], bool)
    log.info("parsed %d tunes (%d validation)", len(titles), valid.sum())
    return TuneSet(np.concatenate(evs) if evs else np.zeros(0, np.int64), offsets, titles, colls, valid)


def save_tunes(ts: TuneSet, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        events=ts.events,
        offsets=ts.offsets,
        titles=np.array(ts.titles),
        collections=np.array(ts.collections),
        valid=ts.valid,
    )


def load_tunes(path: Path) -> TuneSet:
    d = np.load(path)
    return TuneSet(d["events"], d["offsets"], list(d["titles"]), list(d["collections"]), d["valid"])


def melody_windows(
    ts: TuneSet,
    steps: int = 32,
    hop: int = STEPS_PER_BAR,
    validation=False,
    min_pitch=VAE_MIN_PITCH,
    max_pitch=VAE_MAX_PITCH,
) -> np.ndarray:
    """Unique bar-aligned windows as raw event lists [N, steps] from the train or validation tunes.

    A window needs at least one note-on, all its pitches in range, and (like Magenta's
    extractor with ``gap_bars=1``) no full bar of silence.
    """
    out = set()
    for i in range(len(ts)):
        if bool(ts.valid[i]) != validation:
            continue
        ev = ts.tune(i)
        for s in range(0, len(ev) - steps + 1, hop):
            w = ev[s : s + steps]
            notes = w[w >= 0]
            if not len(notes) or notes.min() < min_pitch or notes.max() > max_pitch:
                continue
            if any(not (w[b : b + STEPS_PER_BAR] >= 0).any() for b in range(0, steps, STEPS_PER_BAR)):
                continue
            out.add(tuple(int(x) for x in w))
    arr = np.array(sorted(out), np.int64).reshape(-1, steps)
    return arr


def major_key(events) -> int:
    """Most likely major key (0 = C) by counting notes in each major scale, as Melody.get_major_key."""
    pcs = np.asarray(events)[np.asarray(events) >= 0] % 12
    hist = np.bincount(pcs, minlength=12)
    scores = [sum(hist[(k + d) % 12] for d in MAJOR_SCALE) for k in range(12)]
    return int(np.argmax(scores))


def transpose_to_c(ev: np.ndarray, min_note=RNN_MIN_NOTE, max_note=RNN_MAX_NOTE):
    """Transpose to C major and shift by octaves into [min_note, max_note), as Melody.squash
    with ``transpose_to_key=0``; notes that still fall outside are folded by octaves."""
    ev = ev.copy()
    key = major_key(ev)
    shift = -key if key <= 6 else 12 - key
    on = ev >= 0
    if not on.any():
        return ev
    p = ev[on] + shift
    mid = (p.min() + p.max()) / 2
    p = p + 12 * int(round(((min_note + max_note) / 2 - mid) / 12))
    while (p < min_note).any():
        p[p < min_note] += 12
    while (p >= max_note).any():
        p[p >= max_note] -= 12
    ev[on] = p
    return ev


def rnn_windows(ts: TuneSet, steps: int = 64, hop: int = STEPS_PER_BAR, validation=False) -> np.ndarray:
    """basic_rnn training windows: tunes in C, squashed into [48, 84), raw event lists."""
    out = set()
    for i in range(len(ts)):
        if bool(ts.valid[i]) != validation:
            continue
        ev = transpose_to_c(ts.tune(i))
        for s in range(0, len(ev) - steps + 1, hop):
            w = ev[s : s + steps]
            if w[0] < 0 and s == 0:
                pass
            if (w >= 0).sum() < 4:
                continue
            out.add(tuple(int(x) for x in w))
    return np.array(sorted(out), np.int64).reshape(-1, steps)


def transpose_windows(
    windows: np.ndarray, amounts: np.ndarray, min_pitch=VAE_MIN_PITCH, max_pitch=VAE_MAX_PITCH
) -> np.ndarray:
    """Shift note-ons of each raw window by ``amounts[i]`` semitones (augmentation); rows that
    would leave the range keep their original pitches."""
    w = windows.copy()
    on = w >= 0
    shifted = np.where(on, w + amounts[:, None], w)
    ok = ((~on) | ((shifted >= min_pitch) & (shifted <= max_pitch))).all(axis=1)
    w[ok] = shifted[ok]
    return w
