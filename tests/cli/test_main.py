"""The root group (cli/main.py, cli/common.py): the command table, usage errors and config
errors as exit code 2, run as a real subprocess."""

from __future__ import annotations

from pathlib import Path

from tests.cli.stack import Cli, base_env, write_config


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


def test_usage_error_exits_2(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), None).run("call")
    assert done.returncode == 2
    assert "--message" in done.stderr


def test_config_errors_exit_2_for_every_command(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.json5", {"serve": {"port": -1}})
    done = Cli(base_env(tmp_path), config).run("status")
    assert done.returncode == 2
    assert "serve.port" in done.stderr and "Traceback" not in done.stderr
