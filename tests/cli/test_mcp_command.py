"""`voicecall mcp`: the command itself (flags, warnings, the bearer guard on --http).

The MCP tools are tested in tests/agent/test_mcp.py; here: a real `voicecall mcp --http`
subprocess refuses requests without the rpc-token and answers an MCP client holding it; a
non-loopback --host is warned about; a broken config is reported before anything listens.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from click.testing import CliRunner
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.cli.stack import Cli, base_env, wait_for_port, write_config
from tests.support import free_port
from voice_call.cli.main import cli
from voice_call.security.rpc_token import read_rpc_token


def stop_with_sigterm(proc: subprocess.Popen[str]) -> tuple[str, str]:
    # what a process manager sends; uvicorn shuts down cleanly on it
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


async def test_http_mcp_requires_the_rpc_token_and_serves_the_tools(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    port = free_port()
    proc = Cli(env, None).popen("mcp", "--http", "--port", str(port), "--path", "/tools")
    try:
        wait_for_port(proc, port)
        url = f"http://127.0.0.1:{port}/tools"
        async with httpx.AsyncClient() as anonymous:
            refused = await anonymous.post(url, json={})
            wrong = await anonymous.post(url, json={}, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "rpc-token" in refused.json()["error"]
        assert wrong.status_code == 401
        token = read_rpc_token(Path(env["VOICECALL_HOME"]))
        assert token  # created on first start, in the state folder
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"initiate_call", "get_status", "end_call"} <= names
    finally:
        _, err = stop_with_sigterm(proc)
    assert f"MCP (streamable HTTP) on http://127.0.0.1:{port}/tools" in err
    assert "bearer token: the file" in err and "rpc-token" in err
    assert "warning" not in err  # loopback: nothing to warn about
    assert "Traceback" not in err


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[uvicorn.Config]:
    """uvicorn's serve recorded instead of run, for `voicecall mcp --http` in-process."""
    seen: list[uvicorn.Config] = []

    async def serve(self: uvicorn.Server, sockets: Any = None) -> None:
        seen.append(self.config)

    monkeypatch.setattr(uvicorn.Server, "serve", serve)
    monkeypatch.setenv("VOICECALL_HOME", str(tmp_path / "home"))
    return seen


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "mcp.example.internal"])
def test_a_non_loopback_host_is_warned_about(host: str, served: list[uvicorn.Config]) -> None:
    result = CliRunner().invoke(cli, ["mcp", "--http", "--host", host, "--port", "0"])
    assert result.exit_code == 0, result.output
    assert f"warning: MCP over HTTP on {host}" in result.stderr
    assert "prefer 127.0.0.1" in result.stderr
    assert [config.host for config in served] == [host]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_a_loopback_host_is_not_warned_about(host: str, served: list[uvicorn.Config]) -> None:
    result = CliRunner().invoke(cli, ["mcp", "--http", "--host", host, "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert len(served) == 1


def test_a_broken_config_is_reported_before_anything_listens(
    tmp_path: Path, served: list[uvicorn.Config]
) -> None:
    broken = write_config(tmp_path / "voicecall.json", {"provider": "sinch"})
    for extra in ([], ["--http"]):
        result = CliRunner().invoke(cli, ["--config", str(broken), "mcp", *extra])
        assert result.exit_code == 2, result.output
        assert "provider" in result.stderr
        assert "Traceback" not in result.output
    assert served == []
