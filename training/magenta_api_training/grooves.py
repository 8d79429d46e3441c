"""A project-owned drum groove library (Apache-2.0, written for magenta-api), as data.

No permissively licensed drum corpus ships in a package, so the drum model learns from these
hand-written patterns. Each style lists one-bar parts per instrument on a 16th-note grid
(``x`` hit, ``g`` ghost note, ``.`` rest); :func:`expand` combines kick and snare variants,
cymbal layers, second-bar variations, fills and crashes into thousands of distinct 2-bar windows.

Instruments are Magenta's 9 drum classes (note_seq ``DEFAULT_DRUM_TYPE_PITCHES``, the
``REDUCED_DRUM_PITCH_CLASSES`` of MusicVAE's DrumsConverter): 0 kick, 1 snare, 2 closed hi-hat,
3 open hi-hat, 4 low tom, 5 mid tom, 6 high tom, 7 crash, 8 ride. A step's label is the
``MultiDrumOneHotEncoding`` index ``sum(2 ** class)`` over the classes hit (0..511).
"""

import hashlib
import itertools

import numpy as np

KICK, SNARE, HH, OHH, LTOM, MTOM, HTOM, CRASH, RIDE = range(9)
CLASS_NAMES = ("kick", "snare", "closed_hh", "open_hh", "low_tom", "mid_tom", "high_tom", "crash", "ride")
# A General MIDI pitch per class (the first of each class in note_seq's map), for rendering.
CLASS_PITCHES = (36, 38, 42, 46, 45, 48, 50, 49, 51)
STEPS = 16

# Cymbal layers: {instrument: one-bar pattern}.
CYMBALS = {
    "hh8": {HH: "x.x.x.x.x.x.x.x."},
    "hh16": {HH: "xxxxxxxxxxxxxxxx"},
    "hh4": {HH: "x...x...x...x..."},
    "hh8_open": {HH: "x.x.x.x.x.x.x...", OHH: "..............x."},
    "hh_offbeat_open": {HH: "x...x...x...x...", OHH: "..x...x...x...x."},
    "ride8": {RIDE: "x.x.x.x.x.x.x.x."},
    "ride4_foot": {RIDE: "x...x...x...x...", HH: "....x.......x..."},
    "hh16_accent": {HH: "xx.xxx.xxx.xxx.x"},
    "shuffle_hh": {HH: "x..xx..xx..xx..x"},
    "shuffle_ride": {RIDE: "x..xx..xx..xx..x"},
    "jazz_ride": {RIDE: "x...x..xx...x..x", HH: "....x.......x..."},
    "hh_upbeat16": {HH: "x.xxx.xxx.xxx.xx"},
    "ride_bell8": {RIDE: "x.x.x.x.x.x.x.x.", HH: "....x.......x..."},
    "crash4": {CRASH: "x...x...x...x..."},
    "none": {},
}

