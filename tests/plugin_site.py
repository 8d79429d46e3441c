"""Installs plugin distributions with pip, as a user would, into a folder put on the path."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "magenta-api-markov"
BROKEN = [ROOT / "tests" / "fixtures" / "plugins" / n for n in ("broken-import", "broken-hook", "faulty")]


def pip_install(target: Path, *projects: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), *map(str, projects)],
        check=True,
    )
    return target
