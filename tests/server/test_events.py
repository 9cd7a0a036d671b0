"""GET /events: Server-Sent Events over a real socket (src/voice_call/server/events.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.server.stack import Rpc
from tests.support import wait_until
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer


class Sse:
    """Read one SSE response message by message (comments kept, to see keepalives)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        message: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if message:
                        return message
                    continue
                if line.startswith(":"):
                    message.setdefault("comments", []).append(line[1:].strip())
                    continue
                name, _, value = line.partition(": ")
                message[name] = json.loads(value) if name == "data" else value
        raise EOFError("stream ended")

    async def events(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < count:
            message = await self.next()
            if "data" in message:
                out.append(message)
        return out


@asynccontextmanager
async def stream(server: RunningServer, runtime: Runtime, **params: Any) -> AsyncIterator[Sse]:
    headers = {"Authorization": f"Bearer {runtime.rpc_token}"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        http.stream("GET", "/events", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Sse(response)


async def call_with_events(rpc: Rpc, runtime: Runtime, at_least: int) -> str:
    reply = await rpc("voicecall.initiate", {"to": "+15555550123", "message": "Hi"})
    call_id: str = reply["result"]["callId"]

    async def enough() -> bool:
        return len(await runtime.store.events(call_id=call_id)) >= at_least

    await wait_until(enough)
    await runtime.manager.settle()
    return call_id


async def test_last_n_backlog_then_live(
    vc_server: RunningServer, vc_runtime: Runtime, vc_http: httpx.AsyncClient, rpc: Rpc
) -> None:
    call_id = await call_with_events(rpc, vc_runtime, at_least=6)
    logged = await vc_runtime.store.events()
    async with stream(vc_server, vc_runtime, last=5) as sse:
        start = await sse.next()
        assert start == {"id": str(logged[-5].seq - 1)}  # a bare id: where the stream starts
        backlog = await sse.events(5)
        assert [int(m["id"]) for m in backlog] == [e.seq for e in logged[-5:]]
        assert [m["event"] for m in backlog] == [e.type for e in logged[-5:]]
        assert backlog[-1]["data"] == logged[-1].wire()
        # a live one: a carrier event posted now arrives on the open stream
        event = {"type": "call.dtmf", "callId": call_id, "digits": "9"}
        assert (await vc_http.post("/voice/webhook", json={"event": event})).status_code == 200
        (live,) = await sse.events(1)
        assert live["event"] == "call.dtmf" and live["data"]["data"]["digits"] == "9"
        assert int(live["id"]) == await vc_runtime.store.last_seq()


async def test_since_and_call_filter(
    vc_server: RunningServer, vc_runtime: Runtime, rpc: Rpc
) -> None:
    first = await call_with_events(rpc, vc_runtime, at_least=3)
    second = await call_with_events(rpc, vc_runtime, at_least=3)
    mine = await vc_runtime.store.events(call_id=second)
    async with stream(vc_server, vc_runtime, since=0, callId=second) as sse:
        assert await sse.next() == {"id": "0"}
        got = await sse.events(len(mine))
        assert [int(m["id"]) for m in got] == [e.seq for e in mine]
        await rpc("voicecall.dtmf", {"callId": first, "digits": "1"})  # filtered out
        await rpc("voicecall.dtmf", {"callId": second, "digits": "2"})
        # the call's own progress (callee speech, listening) may interleave: read up to the dtmf
        live = []
        while not live or live[-1]["event"] != "bot.dtmf":
            live += await sse.events(1)
        assert {m["data"]["callId"] for m in live} == {second}
        assert live[-1]["data"]["data"]["digits"] == "2"


async def test_keepalive_comments(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    async with stream(vc_server, vc_runtime) as sse:  # neither since nor last: live only
        assert await sse.next() == {"id": str(await vc_runtime.store.last_seq())}
        assert (await sse.next(timeout=2))["comments"] == ["keepalive"]  # every 0.2 s here


async def test_cut_off_subscriber_stream_ends(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    async with stream(vc_server, vc_runtime, since=0) as sse:
        await sse.next()
        await wait_until(_has_subscriber(vc_runtime))
        for queue in list(vc_runtime.bus._subscribers):  # what publish() does to a slow reader
            queue.put_nowait(None)
        try:
            while True:
                await sse.next()
        except EOFError:
            pass


async def test_token_in_query_and_bad_parameters(
    vc_server: RunningServer, vc_runtime: Runtime, vc_http: httpx.AsyncClient
) -> None:
    assert (await vc_http.get("/events")).status_code == 401
    assert (await vc_http.get("/events", params={"token": "wrong"})).status_code == 401
    for params in ({"since": "-1"}, {"last": "0"}, {"since": "1", "last": "1"}, {"last": "x"}):
        response = await vc_http.get("/events", params={**params, "token": vc_runtime.rpc_token})
        assert response.status_code == 400, params
        assert "error" in response.json()
    token = vc_runtime.rpc_token
    async with vc_http.stream("GET", "/events", params={"token": token, "last": "3"}) as response:
        assert response.status_code == 200
    headers = {"Last-Event-ID": "0"}  # EventSource reconnecting: wins over last=
    async with vc_http.stream(
        "GET", "/events", params={"token": token, "last": "3"}, headers=headers
    ) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "id: 0"


async def test_stopping_the_server_ends_open_streams_promptly(
    vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    async with stream(vc_server, vc_runtime, since=0) as sse:
        await sse.next()
        await wait_until(_has_subscriber(vc_runtime))
        stopping = asyncio.create_task(vc_server.stop())
        try:
            while True:
                await sse.next()
        except EOFError:
            pass
        async with asyncio.timeout(3):  # well under the 5 s graceful-shutdown backstop
            await stopping


def _has_subscriber(runtime: Runtime) -> Any:
    async def check() -> bool:
        return runtime.bus.subscribers > 0

    return check


async def test_an_entry_logged_while_the_backlog_is_read_is_not_lost(
    vc_server: RunningServer, vc_runtime: Runtime, rpc: Rpc, monkeypatch: Any
) -> None:
    call_id = await call_with_events(rpc, vc_runtime, at_least=2)
    store = vc_runtime.store
    real_events = store.events
    injected: list[int] = []

    async def racing(**kwargs: Any) -> Any:
        page = await real_events(**kwargs)  # the backlog as read...
        if not injected:  # ...and an entry logged right after, before the stream goes live
            await rpc("voicecall.dtmf", {"callId": call_id, "digits": "4"})
            injected.append(await store.last_seq())
        return page

    monkeypatch.setattr(store, "events", racing)
    async with stream(vc_server, vc_runtime, since=0) as sse:
        seen: list[int] = []
        while not injected or injected[0] not in seen:
            message = await sse.next()
            if "data" in message:
                seen.append(int(message["id"]))
        assert seen == sorted(set(seen))  # each once, in order


async def test_head_gets_headers_without_a_stream(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    response = await vc_http.head("/events", params={"token": vc_runtime.rpc_token})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert vc_runtime.bus.subscribers == 0
