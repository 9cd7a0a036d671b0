"""`dtmfSequence` reaches `voicecall.initiate` from every surface an agent uses: the
`voice_call` tool, the MCP `initiate_call` tool and the Python client (the CLI's
`--dtmf-sequence` is in tests/cli/test_parity_start.py; the carriers' side in
tests/providers/test_dtmf.py)."""

from __future__ import annotations

from mcp import Client

import voice_call
from voice_call.agent.mcp_server import build_mcp_server
from voice_call.agent.tool import run_tool, tool_schema
from voice_call.client.rpc import RpcClient
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer

TO = "+15555550123"


async def test_the_agent_tool_passes_the_dtmf_sequence(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    props = tool_schema()["function"]["parameters"]["properties"]
    assert props["dtmfSequence"]["type"] == "string"
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    started = await run_tool(
        {
            "action": "initiate_call",
            "message": "Joining.",
            "to": TO,
            "mode": "conversation",
            "dtmfSequence": "ww1234#",
        },
        client,
    )
    record = await vc_runtime.store.get(started["callId"])
    assert record is not None and record.metadata["dtmfSequence"] == "ww1234#"
    bad = await run_tool(
        {"action": "initiate_call", "message": "Hi", "to": TO, "dtmfSequence": "12x"}, client
    )
    assert "dtmfSequence" in bad["error"]


async def test_the_mcp_initiate_call_passes_the_dtmf_sequence(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    rpc = RpcClient(vc_server.url, vc_runtime.rpc_token)
    async with Client(build_mcp_server(lambda: rpc)) as client:
        result = await client.call_tool(
            "initiate_call",
            {"message": "Hi", "to": TO, "mode": "conversation", "dtmfSequence": "9#"},
        )
        assert not result.is_error, result.content
    (record,) = await vc_runtime.store.list_recent()
    assert record.metadata["dtmfSequence"] == "9#"


async def test_the_python_client_passes_the_dtmf_sequence(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    client = voice_call.Client(vc_server.url, vc_runtime.rpc_token)
    call_id = await client.initiate(TO, "Hi.", mode="conversation", dtmf_sequence="1w2")
    record = await vc_runtime.store.get(call_id)
    assert record is not None and record.metadata["dtmfSequence"] == "1w2"
