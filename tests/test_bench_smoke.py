"""The benchmark harness keeps working: each benchmark's smoke mode runs and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def smoke(name: str) -> str:
    """`python -m bench <name> --smoke`'s table."""
    return subprocess.run(
        [sys.executable, "-m", "bench", name, "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def test_startup_smoke() -> None:
    out = smoke("startup")
    assert "| voicecall --help | 3 |" in out
    assert "voicecall demo" in out


def test_streams_smoke() -> None:
    out = smoke("streams")
    row = out.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "4" and row[2].strip() == "4"  # 4 streams asked, 4 live
    assert int(row[3]) > 100  # frames out per second (50 a stream)


def test_stream_turns_smoke() -> None:
    out = smoke("stream_turns")
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines()[2:]}
    endpointing = rows["endpointing (last speech frame → final)"]
    assert endpointing[3].strip() == "4"  # 2 calls x 2 reply turns, every one measured
    assert float(endpointing[4]) >= 300  # the fake VAD's 300 ms of quiet, at least
    assert rows["overhead (v2v − the three above)"][3].strip() == "4"
