"""The load benchmarks' smoke modes run and check what they claim (each in its own processes:
the benchmarks pin themselves to a core, which must not happen to the test runner).

`webhooks --smoke`: signed status callbacks into `voicecall serve`, every 2xx'd one found in
the store after a kill -9; `load --smoke`: 10 emulated conversations end to end with complete
transcripts and no event missing. Both raise (exit non-zero) when a check fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str) -> list[dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    return [
        dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def test_webhooks_smoke() -> None:
    rows = _bench("webhooks")
    assert [row["offered /s"] for row in rows] == ["200", "max", "completed (ends call)"]
    for row in rows:
        assert row["non-2xx"] == "0" and int(row["2xx /s"]) > 0


def test_load_smoke() -> None:
    (row,) = _bench("load")
    assert row["complete transcripts"] == "10/10"
    assert int(row["peak live"]) >= 5  # all 10 overlap unless the machine is very slow
    assert row["non-2xx / failed"] == "0"
    assert int(row["reply turns"]) == 30  # three echo replies per call
