"""`startup`: how fast `voicecall --help` answers, and how long `voicecall demo` takes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


def _time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return (time.perf_counter() - started) * 1000


def run(smoke: bool) -> list[dict[str, Any]]:
    runs = 3 if smoke else 30
    cli = [sys.executable, "-m", "voice_call.cli"]
    _time([*cli, "--help"])  # warm the file cache
    help_ms = [_time([*cli, "--help"]) for _ in range(runs)]
    bare_ms = [_time([sys.executable, "-c", "pass"]) for _ in range(runs)]
    rows = [
        _row("voicecall --help", help_ms),
        _row("python -c pass (floor)", bare_ms),
    ]
    with tempfile.TemporaryDirectory() as home:
        import os

        env = {**os.environ, "HOME": home}
        demo_ms = [_time([*cli, "demo"], env) for _ in range(1 if smoke else 5)]
    rows.append(_row("voicecall demo (3-turn mock call)", demo_ms))
    return rows


def _row(what: str, samples: list[float]) -> dict[str, Any]:
    return {
        "what": what,
        "runs": len(samples),
        "median ms": round(statistics.median(samples), 1),
        "max ms": round(max(samples), 1),
    }
