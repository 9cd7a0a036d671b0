"""`python -m bench.media_path`: our media path without sockets, as the README's figures ran it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_media_path_runs_and_writes_once_per_outbound_frame() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.media_path", "0.2"],
        cwd=ROOT,
        env={**os.environ, "VOICECALL_BENCH_STREAMS": "4"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    figures = json.loads(out)
    assert figures["frames in"] == 4 * 10 and figures["frames out"] >= 4 * 10
    # A frame and the mark after it leave in one write: one socket write per outbound frame.
    assert figures["writes per frame out"] == 1.0
    assert figures["out µs/frame"] > 0 and figures["in µs/frame"] > 0
