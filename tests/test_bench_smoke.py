"""The benchmark harness keeps working: each benchmark's smoke mode runs and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_startup_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "startup", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "| voicecall --help | 3 |" in out
    assert "voicecall demo" in out