# Styles: kick and snare variants (one bar each), which cymbal layers suit them, and extra
# fixed parts (toms, rim patterns) some styles carry.
STYLES = {
    "rock": {
        "kick": [
            "x.......x.......",
            "x.......x.x.....",
            "x......xx.......",
            "x.x.....x.......",
            "x.......x....x..",
            "x..x....x.x.....",
            "x.......xx......",
        ],
        "snare": ["....x.......x...", "....x.......x..x", "....x..x....x...", "....x.......xx.."],
        "cymbals": ["hh8", "hh16", "hh4", "hh8_open", "ride8", "crash4"],
    },
    "pop": {
        "kick": ["x.......x.......", "x..x..x...x.....", "x.....x.x.......", "x..x....x..x...."],
        "snare": ["....x.......x...", "....x...g...x...", "....x.......x.g."],
        "cymbals": ["hh8", "hh16_accent", "hh8_open"],
    },
    "funk": {
        "kick": [
            "x.....x...x.....",
            "x..x......x..x..",
            "x.x....x..x.....",
            "x......x.x...x..",
            "x.x...x...x..x..",
            "x..x..x.......x.",
        ],
        "snare": ["....x..g.g..x...", "....x.......x...", "....x.g..g..x.g.", ".g..x..g.g.gx...", "....x..x.x..x..."],
        "cymbals": ["hh16", "hh16_accent", "hh8_open", "hh_upbeat16"],
    },
    "shuffle": {
        "kick": ["x.......x.......", "x......xx.......", "x..x....x..x....", "x.......x..x...."],
        "snare": ["....x.......x...", "....x..g....x..g", "...gx......gx..."],
        "cymbals": ["shuffle_hh", "shuffle_ride"],
    },
    "bossa_nova": {
        "kick": ["x..xx..xx..xx..x", "x..x..x.x..x..x.", "x...x...x...x..."],
        "snare": ["x..x..x...x..x..", "..x..x...x..x...", "x..x...x..x..x.."],
        "cymbals": ["hh8", "ride8", "hh16"],
    },
    "samba": {
        "kick": ["x..xx..xx..xx..x", "...x...x...x...x", "x..x...xx..x...x"],
        "snare": ["..x..x.x..x.x..x", "x.xx.x.xx.xx.x.x", "..x...x...x..x.x"],
        "cymbals": ["hh16", "hh4", "ride8"],
    },
    "hiphop": {
        "kick": ["x......x..x.....", "x.x.......x..x..", "x......xx.....x.", "x..x......x.....", "x.....x...x..x.."],
        "snare": ["....x.......x...", "....x.......x..g", "....x..g....x...", "....x....g..x..."],
        "cymbals": ["hh8", "hh16", "shuffle_hh", "hh8_open"],
    },
    "reggae_one_drop": {
        "kick": ["........x.......", "........x.....x.", "........x......."],
        "snare": ["........x.......", "........x...x...", "....g...x......."],
        "cymbals": ["hh_offbeat_open", "hh8", "shuffle_hh", "ride4_foot"],
    },
    "reggae_steppers": {
        "kick": ["x...x...x...x...", "x...x...x...x..x"],
        "snare": ["........x.......", "....x.......x...", "........x...x.x."],
        "cymbals": ["hh_offbeat_open", "hh8", "hh16"],
    },
    "march": {
        "kick": ["x.......x.......", "x...x...x...x..."],
        "snare": ["x.xxx.x.x.xxx.x.", "x.x.x.xxx.x.x.xx", "xxx.x.x.xxx.x.x.", "x..xx..xx.xxx.x."],
        "cymbals": ["crash4", "none", "hh4"],
    },
    "disco": {
        "kick": ["x...x...x...x...", "x...x...x...x..x"],
        "snare": ["....x.......x...", "....x..g....x..."],
        "cymbals": ["hh_offbeat_open", "hh16", "hh8_open"],
    },
    "jazz": {
        "kick": ["x...x...x...x...", "..........x.....", "......x.......x.", "................"],
        "snare": ["..g....g..g....g", "......g.....g...", "...g......g..g..", "......x........x"],
        "cymbals": ["jazz_ride", "shuffle_ride", "ride4_foot"],
    },
    "afrobeat": {
        "kick": ["x.....x...x..x..", "x..x..x...x.....", "x.....x.x...x..."],
        "snare": ["....x..x.x..x.x.", "..g.x..g.g..x...", "....x.g..x.gx..."],
        "cymbals": ["hh_upbeat16", "hh16", "hh8_open"],
        "extra": {LTOM: "..............x.", MTOM: "..........x....."},
    },
    "metal": {
        "kick": ["xxxxxxxxxxxxxxxx", "x.x.x.x.x.x.x.x.", "xx.xxx.xxx.xxx.x", "x.xxx.xxx.xxx.xx"],
        "snare": ["....x.......x...", "x...x...x...x..."],
        "cymbals": ["crash4", "ride8", "hh8", "ride_bell8"],
    },
    "half_time": {
        "kick": ["x.........x.....", "x.....x...x.....", "x..x......x....x"],
        "snare": ["........x.......", "........x.....g.", "...g....x......."],
        "cymbals": ["hh8", "hh16", "ride8", "hh8_open"],
    },
    "twelve_eight": {  # a compound-time feel approximated on the straight-16 grid
        "kick": ["x.....x.........", "x........x......", "x.....x..x......"],
        "snare": ["......x.........", "......x.....x...", "...g..x.....x..."],
        "cymbals": ["shuffle_hh", "shuffle_ride", "hh8"],
    },
    "drum_and_bass": {
        "kick": ["x.........x.....", "x.........xx....", "x......x..x....."],
        "snare": ["....x.......x...", "....x..g.g..x...", "....x....x..x..g"],
        "cymbals": ["hh8", "hh16", "ride8"],
    },
    "punk": {
        "kick": ["x.x.x.x.x.x.x.x.", "x...x...x...x...", "x.x...x.x.x...x."],
        "snare": ["....x.......x...", "..x...x...x...x.", "x.x.x.x.x.x.x.x."],
        "cymbals": ["hh8", "crash4", "ride8"],
    },
    "songo": {
        "kick": ["...x......x.....", "...x..x...x....."],
        "snare": ["..g..x.g...g.x..", ".g...x.g..g..x.g"],
        "cymbals": ["ride4_foot", "hh8", "ride_bell8"],
        "extra": {HTOM: "..............x.", LTOM: "...........x...."},
    },
    "second_line": {
        "kick": ["x.....x...x.....", "x..x..x.....x..."],
        "snare": ["x.gx.gx.g.x.x.gx", "..x..x.x.g.x.x.x", "x..x..x...x.x.xx"],
        "cymbals": ["none", "crash4", "hh4"],
    },
    "motown": {
        "kick": ["x.x.....x.x.....", "x..x..x.x......."],
        "snare": ["x...x...x...x...", "....x.......x..."],
        "cymbals": ["hh8", "hh4", "hh16"],
    },
}

