"""The peer libraries the side-by-side benchmarks run against, each in a venv of its own under
~/.cache/vaecli-bench (made on first use with pip, from the package registry)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path.home() / ".cache" / "vaecli-bench"


def python_of(name: str, packages: list) -> Path:
    """The python of the venv ``name``, made and given ``packages`` when it does not exist."""
    venv = BENCH / name
    python = venv / "bin" / "python"
    if not python.exists():
        BENCH.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    return python
