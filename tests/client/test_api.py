"""`voice_call.Client` / `voice_call.SyncClient` against a live server on the mock provider."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import voice_call
from tests.support import wait_until
from voice_call.client.rpc import ServerUnavailable
from voice_call.errors import Conflict, InvalidInput, NotFound
from voice_call.models import CallState, Speaker, TurnKind
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer


def test_import_voice_call_stays_light() -> None:
    code = "import sys, voice_call; print('httpx' in sys.modules, 'pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert voice_call.Client.__module__ == "voice_call.client.api"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        voice_call.Nope  # noqa: B018


async def test_async_client_drives_a_conversation(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    async with voice_call.Client(vc_server.url, vc_runtime.rpc_token) as client:
        call_id = await client.initiate("+15555550123", "Hello there", mode="conversation")

        async def greeted() -> bool:
            record = await client.status(call_id)
            return record is not None and len(record.transcript) >= 2

        await wait_until(greeted)  # the callee's first line got an echo reply
        [active] = await client.active()
        assert active.call_id == call_id and active.transcript[0].text == "Hello there"
        record = await client.status(call_id)
        assert record is not None and record.latency[0].kind == TurnKind.REPLY
        await client.speak(call_id, "One more thing.")
        await client.send_dtmf(call_id, "12#")
        await client.end(call_id)
        record = await client.status(call_id)
        assert record is not None and record.state == CallState.HANGUP_BOT
        assert any(
            e.speaker == Speaker.BOT and e.text == "One more thing." for e in record.transcript
        )
        assert await client.status("no-such-call") is None
        with pytest.raises(NotFound):
            await client.end("no-such-call")
        with pytest.raises(Conflict, match="not active"):
            await client.speak(call_id, "too late")
        with pytest.raises(InvalidInput, match=r"E\.164"):
            await client.initiate("555", "hi")
        with pytest.raises(InvalidInput, match="mode must be"):
            await client.initiate("+15555550123", "hi", mode="shout")  # type: ignore[arg-type]


async def test_continue_call_returns_the_reply(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    vc_runtime.manager.responder = None  # the agent drives every turn here
    client = voice_call.Client(vc_server.url, vc_runtime.rpc_token)
    call_id = await client.initiate("+15555550123", "Hi, it's the clinic.", mode="conversation")

    async def first_line() -> bool:
        record = await client.status(call_id)
        return (
            record is not None
            and record.state == CallState.LISTENING
            and len(record.transcript) == 2
        )

    await wait_until(first_line)
    assert (
        await client.continue_call(call_id, "Does Tuesday work?")
        == "Sure, Tuesday at three works for me."
    )
    record = await client.status(call_id)
    assert record is not None and record.latency[-1].kind == TurnKind.CONTINUE


async def test_client_finds_the_server_from_the_state_folder(
    vc_server: RunningServer, vc_home: Path
) -> None:
    client = voice_call.Client(home=vc_home)  # server.json + rpc-token, as the CLI does
    assert client.rpc.url == vc_server.url
    assert await client.active() == []


def test_client_without_a_server(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="voicecall serve"):
        voice_call.Client(home=tmp_path / "empty")
    client = voice_call.SyncClient("http://127.0.0.1:9", "token")
    with pytest.raises(ServerUnavailable):
        client.active()
    client.close()


async def test_sync_client(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    def use() -> tuple[str, CallState | None]:
        with voice_call.SyncClient(vc_server.url, vc_runtime.rpc_token) as calls:
            call_id = calls.initiate("+15555550123", "Sync hello", mode="notify")
            calls.end(call_id)
            record = calls.status(call_id)
            return call_id, record.state if record else None

    call_id, state = await asyncio.to_thread(use)
    assert call_id and state == CallState.HANGUP_BOT
    with pytest.raises(RuntimeError, match=r"use voice_call\.Client there"):
        voice_call.SyncClient(vc_server.url, vc_runtime.rpc_token).active()
