"""`python -m bench.webhook_path`: our webhook path without sockets, as the README ran it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_webhook_path_answers_every_callback_and_stores_each_event() -> None:
    # The driver itself fails unless every webhook got a 200 and its event is in the store.
    out = subprocess.run(
        [sys.executable, "-m", "bench.webhook_path", "40"],
        cwd=ROOT,
        env={**os.environ, "VOICECALL_BENCH_CALLS": "5"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    match = re.fullmatch(r"40 webhooks: ([0-9.]+) µs CPU each\n", out)
    assert match is not None, out
    assert float(match.group(1)) > 0
