"""Installs plugin distributions with pip, as a user would, into a folder put on the path."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "magenta-api-markov"
BROKEN = [ROOT / "tests" / "fixtures" / "plugins" / n for n in ("broken-import", "broken-hook", "faulty")]


def pip_install(target: Path, *projects: Path) -> Path:
    """pip-install copies of the projects (so that build folders land in a temporary place, not the repo)."""
    sources = target.parent / f"{target.name}-src"
    copies = [
        shutil.copytree(p, sources / p.name, ignore=shutil.ignore_patterns("build", "*.egg-info")) for p in projects
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, copies),
        ],
        check=True,
    )
    return target
