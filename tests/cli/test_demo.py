"""`voicecall demo`: a whole simulated call, end to end, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from voice_call.cli.demo import CALLEE_LINES


def test_demo_runs_a_call_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env["HOME"] = str(home)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "voice_call.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 20
    for line in CALLEE_LINES:
        assert f"caller: {line}" in done.stdout
    assert "bot:" in done.stdout
    assert "call ended: hangup-user" in done.stdout
    assert "end reason:  hangup-user" in done.stdout
    assert "Traceback" not in done.stderr
    assert not (home / ".voicecall").exists()  # the demo never touches the real state folder
