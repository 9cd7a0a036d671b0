"""The MCP server through the official `mcp` SDK's client, against a running voicecall server.

Streamable HTTP (in this process, on a loopback port, behind the bearer token) and stdio
(`voicecall mcp` as a subprocess, as an MCP host would start it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.server.stack import server_config
from tests.support import wait_until
from voice_call.agent.mcp_server import build_mcp_server, require_bearer
from voice_call.asgi_server import BackgroundServer
from voice_call.client.rpc import RpcClient
from voice_call.config import Config
from voice_call.models import CallState
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer

TOOLS = {
    "initiate_call",
    "continue_call",
    "speak_to_user",
    "send_dtmf",
    "end_call",
    "transfer_call",
    "get_status",
}


@pytest.fixture
def vc_config() -> Config:
    return server_config(responder={"provider": "none"})  # the MCP client drives every turn


def payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        data: dict[str, Any] = result.structured_content
        return data.get("result", data) if set(data) == {"result"} else data
    return dict(json.loads(result.content[0].text))


@asynccontextmanager
async def http_mcp(url: str, token: str, rpc: RpcClient) -> AsyncIterator[str]:
    server = build_mcp_server(lambda: rpc)
    app = require_bearer(server.streamable_http_app(streamable_http_path="/mcp"), token)
    async with BackgroundServer(app, lifespan="on") as running:
        yield running.url + "/mcp"


async def drive_a_call(client: Client, runtime: Runtime) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    assert tools["get_status"].annotations is not None
    assert tools["get_status"].annotations.read_only_hint is True
    assert "message" in tools["initiate_call"].input_schema["required"]
    placed = payload(
        await client.call_tool(
            "initiate_call",
            {"message": "Hi, it's the clinic.", "to": "+15555550123", "mode": "conversation"},
        )
    )
    assert placed["initiated"] is True
    call_id = placed["callId"]

    async def heard_first_line() -> bool:
        record = await runtime.store.get(call_id)
        return (
            record is not None
            and record.state == CallState.LISTENING
            and len(record.transcript) == 2
        )

    await wait_until(heard_first_line)
    answer = payload(
        await client.call_tool("continue_call", {"callId": call_id, "message": "Tuesday?"})
    )
    assert answer == {"success": True, "transcript": "Sure, Tuesday at three works for me."}
    status = payload(await client.call_tool("get_status", {"callId": call_id, "full": True}))
    assert status["call"]["transcript"][-1]["text"] == "Sure, Tuesday at three works for me."
    assert status["call"]["latency"][0]["kind"] == "continue"
    assert payload(await client.call_tool("end_call", {"callId": call_id})) == {"success": True}
    refused = await client.call_tool("speak_to_user", {"callId": call_id, "message": "late"})
    assert refused.is_error and "not active" in refused.content[0].text
    missing = await client.call_tool("get_status", {"callId": "nope"})
    assert payload(missing) == {"found": False}


async def test_streamable_http_lists_tools_and_drives_a_call(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    token = vc_runtime.rpc_token
    rpc = RpcClient(vc_server.url, token, timeout=None)
    async with http_mcp(vc_server.url, token, rpc) as url:
        async with httpx2.AsyncClient() as anonymous:
            assert (await anonymous.post(url, json={})).status_code == 401
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await drive_a_call(client, vc_runtime)


async def test_tool_errors_say_what_to_do(tmp_path: Path) -> None:
    rpc = RpcClient("http://127.0.0.1:9", "token")
    async with Client(build_mcp_server(lambda: rpc)) as client:
        result = await client.call_tool("get_status", {})
        assert result.is_error and "voicecall serve" in result.content[0].text
        bad = await client.call_tool("initiate_call", {"message": "hi", "mode": "shout"})
        assert bad.is_error


async def test_stdio_voicecall_mcp(
    vc_server: RunningServer, vc_runtime: Runtime, vc_home: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env.update(VOICECALL_HOME=str(vc_home), HOME=str(tmp_path / "user"))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "voice_call.cli", "mcp"], env=env
    )
    async with Client(params, read_timeout_seconds=30) as client:
        await drive_a_call(client, vc_runtime)
