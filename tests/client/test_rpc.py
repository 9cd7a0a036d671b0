"""The RPC client against a live server (src/voice_call/client/rpc.py)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.stack import server_config
from tests.support import free_port, wait_until
from voice_call.client.rpc import (
    RpcClient,
    ServerUnavailable,
    error_from_reply,
    local_url,
    parse_sse,
    server_url,
)
from voice_call.errors import Conflict, InvalidInput, NotFound, TimedOut, Unavailable
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer

TO = "+15555550123"


async def test_call_returns_results_and_raises_the_servers_errors(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    result = await client.call("voicecall.initiate", {"to": TO, "message": "Hi"})
    assert result["initiated"] is True
    status = await client.call("voicecall.status", {"callId": result["callId"]})
    assert status["found"] is True
    with pytest.raises(InvalidInput, match=r"E\.164"):
        await client.call("voicecall.initiate", {"to": "12", "message": "Hi"})
    with pytest.raises(NotFound, match="no call with id"):
        await client.call("voicecall.end", {"callId": "nope"})
    with pytest.raises(NotFound, match="method not found"):
        await client.call("voicecall.nope")
    wrong = RpcClient(vc_server.url, "wrong-token")
    with pytest.raises(Unavailable, match="refused the RPC token"):
        await wrong.call("voicecall.status")


async def test_call_sync_for_the_cli(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    # asyncio.run needs a thread without a running loop, as the CLI has
    result = await asyncio.to_thread(client.call_sync, "voicecall.status", {})
    assert result == {"found": True, "calls": []}


async def test_no_server_is_server_unavailable_with_the_start_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable, match="start one with `voicecall serve`") as caught:
        await RpcClient(url, "t").call("voicecall.status")
    assert caught.value.code == "unavailable" and url in caught.value.message
    with pytest.raises(ServerUnavailable):
        async for _ in RpcClient(url, "t").events():
            pass


def test_error_mapping() -> None:
    def err(code: int, data_code: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": code, "message": "m"}
        if data_code:
            error["data"] = {"code": data_code}
        return error

    assert type(error_from_reply(err(-32002, "conflict"))) is Conflict
    assert type(error_from_reply(err(-32004, "timeout"))) is TimedOut
    assert type(error_from_reply(err(-32003, "unavailable"))) is Unavailable
    assert type(error_from_reply(err(-32602))) is InvalidInput  # no data: by JSON-RPC code
    assert type(error_from_reply(err(-32099, "something-new"))) is Unavailable
    assert type(error_from_reply("junk")) is Unavailable


def test_continue_waits_without_a_read_timeout() -> None:
    client = RpcClient("http://x", "t", timeout=7)
    assert client._timeout("voicecall.continue").read is None
    assert client._timeout("voicecall.status").read == 7


def test_server_url_prefers_a_live_server_json(tmp_path: Path) -> None:
    config = server_config(serve={"port": 4001, "bind": "0.0.0.0"})
    assert server_url(config, tmp_path) == "http://127.0.0.1:4001"
    (tmp_path / "server.json").write_text(
        json.dumps({"url": "http://127.0.0.1:5555", "pid": os.getpid()})
    )
    assert server_url(config, tmp_path) == "http://127.0.0.1:5555"
    dead = 2**22 + 12345  # above pid_max on most systems: no such process
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:5555", "pid": dead}))
    assert server_url(config, tmp_path) == "http://127.0.0.1:4001"
    (tmp_path / "server.json").write_text("{torn")
    assert server_url(config, tmp_path) == "http://127.0.0.1:4001"
    assert local_url("::", 1) == "http://127.0.0.1:1"
    assert local_url("::1", 1) == "http://[::1]:1"
    assert local_url("10.0.0.2", 80) == "http://10.0.0.2:80"


async def test_from_home(vc_server: RunningServer, vc_runtime: Runtime, vc_home: Path) -> None:
    client = RpcClient.from_home(vc_runtime.config, vc_home)
    assert client.url == vc_server.url  # found through server.json (port 0 in the config)
    assert (await client.call("voicecall.status"))["found"] is True


def test_from_home_without_a_token_says_how_to_start_a_server(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="voicecall serve"):
        RpcClient.from_home(server_config(), tmp_path)


async def test_events_backlog_live_and_end_when_the_server_stops(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    result = await client.call("voicecall.initiate", {"to": TO, "message": "Hi"})
    call_id = result["callId"]
    got: list[dict[str, Any]] = []

    async def follow() -> None:
        async for event in client.events(since=0, call_id=call_id):
            got.append(event)

    follower = asyncio.create_task(follow())

    async def answered() -> bool:
        return any(e["type"] == "call.answered" for e in got)

    await wait_until(answered)
    assert got[0]["type"] == "call.created" and got[0]["callId"] == call_id
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs))
    await vc_server.stop()
    async with asyncio.timeout(5):
        await follower  # the stream ended and reconnecting found no server: iteration stops


async def test_events_reconnect_after_a_cut_off_without_losing_or_repeating(
    vc_server: RunningServer, vc_runtime: Runtime, vc_http: httpx.AsyncClient
) -> None:
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    got: list[dict[str, Any]] = []
    follower = asyncio.create_task(_collect(client, got))
    await wait_until(_subscribed(vc_runtime))  # live only: connected before the call starts
    call_id = (await client.call("voicecall.initiate", {"to": TO, "message": "Hi"}))["callId"]

    async def some() -> bool:
        return len(got) >= 2

    await wait_until(some)
    for queue in list(vc_runtime.bus._subscribers):
        queue.put_nowait(None)  # cut off, as the bus does to a slow reader
    end = {"type": "call.ended", "callId": call_id}
    await vc_http.post("/voice/webhook", json={"event": end})  # while it may be reconnecting

    async def ended() -> bool:
        return any(e["type"] == "call.ended" for e in got)

    await wait_until(ended)
    follower.cancel()
    logged = [e.seq for e in await vc_runtime.store.events(call_id=call_id)]
    seen = [e["seq"] for e in got]
    assert seen == sorted(set(seen))
    assert set(logged) <= set(seen)


def _subscribed(runtime: Runtime) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return runtime.bus.subscribers > 0

    return check


async def _collect(client: RpcClient, into: list[dict[str, Any]]) -> None:
    async for event in client.events():
        into.append(event)


async def test_parse_sse() -> None:
    async def lines() -> Any:
        for line in [
            "id: 3",
            "",
            ": keepalive",
            "",
            "id: 4",
            "event: call.x",
            'data: {"a":',
            "data: 1}",
            "",
            "data: not json",
            "",
            "id: ５",
            'data: {"b": 2}',
            "",
        ]:
            yield line

    got = [item async for item in parse_sse(lines())]
    assert got == [(3, None), (4, {"a": 1}), (None, {"b": 2})]
