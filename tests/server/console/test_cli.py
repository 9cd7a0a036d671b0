"""`voicecall console`: a one-time login link from a running `voicecall serve`."""

from __future__ import annotations

import subprocess
import webbrowser
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.cli.stack import Cli, base_env, mock_config, stop, wait_for_port, write_config
from tests.support import free_port
from voice_call.cli.main import cli as voicecall


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Cli, int]]:
    port = free_port()
    config = write_config(tmp_path / "config.json5", mock_config(port))
    cli = Cli(base_env(tmp_path), config)
    proc: subprocess.Popen[str] = cli.popen("serve")
    try:
        wait_for_port(proc, port)
        yield cli, port
    finally:
        stop(proc)


def test_console_prints_a_link_that_logs_in_once(served: tuple[Cli, int]) -> None:
    cli, port = served
    done = cli.run("console", "--no-open")
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{port}/console/login?code=")
    assert "works once, 60 s" in done.stderr
    with httpx.Client() as browser:
        assert browser.get(url).status_code == 303
        assert browser.get(f"http://127.0.0.1:{port}/console/api/calls").status_code == 200
    with httpx.Client() as replay:
        assert replay.get(url).status_code == 401
    as_json = cli.json("console", "--no-open")
    assert as_json["opened"] is False and as_json["url"].startswith("http://127.0.0.1")


def test_console_opens_the_browser_on_a_desktop(
    served: tuple[Cli, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, _ = served
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, new=0: opened.append(url) or True)
    env = {**cli.env, "DISPLAY": ":0", "VOICECALL_CONFIG": str(cli.config)}
    result = CliRunner().invoke(voicecall, ["console"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert opened == [result.stdout.strip()]
    headless = {**env, "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    result = CliRunner().invoke(voicecall, ["console"], env=headless, catch_exceptions=False)
    assert result.exit_code == 0 and len(opened) == 1  # no desktop: printed, not opened


def test_console_without_a_server_says_to_start_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json5", mock_config(free_port()))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "rpc-token").write_text("t\n")
    done = Cli(base_env(tmp_path), config).run("console", "--no-open")
    assert done.returncode == 1
    assert "start one with `voicecall serve`" in done.stderr


def test_console_is_refused_while_the_service_is_switched_off(tmp_path: Path) -> None:
    config = write_config(tmp_path / "off.json5", {"enabled": False, "serve": {"port": 0}})
    done = Cli(base_env(tmp_path), config).run("console", "--no-open")
    assert done.returncode == 1
    assert "the voice-call service is switched off" in done.stderr
