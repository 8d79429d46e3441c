"""Quality of the embedded models: 1,000 samples each from the service's NumPy engines, compared with
held-out data and with the same architecture at random (untrained) weights.

    PYTHONPATH=core:plugins:training python bench/quality.py [--samples 1000] [--json out.json] [--runs DIR]

Prints one markdown table per model (distances to held-out data, lower is better) and exits 1 if a
trained model is not closer than random weights on every metric. Needs the `train` extra (torch for
the random baseline, music21 for the held-out tunes). The metrics are defined in
training/magenta_api_training/evaluate.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for sub in ("core", "plugins", "training"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

if __name__ == "__main__":
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from magenta_api_training.cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
