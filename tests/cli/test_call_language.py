"""`voicecall call --language`: passed to the server, a bad tag refused before any call."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.cli.stack import Cli, base_env, mock_config, stop, wait_for_port, write_config
from tests.support import free_port
from voice_call.cli.main import cli as voicecall


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


def test_call_passes_its_language(served: Cli) -> None:
    started = served.json("call", "--message", "您好", "--language", "zh_tw")
    record = served.json("status", "--call-id", started["callId"], "--full")["call"]
    assert record["metadata"]["language"] == "zh-TW"


def test_a_bad_language_stops_with_exit_2() -> None:
    args = ["call", "--message", "Hi", "--language", "not a tag!"]
    result = CliRunner().invoke(voicecall, args, env={"VOICECALL_CONFIG": ""})
    assert result.exit_code == 2, result.output
    assert "not a language tag" in result.output and "zh-TW" in result.output