# Fills on the end of the second bar: {instrument: pattern over the last len(pattern) steps}.
FILLS = {
    "snare4": {SNARE: "xxxx"},
    "snare_flam4": {SNARE: "x.xx", KICK: "x..."},
    "toms_down4": {HTOM: "x...", MTOM: ".x..", LTOM: "..xx"},
    "toms_down8": {SNARE: "xx......", HTOM: "..xx....", MTOM: "....xx..", LTOM: "......xx"},
    "snare_roll8": {SNARE: "x.x.xxxx", KICK: "x......."},
    "toms8": {HTOM: "x.x.....", MTOM: "....x.x.", LTOM: ".......x", KICK: "x...x..."},
    "triplet_ish8": {SNARE: "x..x..x.", HTOM: ".x..x...", LTOM: "......xx", KICK: "..x..x.."},
    "full_bar_toms": {
        SNARE: "xxxx............",
        HTOM: "....xxxx........",
        MTOM: "........xxxx....",
        LTOM: "............xxxx",
    },
    "kick_snare_unison4": {KICK: "x.x.", SNARE: "x.x.", CRASH: "....", OHH: "...x"},
    "open_hat_lift": {OHH: "..x.", SNARE: "x..."},
}
SECOND_BAR = ("same", "kick_variant", "snare_variant", "open_end") + tuple(FILLS)


def _parse(pattern: str, offset: int, roll: np.ndarray, cls: int):
    for k, ch in enumerate(pattern):
        if ch in "xg":
            roll[offset + k, cls] = True


def _bar(style: dict, kick: str, snare: str, cymbals: str) -> np.ndarray:
    roll = np.zeros((STEPS, 9), bool)
    _parse(kick, 0, roll, KICK)
    _parse(snare, 0, roll, SNARE)
    for cls, pat in CYMBALS[cymbals].items():
        _parse(pat, 0, roll, cls)
    for cls, pat in style.get("extra", {}).items():
        _parse(pat, 0, roll, cls)
    return roll


def _second_bar(style, ki, si, cym, variant) -> np.ndarray:
    kicks, snares = style["kick"], style["snare"]
    if variant == "kick_variant":
        return _bar(style, kicks[(ki + 1) % len(kicks)], snares[si], cym)
    if variant == "snare_variant":
        return _bar(style, kicks[ki], snares[(si + 1) % len(snares)], cym)
    roll = _bar(style, kicks[ki], snares[si], cym)
    if variant == "open_end":
        roll[14, HH] = False
        roll[14, OHH] = True
    elif variant in FILLS:
        fill = FILLS[variant]
        n = max(len(p) for p in fill.values())
        roll[STEPS - n :] = False  # the fill replaces the groove at the end of the bar
        for cls, pat in fill.items():
            _parse(pat, STEPS - len(pat), roll, cls)
    return roll


def roll_to_labels(roll: np.ndarray) -> np.ndarray:
    """[T, 9] bool -> [T] MultiDrumOneHotEncoding indices."""
    return (roll.astype(np.int64) << np.arange(9)).sum(axis=-1)


def labels_to_roll(labels) -> np.ndarray:
    labels = np.asarray(labels, np.int64)
    return ((labels[..., None] >> np.arange(9)) & 1).astype(bool)


def expand(small: bool = False):
    """Yield (style, group key, labels [32]) for every combination of the library."""
    for name, style in STYLES.items():
        kicks, snares, cymbals = style["kick"], style["snare"], style["cymbals"]
        combos = itertools.product(range(len(kicks)), range(len(snares)), cymbals, SECOND_BAR, (False, True))
        for ki, si, cym, variant, crash in combos:
            if small and (ki > 0 or si > 0 or crash):
                continue
            first = _bar(style, kicks[ki], snares[si], cym)
            if crash:
                first[0, CRASH] = True
                first[0, KICK] = True
            second = _second_bar(style, ki, si, cym, variant)
            yield name, f"{name}/{ki}/{si}", roll_to_labels(np.concatenate([first, second]))


def _held_out(group: str, seed: int, fraction: float) -> bool:
    h = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def train_validation_windows(seed: int = 0, small: bool = False, fraction: float = 0.12):
    """Unique windows split by (style, kick variant, snare variant) groups: a held-out group's
    grooves are never seen in training, only their cymbal/fill relatives in other groups."""
    train, valid = {}, {}
    for _, group, labels in expand(small):
        key = tuple(int(x) for x in labels)
        (valid if _held_out(group, seed, fraction) else train)[key] = True
    for key in list(valid):
        train.pop(key, None)
    tr = np.array(sorted(train), np.int64).reshape(-1, 2 * STEPS)
    va = np.array(sorted(valid), np.int64).reshape(-1, 2 * STEPS)
    if not len(va):  # tiny libraries (smoke runs): hold out a few windows anyway
        tr, va = tr[: max(1, len(tr) - 4)], tr[max(1, len(tr) - 4) :]
    return tr, va
