"""The call commands (cli/call.py) and `voicecall serve` (cli/serve.py), run as real
subprocesses against a real `voicecall serve`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.stack import (
    REPLIES,
    Cli,
    base_env,
    mock_config,
    read_lines,
    stop,
    wait_for_port,
    write_config,
)
from tests.support import free_port, wait_until


def test_call_without_server_says_how_to_start_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json5", mock_config(free_port()))
    done = Cli(base_env(tmp_path), config).run("call", "--message", "hi")
    assert done.returncode == 1
    assert "voicecall serve" in done.stderr
    assert "Traceback" not in done.stderr


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
    async def first_reply_heard() -> bool:
        call = cli.json("status", "--call-id", call_id, "--full")["call"]
        return any(e["speaker"] == "user" for e in call.get("transcript", []))

    asyncio.run(wait_until(first_reply_heard))

    reply = cli.run("continue", "--call-id", call_id, "--message", "Does Tuesday work?")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.strip() == REPLIES[1]

    assert cli.json("dtmf", "--call-id", call_id, "--digits", "12#") == {"success": True}
    spoken = cli.run("speak", "--call-id", call_id, "--message", "One moment please")
    assert spoken.returncode == 0, spoken.stderr

    # tail: the last 5 events as JSON lines, then following live; SIGTERM exits 0.
    tail = cli.popen("--json", "tail", "--since", "5")
    try:
        lines = read_lines(tail, 5, timeout=10)
    finally:
        tail.send_signal(signal.SIGTERM)
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
