"""The `voicecall` command line, run as a real subprocess against a real `voicecall serve`."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port

REPLIES = ["Hello, who is this?", "Yes, Tuesday works.", "Goodbye then."]
SECRET = "tw-secret-token-0123456789abcdef"


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
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def poll(check: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


# ------------------------------------------------------------------------ no server needed


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), None).run("--help")
    assert done.returncode == 0, done.stderr
    for command in (
        "serve",
        "call",
        "continue",
        "speak",
        "dtmf",
        "end",
        "status",
        "tail",
        "demo",
        "config",
        "tool-schema",
    ):
        assert f"  {command} " in done.stdout, command
    assert "--json" in done.stdout and "--config" in done.stdout


def test_config_check_prints_redacted_config(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "good.json5",
        {
            "provider": "mock",
            "toNumber": "+15555550123",
            "twilio": {"accountSid": "AC0123", "authToken": SECRET},
            "openaiApiKey": SECRET,
        },
    )
    cli = Cli(base_env(tmp_path), config)
    done = cli.run("config", "check")
    assert done.returncode == 0, done.stderr
    assert "Config OK" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    shown = json.loads(done.stdout.split("\n", 1)[1])
    assert shown["provider"] == "mock"
    assert shown["twilio"]["authToken"].startswith("***")
    machine = cli.json("config", "check")
    assert machine["ok"] is True and machine["path"] == str(config)
    assert SECRET not in json.dumps(machine)


def test_config_check_lists_every_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bad.json5",
        {"provider": "twilio", "fromNumber": "12", "serve": {"port": "abc"}, "bogus": 1},
    )
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    for path in ("fromNumber:", "serve.port:", "bogus:", "twilio.accountSid:", "twilio.authToken:"):
        assert any(line.strip().startswith(path) for line in lines), (path, done.stderr)


def test_config_errors_exit_2_for_every_command(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.json5", {"serve": {"port": -1}})
    done = Cli(base_env(tmp_path), config).run("status")
    assert done.returncode == 2
    assert "serve.port" in done.stderr and "Traceback" not in done.stderr


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), tmp_path / "nope.json5").run("config", "check")
    assert done.returncode == 2
    assert "file not found" in done.stderr


def test_call_without_server_says_how_to_start_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json5", mock_config(free_port()))
    done = Cli(base_env(tmp_path), config).run("call", "--message", "hi")
    assert done.returncode == 1
    assert "voicecall serve" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), None).run("call")
    assert done.returncode == 2
    assert "--message" in done.stderr


def test_tool_schema_prints_the_schema(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), None).run("tool-schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["function"]["name"] == "voice_call"


# ------------------------------------------------------------------------ against `serve`


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Cli, int, subprocess.Popen[str]]]:
    port = free_port()
    config = write_config(tmp_path / "config.json5", mock_config(port))
    cli = Cli(base_env(tmp_path), config)
    proc = cli.popen("serve")
    try:
        wait_for_port(proc, port)
        yield cli, port, proc
    finally:
        stop(proc)


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


def test_full_flow_against_a_server(
    served: tuple[Cli, int, subprocess.Popen[str]],
) -> None:
    cli, port, server = served

    started = cli.json("call", "--mode", "conversation", "--message", "Hello there")
    assert started["initiated"] is True
    call_id = started["callId"]

    listed = cli.run("status")
    assert listed.returncode == 0, listed.stderr
    assert call_id in listed.stdout

    # The greeting is followed by listening, which consumes the callee's first line.
    def first_reply_heard() -> bool:
        call = cli.json("status", "--call-id", call_id, "--full")["call"]
        return any(e["speaker"] == "user" for e in call.get("transcript", []))

    poll(first_reply_heard)

    reply = cli.run("continue", "--call-id", call_id, "--message", "Does Tuesday work?")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.strip() == REPLIES[1]

    assert cli.json("dtmf", "--call-id", call_id, "--digits", "12#") == {"success": True}
    spoken = cli.run("speak", "--call-id", call_id, "--message", "One moment please")
    assert spoken.returncode == 0, spoken.stderr

    # tail: the last 5 events as JSON lines, then following live; Ctrl-C exits 0.
    tail = cli.popen("--json", "tail", "--since", "5")
    try:
        lines = read_lines(tail, 5, timeout=10)
    finally:
        tail.send_signal(signal.SIGINT)
        tail.wait(timeout=10)
    assert tail.returncode == 0
    events = [json.loads(line) for line in lines]
    assert len(events) == 5
    assert all({"seq", "callId", "type", "at"} <= set(e) for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    ended = cli.run("end", "--call-id", call_id)
    assert ended.returncode == 0, ended.stderr

    shown = cli.run("status", "--call-id", call_id, "--full")
    assert shown.returncode == 0, shown.stderr
    assert "hangup-bot" in shown.stdout
    assert "Does Tuesday work?" in shown.stdout and REPLIES[1] in shown.stdout

    # Errors: invalid input is a usage error (2); an unknown call is a failure (1).
    bad_number = cli.run("call", "--to", "12345", "--message", "hi")
    assert bad_number.returncode == 2, bad_number.stderr
    assert "E.164" in bad_number.stderr and "Traceback" not in bad_number.stderr
    unknown = cli.run("end", "--call-id", "no-such-call")
    assert unknown.returncode == 1
    assert "no-such-call" in unknown.stderr
    after_end = cli.run("speak", "--call-id", call_id, "--message", "still there?")
    assert after_end.returncode == 1
    assert "not active" in after_end.stderr

    # A second server on the same port fails cleanly.
    second = cli.run("serve", timeout=30)
    assert second.returncode == 1
    assert "already in use" in second.stderr and "Traceback" not in second.stderr

    # With the server stopped, status reads the store read-only.
    out, _ = stop(server)
    assert server.returncode == 0
    assert f"127.0.0.1:{port}" in out and "rpc-token" in out
    offline = cli.run("--json", "status", "--call-id", call_id)
    assert offline.returncode == 0, offline.stderr
    assert "No server is running" in offline.stderr
    record = json.loads(offline.stdout)
    assert record["found"] is True and record["call"]["state"] == "hangup-bot"
    listing = cli.run("status")
    assert listing.returncode == 0, listing.stderr
    assert "No active calls" in listing.stdout


def test_status_without_server_or_store(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json5", mock_config(free_port()))
    cli = Cli(base_env(tmp_path), config)
    done = cli.run("status")
    assert done.returncode == 0, done.stderr
    assert "No active calls" in done.stdout
    assert "no call store" in done.stderr
    after = cli.run("status", "--json")  # --json may follow the command too
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == {"found": True, "calls": []}
    missing = cli.run("status", "--call-id", "abc")
    assert missing.returncode == 1
    assert not (tmp_path / "state" / "calls.db").exists()
