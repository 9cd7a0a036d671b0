"""`voicecall start` (the plugin's alias of `call`), `--session-key`, and `continue` over
`continue.start` + `continue.result`, against a real `voicecall serve`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.cli.stack import REPLIES, Cli, base_env, mock_config, stop, wait_for_port, write_config
from tests.support import free_port, wait_until
from voice_call.cli.main import cli as voicecall


def options(command: str) -> list[str]:
    result = CliRunner().invoke(voicecall, [command, "--help"], env={"VOICECALL_CONFIG": ""})
    assert result.exit_code == 0, result.output
    return [line.split()[0] for line in result.output.splitlines() if line.startswith("  -")]


def test_start_is_listed_and_takes_the_options_of_call() -> None:
    listed = CliRunner().invoke(voicecall, ["--help"], env={"VOICECALL_CONFIG": ""})
    assert "start" in listed.output and "alias of call" in listed.output
    assert options("start") == options("call")
    assert "--session-key" in options("call")
    assert "--dtmf-sequence" in options("call")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Cli]:
    port = free_port()
    config = write_config(tmp_path / "config.json5", mock_config(port))
    cli = Cli(base_env(tmp_path), config)
    proc: subprocess.Popen[str] = cli.popen("serve")
    try:
        wait_for_port(proc, port)
        yield cli
    finally:
        stop(proc)


def test_start_places_a_call_with_a_session_key_and_continue_gets_the_reply(
    served: Cli,
) -> None:
    cli = served
    args = ("--mode", "conversation", "--message", "Hello there", "--session-key", "team:alpha")
    started = cli.json("start", *args)
    assert started["initiated"] is True
    call_id = started["callId"]
    record = cli.json("status", "--call-id", call_id, "--full")["call"]
    assert record["sessionKey"] == "team:alpha" and record["mode"] == "conversation"

    async def first_reply_heard() -> bool:
        call = cli.json("status", "--call-id", call_id, "--full")["call"]
        return any(e["speaker"] == "user" for e in call.get("transcript", []))

    asyncio.run(wait_until(first_reply_heard))
    reply = cli.json("continue", "--call-id", call_id, "--message", "Does Tuesday work?")
    assert reply == {"success": True, "transcript": REPLIES[1]}
    assert cli.json("end", "--call-id", call_id) == {"success": True}
    ended = cli.run("continue", "--call-id", call_id, "--message", "Still there?")
    assert ended.returncode == 1 and "not active" in ended.stderr

    bad_keys = cli.run("call", "--mode", "conversation", "-m", "hi", "--dtmf-sequence", "12a")
    assert bad_keys.returncode == 2 and "dtmfSequence" in bad_keys.stderr
    keyed = cli.json("call", "--mode", "conversation", "-m", "hi", "--dtmf-sequence", "ww12#")
    keyed_call = cli.json("status", "--call-id", keyed["callId"], "--full")["call"]
    assert keyed_call["metadata"]["dtmfSequence"] == "ww12#"
    cli.json("end", "--call-id", keyed["callId"])

    empty = cli.run("start", "--message", "hi", "--session-key", "")
    assert empty.returncode == 2 and "sessionKey" in empty.stderr
    assert "Traceback" not in empty.stderr
