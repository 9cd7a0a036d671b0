"""SIGTERM (what process managers send) stops `voicecall sim` and `serve` as Ctrl-C does.

The children start with SIGINT ignored, as under `nohup` or a background launch: only SIGTERM
can stop them then, and it must still exit 0 and clean up (the state files are removed).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import httpx

from tests.cli.stack import Cli, base_env, mock_config, read_lines, wait_for_port, write_config
from tests.support import free_port, wait_until


def _without_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _popen_ignoring_sigint(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli.argv(*args),
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_without_sigint,
    )


def _terminate(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"SIGTERM did not stop it:\n{err}") from None
    return proc.returncode, err


def test_sim_exits_cleanly_on_sigterm_with_sigint_ignored(tmp_path: Path) -> None:
    cli = Cli(base_env(tmp_path), None)
    sim = _popen_ignoring_sigint(cli, "--json", "sim", "twilio")
    lines = read_lines(sim, 1, timeout=30)
    state = tmp_path / "state" / "sim" / "twilio.json"
    try:
        assert lines, "the sim printed nothing"
        url = json.loads(lines[0])["url"]
        assert state.exists()
        assert httpx.get(f"{url}/_sim/calls", timeout=5).status_code == 200
        sim.send_signal(signal.SIGINT)  # ignored: it keeps running
        assert httpx.get(f"{url}/_sim/calls", timeout=5).status_code == 200
    finally:
        code, err = _terminate(sim)
    assert code == 0, err
    assert "Traceback" not in err
    assert not state.exists()  # it forgot its recorded URL, as after Ctrl-C


def test_serve_exits_cleanly_on_sigterm_with_sigint_ignored(tmp_path: Path) -> None:
    port = free_port()
    cli = Cli(base_env(tmp_path), write_config(tmp_path / "c.json5", mock_config(port)))
    server = _popen_ignoring_sigint(cli, "serve")
    server_file = tmp_path / "state" / "server.json"
    try:
        wait_for_port(server, port, timeout=30)
        asyncio.run(wait_until(server_file.exists, what="server.json"))
        call_id = cli.json("call", "--message", "Hi")["callId"]
    finally:
        code, err = _terminate(server)
    assert code == 0, err
    assert "Traceback" not in err
    assert not server_file.exists()  # the URL and pid are forgotten
    # the call is persisted in the store: `status` reads it without a server
    assert call_id in cli.run("status", "--call-id", call_id).stdout
