"""The mutation-testing tool keeps working: `python -m bench mutants --smoke` mutates the replay
cache and the stream tokens a few times, every mutant is killed (or judged equivalent), and the
project's own source files are left exactly as they were."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATED = ("src/voice_call/security/replay.py", "src/voice_call/security/stream_tokens.py")


def _digests() -> dict[str, str]:
    return {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for p in MUTATED}


def test_mutants_smoke_kills_every_mutant_and_leaves_the_source_alone() -> None:
    before = _digests()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "mutants", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _digests() == before
    assert "survived:" not in done.stdout
    rows = {
        cells[2]: cells
        for line in done.stdout.splitlines()
        if line.startswith("| security")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    for path in ("security/replay.py", "security/stream_tokens.py"):
        _, module, _, mutants, killed, equivalent, survived, rate, _, _ = rows[path]
        assert module == "security" and int(mutants) == 3
        assert int(killed) + int(equivalent) == 3 and survived == "0" and rate == "100.0%"
    assert "killed" in done.stderr  # the progress lines name each mutant's fate
