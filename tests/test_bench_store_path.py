"""`python -m bench.store_path`: the SQLite store's save without the server, as the README ran it.

Apart from tests/store/test_group_commit.py: the mutation runner copies src/ and tests/ only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_store_path_benchmark_runs_and_batches() -> None:
    """`python -m bench.store_path`, as bench/README.md runs it: K saves at a time, one commit."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.store_path", "64"],
        cwd=ROOT,
        env={**os.environ, "VOICECALL_BENCH_K": "1,8", "VOICECALL_BENCH_CALLS": "10"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    one, eight = (json.loads(line) for line in out.splitlines())
    assert (one["K"], one["commits/save"], one["batch sizes"]) == (1, 1.0, {"1": 64})
    assert (eight["K"], eight["commits/save"], eight["batch sizes"]) == (8, 0.125, {"8": 8})
    assert one["µs/save"] > 0 and eight["µs/save"] > 0
