"""One socket write per HTTP response (server/http_limits.py, `JoinedWrites`), over loopback.

uvicorn writes a response's head and its body separately: two `send()` syscalls and two TCP
segments for a small answer. The server joins them. What a client receives must not change by
a byte (compared with uvicorn's own writes, the date header aside), a stream's head must still
leave at once, and keep-alive, pipelining, `100 Continue` and the limits' refusals still work.
Writes are counted where they reach the server side's asyncio socket transport.
"""

from __future__ import annotations

import asyncio
import re
from asyncio import selector_events
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.server.stack import TEST_LIMITS, server_config
from voice_call.runtime import Runtime
from voice_call.server import http_limits
from voice_call.server.app import build_app
from voice_call.server.serve import RunningServer, start_background

HEAD_TIMEOUT_MS = 400
HOOK = "/voice/webhook"
Peer = tuple[str, int]


class ServerWrites:
    """Every non-empty `write` reaching a server-side socket transport, by client address."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.port = 0
        self.by_peer: dict[Peer, list[bytes]] = defaultdict(list)
        transport_class = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
        real = transport_class.write

        def write(transport: asyncio.Transport, data: bytes) -> None:
            sockname = transport.get_extra_info("sockname")
            if data and isinstance(sockname, tuple) and sockname[1] == self.port:
                self.by_peer[transport.get_extra_info("peername")].append(bytes(data))
            real(transport, data)

        monkeypatch.setattr(transport_class, "write", write)

    def of(self, writer: asyncio.StreamWriter) -> list[bytes]:
        return self.by_peer[writer.get_extra_info("sockname")]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> ServerWrites:
    return ServerWrites(monkeypatch)


def uvicorn_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every write goes straight through, as uvicorn makes them: the baseline."""

    def write(self: http_limits.JoinedWrites, data: bytes) -> None:
        self._transport.write(data)

    monkeypatch.setattr(http_limits.JoinedWrites, "write", write)


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    config = server_config(serve={"port": 0, "headTimeoutMs": HEAD_TIMEOUT_MS})
    return Runtime(config, tmp_path / "home")


@pytest.fixture
async def server(runtime: Runtime, writes: ServerWrites) -> AsyncIterator[RunningServer]:
    """The real app, served as `voicecall serve` serves it, with a short head timeout."""
    running = await start_background(runtime, app=build_app(runtime, limits=TEST_LIMITS))
    writes.port = running.port
    yield running
    await running.stop()


class Gated:
    """A streamed (chunked) response whose body waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await self.gate.wait()
        await send({"type": "http.response.body", "body": b"late", "more_body": False})


class FailsAfterItsHead:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("the app failed mid-response")


async def empty(_: Any) -> Response:
    return Response(status_code=204)


@pytest.fixture
async def toy(tmp_path: Path, writes: ServerWrites) -> AsyncIterator[tuple[RunningServer, Gated]]:
    """Edge cases the real routes do not make on demand, behind the same server setup."""
    gated = Gated()
    app = Starlette(
        routes=[
            Route("/gated", gated),
            Route("/fails", FailsAfterItsHead()),
            Route("/empty", empty),
        ]
    )
    runtime = Runtime(server_config(), tmp_path / "home")
    running = await start_background(runtime, app=app)
    writes.port = running.port
    yield running, gated
    await running.stop()


# ------------------------------------------------------------------------ a raw HTTP client


async def connect(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


def request(method: str, path: str, body: bytes = b"", *headers: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]
    if body or method == "POST":
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def response(reader: asyncio.StreamReader, *, head_only: bool = False) -> bytes:
    """One whole response, as raw bytes, framed by its content-length or chunked encoding."""
    async with asyncio.timeout(5):
        raw = await reader.readuntil(b"\r\n\r\n")
        if head_only:
            return raw
        length = re.search(rb"\r\ncontent-length: (\d+)\r\n", raw)
        if length:
            return raw + await reader.readexactly(int(length[1]))
        assert b"\r\ntransfer-encoding: chunked\r\n" in raw, raw
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunk = await reader.readexactly(int(size_line, 16) + 2)
            raw += size_line + chunk
            if int(size_line, 16) == 0:
                return raw


def undated(raw: bytes) -> bytes:
    return re.sub(rb"\r\ndate: [^\r]*\r\n", b"\r\ndate: -\r\n", raw)


# A keep-alive conversation over the real routes: JSON, a 4xx with a reason, a 404, a HEAD.
CONVERSATION = [
    (request("GET", "/healthz"), False),
    (request("POST", HOOK, b"{not json"), False),
    (request("GET", "/no/such/page"), False),
    (request("HEAD", "/healthz"), True),
    (request("POST", HOOK, b'{"event": {"type": "call.dtmf", "callId": "x"}}'), False),
]


async def converse(server: RunningServer, writes: ServerWrites) -> tuple[list[bytes], list[bytes]]:
    """The responses to `CONVERSATION` on one connection, and the server's writes for them."""
    reader, writer = await connect(server)
    answers = []
    for message, head_only in CONVERSATION:
        writer.write(message)
        answers.append(await response(reader, head_only=head_only))
    writer.close()
    return answers, writes.of(writer)


