"""`voicecall tail` with no server running: it reads the SQLite store a finished mock call left
behind (`--since` N events, a duration or a time; `--poll` keeps following the store)."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, mock_config, stop, wait_for_port, write_config
from tests.support import free_port, wait_until
from voice_call.cli.tail_store import Since, parse_since
from voice_call.config import parse_config
from voice_call.errors import InvalidInput
from voice_call.runtime import Runtime


async def finished_call(config: dict[str, Any], home: Path) -> str:
    """One conversation call on the mock carrier, start to hang-up, stored in `home`."""
    runtime = Runtime(parse_config(config), home)
    await runtime.start()
    try:
        record = await runtime.manager.initiate(to=None, message="Hello there", mode=None)

        async def answered_back() -> bool:
            found = await runtime.store.get(record.call_id)
            return found is not None and any(e.speaker.value == "user" for e in found.transcript)

        await wait_until(answered_back)
        await runtime.manager.end(record.call_id)
        await runtime.manager.settle()
    finally:
        await runtime.stop()
    return record.call_id


@pytest.fixture
def offline(tmp_path: Path) -> tuple[Cli, dict[str, Any], Path]:
    config = mock_config(free_port())  # nothing listens there: no server runs
    config["outbound"] = {"defaultMode": "conversation"}
    cli = Cli(base_env(tmp_path), write_config(tmp_path / "c.json5", config))
    return cli, config, tmp_path / "state"


class Lines:
    """One reader of a process's stdout, for several waits in turn."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line)

    def take(self, count: int, timeout: float = 20) -> list[str]:
        return [self.queue.get(timeout=timeout) for _ in range(count)]


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_since_reads_the_store_when_no_server_runs(
    offline: tuple[Cli, dict[str, Any], Path],
) -> None:
    cli, config, home = offline
    before = time.time() - 1
    call_id = asyncio.run(finished_call(config, home))

    recent = cli.run("--json", "tail", "--since", "10m")
    assert recent.returncode == 0, recent.stderr
    assert "No server is running" in recent.stderr and "--poll" in recent.stderr
    logged = events(recent.stdout)
    assert logged[0]["type"] == "call.created" and logged[-1]["type"] == "call.ended"
    assert {e["callId"] for e in logged} == {call_id}
    assert [e["seq"] for e in logged] == sorted(e["seq"] for e in logged)

    iso = datetime.fromtimestamp(before, UTC).isoformat().replace("+00:00", "Z")
    assert events(cli.run("--json", "tail", "--since", iso, "--call-id", call_id).stdout) == logged
    future = cli.run("--json", "tail", "--since", "2999-01-01T00:00:00Z")
    assert future.returncode == 0 and future.stdout == ""
    assert events(cli.run("--json", "tail", "--since", "3").stdout) == logged[-3:]
    assert cli.run("--json", "tail", "--since", "0").stdout == ""
    assert events(cli.run("tail", "--since", "1h", "--json").stdout) == logged  # --json after

    text = cli.run("tail", "--since", "1h")
    assert text.returncode == 0 and "call.ended" in text.stdout and call_id[:8] in text.stdout

    bad = cli.run("tail", "--since", "yesterday")
    assert bad.returncode == 2 and "--since 10m" in bad.stderr and "Traceback" not in bad.stderr
    too_fast = cli.run("tail", "--poll", "0.001")
    assert too_fast.returncode == 2 and "--poll" in too_fast.stderr


def test_poll_follows_the_store_for_new_events(
    offline: tuple[Cli, dict[str, Any], Path],
) -> None:
    cli, config, home = offline
    first = asyncio.run(finished_call(config, home))
    tail = cli.popen("--json", "tail", "--since", "1", "--poll", "0.1")
    try:
        lines = Lines(tail)
        [last_of_first] = lines.take(1)
        assert json.loads(last_of_first)["callId"] == first
        second = asyncio.run(finished_call(config, home))  # written while tail polls
        new = [json.loads(line) for line in lines.take(3)]
    finally:
        tail.send_signal(signal.SIGTERM)
        _, err = tail.communicate(timeout=10)
    assert tail.returncode == 0, err
    assert new[0]["type"] == "call.created" and {e["callId"] for e in new} == {second}
    assert "polling it for new events" in err


def test_no_store_and_no_server(tmp_path: Path) -> None:
    cli = Cli(base_env(tmp_path), write_config(tmp_path / "c.json5", mock_config(free_port())))
    done = cli.run("tail")
    assert done.returncode == 1
    assert "no call store" in done.stderr and "voicecall serve" in done.stderr
    assert "Traceback" not in done.stderr


def test_parse_since() -> None:
    now = 1_000_000.0
    assert parse_since("25", now) == Since(count=25)
    assert parse_since("90s", now) == Since(at=now - 90)
    assert parse_since("1h30m", now) == Since(at=now - 5400)
    assert parse_since("2D", now) == Since(at=now - 172_800)
    assert parse_since("1970-01-12T13:46:40Z", now) == Since(at=now)
    assert parse_since("1970-01-12T14:46:40+01:00", now) == Since(at=now)
    for bad in ("", "-5", "10x", "m", "10001", "tomorrow"):
        with pytest.raises(InvalidInput, match="--since"):
            parse_since(bad, now)


def test_with_a_server_a_time_since_starts_the_live_stream_there(tmp_path: Path) -> None:
    port = free_port()
    cli = Cli(base_env(tmp_path), write_config(tmp_path / "c.json5", mock_config(port)))
    server = cli.popen("serve")
    try:
        wait_for_port(server, port)
        call_id = cli.json("call", "--message", "Hi")["callId"]
        tail = cli.popen("--json", "tail", "--since", "10m", "--poll", "0.5")
        try:
            lines = Lines(tail)
            first = json.loads(lines.take(1)[0])
            assert first["type"] == "call.created" and first["callId"] == call_id
            second = cli.json("call", "--message", "Again")["callId"]  # followed live
            while json.loads(lines.take(1)[0])["callId"] != second:
                pass
        finally:
            tail.send_signal(signal.SIGTERM)
            _, err = tail.communicate(timeout=10)
        assert tail.returncode == 0, err
        assert "following it live" in err
    finally:
        stop(server)
