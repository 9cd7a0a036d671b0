"""`agentId` and `sessionKey` on real servers: on the record, in `voicecall.status` (full), in
the hook responder's payload; `sessionKey` through RPC, the agent tool and MCP."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.server.stack import SERVER_CONFIG, Rpc, server_config
from tests.support import merge, wait_until
from voice_call.agent.mcp_server import build_mcp_server
from voice_call.agent.tool import run_tool, tool_schema
from voice_call.asgi_server import BackgroundServer
from voice_call.cli.output import print_call
from voice_call.client.rpc import RpcClient
from voice_call.config import parse_config
from voice_call.models import CallRecord
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer, start_background

TO = "+15555550123"
SALES = "+15555550111"


def full_status(reply: dict[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = reply["result"]["call"]
    return call


# --- outbound: the top-level agentId; sessionKey on initiate ---------------------------------


@pytest.mark.parametrize("vc_config", [server_config(agentId="concierge")])
async def test_an_outbound_call_belongs_to_the_top_level_agent(
    rpc: Rpc, vc_runtime: Runtime
) -> None:
    placed = await rpc("voicecall.initiate", {"to": TO, "message": "Hi", "sessionKey": "order-42"})
    call_id = placed["result"]["callId"]
    record = await vc_runtime.store.get(call_id)
    assert record is not None
    assert (record.agent_id, record.session_key) == ("concierge", "order-42")
    call = full_status(await rpc("voicecall.status", {"callId": call_id, "full": True}))
    assert (call["agentId"], call["sessionKey"]) == ("concierge", "order-42")
    # the summary keeps the seed's shape
    summary = (await rpc("voicecall.status", {"callId": call_id}))["result"]["call"]
    assert "agentId" not in summary and "sessionKey" not in summary


async def test_the_default_agent_is_main_and_no_session_key_is_shown(
    rpc: Rpc, vc_runtime: Runtime
) -> None:
    placed = await rpc("voicecall.initiate", {"to": TO, "message": "Hi"})
    call = full_status(
        await rpc("voicecall.status", {"callId": placed["result"]["callId"], "full": True})
    )
    assert call["agentId"] == "main" and "sessionKey" not in call


@pytest.mark.parametrize("key", ["", "   ", 42, "k" * 201])
async def test_a_bad_session_key_is_refused_and_places_no_call(
    rpc: Rpc, vc_runtime: Runtime, key: Any
) -> None:
    reply = await rpc("voicecall.initiate", {"to": TO, "message": "Hi", "sessionKey": key})
    assert reply["error"]["code"] == -32602
    assert "sessionKey" in reply["error"]["message"]
    assert await vc_runtime.store.list_recent() == []


async def test_the_agent_tool_passes_the_session_key(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    props = tool_schema()["function"]["parameters"]["properties"]
    assert props["sessionKey"]["type"] == "string"
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    started = await run_tool(
        {"action": "initiate_call", "message": "Hi", "to": TO, "sessionKey": "ticket-9"}, client
    )
    record = await vc_runtime.store.get(started["callId"])
    assert record is not None and record.session_key == "ticket-9"
    bad = await run_tool(
        {"action": "initiate_call", "message": "Hi", "to": TO, "sessionKey": 9}, client
    )
    assert bad == {"error": "sessionKey must be a string"}


async def test_the_mcp_initiate_call_passes_the_session_key(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    rpc = RpcClient(vc_server.url, vc_runtime.rpc_token)
    async with Client(build_mcp_server(lambda: rpc)) as client:
        result = await client.call_tool(
            "initiate_call", {"message": "Hi", "to": TO, "sessionKey": "ticket-10"}
        )
        assert not result.is_error, result.content
    (record,) = await vc_runtime.store.list_recent()
    assert record.session_key == "ticket-10"


def test_the_full_status_view_shows_agent_and_session_key() -> None:
    record = CallRecord.model_validate(
        {"provider": "mock", "direction": "outbound", "mode": "notify", "from": TO, "to": TO}
        | {"startedAt": 1.0, "agentId": "concierge", "sessionKey": "order-42"}
    )
    out = io.StringIO()
    print_call(Console(file=out, width=100), record.wire())
    text = out.getvalue()
    assert "Agent" in text and "concierge" in text
    assert "Session key" in text and "order-42" in text


# --- inbound: the number's agentId, in the hook's payload ------------------------------------


@dataclass
class Inbound:
    runtime: Runtime
    http: httpx.AsyncClient
    hook_bodies: list[dict[str, Any]]

    async def call_in(self, pid: str, to: str) -> CallRecord:
        event = {"type": "call.initiated", "providerCallId": pid, "direction": "inbound"}
        await self.post({**event, "from": "+15555550100", "to": to})
        await self.post({"type": "call.answered", "providerCallId": pid})

        async def listening() -> CallRecord | None:
            rec = await self.runtime.store.find_by_provider_call_id("mock", pid)
            return rec if rec is not None and rec.state.value == "listening" else None

        await wait_until(listening)
        record = await listening()
        assert record is not None
        return record

    async def hook_body(self, call_id: str) -> dict[str, Any]:
        """What the hook was sent for `call_id`'s first turn."""
        await wait_until(lambda: any(b["callId"] == call_id for b in self.hook_bodies))
        return next(b for b in self.hook_bodies if b["callId"] == call_id)

    async def post(self, event: dict[str, Any]) -> None:
        response = await self.http.post(self.runtime.config.serve.path, json={"event": event})
        assert response.status_code == 200, response.text


@pytest.fixture
async def inbound(tmp_path: Path) -> AsyncIterator[Inbound]:
    bodies: list[dict[str, Any]] = []

    async def turn(request: Request) -> JSONResponse:
        bodies.append(await request.json())
        return JSONResponse({"reply": "Noted."})

    hook = Starlette(routes=[Route("/turn", turn, methods=["POST"])])
    async with BackgroundServer(hook, lifespan="off") as hook_server:
        base = {k: v for k, v in SERVER_CONFIG.items() if k != "responder"}
        config = parse_config(
            merge(
                base,
                {
                    "agentId": "frontdesk",
                    "inboundPolicy": "open",
                    "numbers": {SALES: {"agentId": "sales"}},
                    "responder": {"provider": "hook", "url": hook_server.url + "/turn"},
                    "mock": {"silent": True},
                },
            ),
            env={},
        )
        runtime = Runtime(config, tmp_path / "home")
        server = await start_background(runtime, announce=False)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                yield Inbound(runtime, http, bodies)
        finally:
            await server.stop()


async def test_an_inbound_call_belongs_to_its_numbers_agent(inbound: Inbound) -> None:
    sales = await inbound.call_in("in-sales", SALES)
    other = await inbound.call_in("in-other", "+15555550999")
    assert (sales.agent_id, other.agent_id) == ("sales", "frontdesk")
    for record, agent in ((sales, "sales"), (other, "frontdesk")):
        await inbound.post(
            {"type": "call.speech", "callId": record.call_id, "transcript": "Hello?"}
        )
        body = await inbound.hook_body(record.call_id)
        assert body["agentId"] == agent and body["sessionKey"] is None
    token = inbound.runtime.rpc_token
    request = {"jsonrpc": "2.0", "id": 1, "method": "voicecall.status"}
    request["params"] = {"callId": sales.call_id, "full": True}
    reply = await inbound.http.post(
        "/rpc", json=request, headers={"Authorization": f"Bearer {token}"}
    )
    assert full_status(reply.json())["agentId"] == "sales"
