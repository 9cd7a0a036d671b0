"""`Client.continue_start` / `continue_result` (and SyncClient's) against a live mock server:
a continue that holds no request open; `initiate(session_key=...)` reaches the record."""

from __future__ import annotations

import asyncio

import pytest

import voice_call
from tests.server.stack import server_config
from tests.support import wait_until
from voice_call.errors import Conflict, InvalidInput
from voice_call.models import CallState, TurnKind
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer

SCRIPTED = server_config(
    mock={"replies": ["Hello?", "Tuesday is fine.", "Bye."], "replyDelayMs": 200},
    responder={"provider": "none"},
)


async def listening_after_first_line(client: voice_call.Client, call_id: str) -> None:
    async def heard() -> bool:
        record = await client.status(call_id)
        return record is not None and any(e.text == "Hello?" for e in record.transcript)

    await wait_until(heard)


@pytest.mark.parametrize("vc_config", [SCRIPTED])
async def test_continue_start_then_result(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    client = voice_call.Client(vc_server.url, vc_runtime.rpc_token)
    call_id = await client.initiate(
        "+15555550123", "Hi.", mode="conversation", session_key="agent:main:clinic"
    )
    record = await client.status(call_id)
    assert record is not None and record.session_key == "agent:main:clinic"
    await listening_after_first_line(client, call_id)

    turn = await client.continue_start(call_id, "Does Tuesday work?")
    assert await client.continue_result(turn) is None  # still waiting for the caller
    assert await client.continue_result(turn, wait=10) == "Tuesday is fine."
    record = await client.status(call_id)
    assert record is not None and record.latency[-1].kind == TurnKind.CONTINUE
    with pytest.raises(InvalidInput, match="wait must be between 0 and 60"):
        await client.continue_result(turn, wait=61)

    turn = await client.continue_start(call_id, "Anything else?")
    await client.end(call_id)
    with pytest.raises(Conflict, match="Call ended"):
        await client.continue_result(turn, wait=10)


@pytest.mark.parametrize("vc_config", [SCRIPTED])
async def test_sync_client_continue_turns(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    calls = voice_call.SyncClient(vc_server.url, vc_runtime.rpc_token)
    call_id = await asyncio.to_thread(calls.initiate, "+15555550123", "Hi.", mode="conversation")
    await listening_after_first_line(
        voice_call.Client(vc_server.url, vc_runtime.rpc_token), call_id
    )

    def converse() -> str | None:
        turn = calls.continue_start(call_id, "Does Tuesday work?")
        reply = calls.continue_result(turn, wait=10)
        calls.end(call_id)
        return reply

    try:
        assert await asyncio.to_thread(converse) == "Tuesday is fine."
    finally:
        await asyncio.to_thread(calls.close)
    record = await vc_runtime.store.get(call_id)
    assert record is not None and record.state == CallState.HANGUP_BOT