# ------------------------------------------------------------------------ one write, same bytes


async def test_each_response_of_a_keep_alive_connection_is_one_write_of_the_same_bytes(
    server: RunningServer, writes: ServerWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers, sent = await converse(server, writes)
    statuses = [answer.split(b"\r\n", 1)[0] for answer in answers]
    assert statuses[:4] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 200 OK",
    ]
    assert b'{"error":' in answers[1]  # the 400 says why
    assert sent == answers  # one write per response, each a whole response

    uvicorn_writes(monkeypatch)
    before, split = await converse(server, writes)
    assert [undated(a) for a in answers] == [undated(b) for b in before]
    assert len(split) == 2 * len(CONVERSATION) - 1  # uvicorn's: head, body (a HEAD: no body)


async def test_pipelined_requests_get_one_write_each_in_order(
    server: RunningServer, writes: ServerWrites
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/healthz") + request("POST", HOOK, b"[") + request("GET", "/x"))
    answers = [await response(reader) for _ in range(3)]
    writer.close()
    assert [a[:12] for a in answers] == [b"HTTP/1.1 200", b"HTTP/1.1 400", b"HTTP/1.1 404"]
    assert writes.of(writer) == answers


async def test_an_empty_204_is_one_write(
    toy: tuple[RunningServer, Gated], writes: ServerWrites
) -> None:
    server, _ = toy
    reader, writer = await connect(server)
    writer.write(request("GET", "/empty"))
    answer = await response(reader, head_only=True)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert writes.of(writer) == [answer]


# ------------------------------------------------------------------------ streams and ordering


async def test_a_streamed_head_leaves_at_once_without_waiting_for_the_body(
    toy: tuple[RunningServer, Gated], writes: ServerWrites
) -> None:
    server, gated = toy
    reader, writer = await connect(server)
    writer.write(request("GET", "/gated"))
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")  # while the body is held back by the app
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
    assert not gated.gate.is_set()
    gated.gate.set()
    async with asyncio.timeout(5):
        body = await reader.readuntil(b"0\r\n\r\n")
    writer.close()
    assert body == b"4\r\nlate\r\n0\r\n\r\n"
    assert writes.of(writer) == [head, body]


async def test_events_stream_sends_its_head_and_events_promptly(
    server: RunningServer, runtime: Runtime, writes: ServerWrites
) -> None:
    token = f"Authorization: Bearer {runtime.rpc_token}".encode()
    reader, writer = await connect(server)
    writer.write(request("GET", "/events", b"", token))
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        first = await reader.readuntil(b"\n\n\r\n")  # `id: N`, the stream's start
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"text/event-stream" in head
    assert b"transfer-encoding: chunked" in head
    assert re.fullmatch(rb"[0-9a-f]+\r\nid: \d+\n\n\r\n", first), first
    writer.close()
    assert b"".join(writes.of(writer)) == head + first  # the same bytes, however written


async def test_a_head_is_sent_before_the_close_of_an_app_failing_mid_response(
    toy: tuple[RunningServer, Gated], writes: ServerWrites
) -> None:
    server, _ = toy
    reader, writer = await connect(server)
    writer.write(request("GET", "/fails"))
    async with asyncio.timeout(5):
        received = await reader.read()  # up to the server's close
    writer.close()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\n")
    assert writes.of(writer) == [received]


async def test_100_continue_still_goes_first(server: RunningServer, writes: ServerWrites) -> None:
    body = b"{not json"
    reader, writer = await connect(server)
    message = request("POST", HOOK, body, b"Expect: 100-continue")
    writer.write(message[: -len(body)])  # the head; the body only once asked for it
    async with asyncio.timeout(5):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    answer = await response(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"".join(writes.of(writer)) == b"HTTP/1.1 100 Continue\r\n\r\n" + answer


# ------------------------------------------------------------------------ the limits' refusals


async def test_a_bad_request_after_a_response_is_400_after_that_response(
    server: RunningServer, writes: ServerWrites
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/healthz"))
    served = await response(reader)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    async with asyncio.timeout(5):
        refused = await reader.read()
    writer.close()
    assert served.startswith(b"HTTP/1.1 200 OK\r\n")
    assert refused.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert refused.endswith(b"\r\n\r\ninvalid HTTP request\n")
    assert writes.of(writer) == [served, refused]


async def test_a_stalled_head_after_a_response_is_408(
    server: RunningServer, writes: ServerWrites
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/healthz"))
    served = await response(reader)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 12")
    async with asyncio.timeout(HEAD_TIMEOUT_MS / 1000 + 5):
        refused = await reader.read()
    writer.close()
    assert served.startswith(b"HTTP/1.1 200 OK\r\n")
    assert refused.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert writes.of(writer) == [served, refused]


async def test_an_oversized_head_after_a_response_is_431(
    server: RunningServer, writes: ServerWrites
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/healthz"))
    served = await response(reader)
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (http_limits.MAX_HEAD_BYTES + 10))
    refused = await response(reader)
    writer.close()
    assert refused.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert writes.of(writer)[:2] == [served, refused]
