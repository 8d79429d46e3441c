"""Shared bits of the embedded-models tests: the training package on sys.path, fixture paths."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "embedded"
if str(ROOT / "training") not in sys.path:  # until the lead's pip install -e . covers training/
    sys.path.insert(0, str(ROOT / "training"))


def magenta_var_list(name):
    """{variable name: shape tuple} from a ``vars_<config>.txt`` dump of a Magenta checkpoint."""
    out = {}
    for line in (FIX / f"vars_{name}.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or parts[0] == "TOTAL_PARAMS":
            continue
        dims = parts[1].strip("[]")
        out[parts[0]] = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
    return out
