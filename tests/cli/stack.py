"""`voicecall` run as a real subprocess (`python -m voice_call.cli`), for the tests in this folder.

`Cli` runs one command with a config and a clean environment (no carrier keys, a state folder
of the test's own); `mock_config` is a mock-carrier config whose callee says `REPLIES`;
`wait_for_port`, `stop` and `read_lines` drive a long-running `voicecall serve` or `tail`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPLIES = ["Hello, who is this?", "Yes, Tuesday works.", "Goodbye then."]


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOICECALL_", "TWILIO_", "TELNYX_", "PLIVO_", "NGROK_"))
        and k not in ("OPENAI_API_KEY", "ELEVENLABS_API_KEY")
    }
    env["HOME"] = str(tmp_path / "user-home")
    env["VOICECALL_HOME"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def mock_config(port: int) -> dict[str, Any]:
    return {
        "provider": "mock",
        "toNumber": "+15555550123",
        "serve": {"port": port},
        "outbound": {"defaultMode": "notify"},
        "maxConcurrentCalls": 3,
        "responder": {"provider": "none"},
        "mock": {"answerDelayMs": 20, "replyDelayMs": 40, "replies": REPLIES},
    }


class Cli:
    def __init__(self, env: dict[str, str], config: Path | None) -> None:
        self.env = env
        self.config = config

    def argv(self, *args: str) -> list[str]:
        prefix = ["--config", str(self.config)] if self.config else []
        return [sys.executable, "-m", "voice_call.cli", *prefix, *args]

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def json(self, *args: str) -> Any:
        done = self.run("--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def wait_for_port(proc: subprocess.Popen[str], port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"serve exited early ({proc.returncode}):\n{out}\n{err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"serve did not listen on port {port} within {timeout} s")


def stop(proc: subprocess.Popen[str], timeout: float = 15) -> tuple[str, str]:
    """Stop with SIGTERM, as a process manager would: unlike SIGINT it is not ignored when the
    test run itself was started in the background (`nohup`, `&`)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def read_lines(proc: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(lines.get(timeout=0.1))
        except queue.Empty:
            continue
    return got
