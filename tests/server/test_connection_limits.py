"""The HTTP connection layer against hostile sockets on loopback (server/http_limits.py): a
request head is bounded in bytes, header fields and time; open connections are capped; refusals
are answered (431, 408, 503), closed and logged once per interval, never with a traceback."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.stack import server_config
from voice_call.config import ConfigError
from voice_call.runtime import Runtime
from voice_call.server import http_limits
from voice_call.server.http_limits import MAX_HEAD_BYTES, MAX_HEADERS
from voice_call.server.serve import RunningServer, start_background

HEAD_TIMEOUT_MS = 400
MAX_CONNECTIONS = 3
Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    serve = {"port": 0, "headTimeoutMs": HEAD_TIMEOUT_MS, "maxConnections": MAX_CONNECTIONS}
    running = await start_background(Runtime(server_config(serve=serve), tmp_path / "home"))
    yield running
    await running.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record, uvicorn's too (its loggers do not propagate to the root)."""
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    try:
        yield caplog
    finally:
        uvicorn_log.removeHandler(caplog.handler)


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


async def connect(server: RunningServer) -> Socket:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def send_all(writer: asyncio.StreamWriter, data: bytes, piece: int = 16 * 1024) -> int:
    """Write `data` in pieces until the peer stops taking it; the bytes that went out."""
    sent = 0
    try:
        while sent < len(data):
            writer.write(data[sent : sent + piece])
            await writer.drain()
            sent += piece
    except ConnectionError:
        pass
    return min(sent, len(data))


async def answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[bytes, bool]:
    """The status line the server sent and whether it then closed the socket (EOF or reset)."""
    status, closed = b"", False
    try:
        async with asyncio.timeout(timeout):
            status = await reader.readline()
            await reader.read()  # the rest, up to EOF
            closed = True
    except ConnectionError:
        closed = True
    except TimeoutError:
        pass
    return status, closed


def head(*lines: bytes) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(lines)


async def test_a_200_kb_header_line_is_431_and_closed(server: RunningServer, logs: Any) -> None:
    reader, writer = await connect(server)
    await send_all(writer, head(b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n"))
    status, closed = await answer(reader)
    writer.close()
    assert status.startswith(b"HTTP/1.1 431"), status
    assert closed
    assert_no_traceback(logs)


async def test_a_huge_header_stream_is_cut_at_the_head_cap(server: RunningServer) -> None:
    """A header line that never ends: the server stops reading soon after the cap, whatever
    the client still has to send (it buffered at most the cap, not what was offered)."""
    reader, writer = await connect(server)
    offered = 64 * 1024 * 1024  # more than loopback's socket buffers hold
    pump = asyncio.create_task(send_all(writer, head(b"X-Big: " + b"a" * offered)))
    status, closed = await answer(reader)
    sent = await asyncio.wait_for(pump, 5)
    writer.close()
    assert closed
    # our 431, or, once the client has sent more than the server drops after answering, a
    # reset that may reach the client first
    assert status.startswith(b"HTTP/1.1 431") or status == b"", status
    assert sent < offered  # refused long before the end


async def test_too_many_header_fields_is_431(server: RunningServer) -> None:
    reader, writer = await connect(server)
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
    await send_all(writer, head(fields, b"\r\n"))
    status, closed = await answer(reader)
    writer.close()
    assert status.startswith(b"HTTP/1.1 431") and closed


async def test_a_head_within_the_limits_is_served(server: RunningServer) -> None:
    fields = {f"x-h{i}": "v" for i in range(MAX_HEADERS - 10)}
    fields["x-long"] = "a" * (MAX_HEAD_BYTES - 8 * 1024)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/healthz", headers=fields)
        assert response.status_code == 200
        again = await http.get("/healthz", headers=fields)  # the same connection, kept alive
        assert again.status_code == 200


async def test_half_a_head_then_silence_is_408_and_closed_after_the_head_timeout(
    server: RunningServer, logs: Any
) -> None:
    reader, writer = await connect(server)
    writer.write(head(b"X-Partial: "))
    await writer.drain()
    status, closed = await answer(reader, timeout=HEAD_TIMEOUT_MS / 1000 + 3)
    writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert closed
    assert_no_traceback(logs)


async def test_a_trickled_head_is_closed_after_the_head_timeout(server: RunningServer) -> None:
    reader, writer = await connect(server)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:
        for byte in head(b"X-Slow: " + b"a" * 1000):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    pump = asyncio.create_task(trickle())
    status, closed = await answer(reader, timeout=HEAD_TIMEOUT_MS / 1000 + 3)
    pump.cancel()
    writer.close()
    assert closed and status.startswith(b"HTTP/1.1 408"), status
    assert loop.time() - started < HEAD_TIMEOUT_MS / 1000 + 2


async def test_a_silent_socket_is_closed_after_the_head_timeout(server: RunningServer) -> None:
    reader, writer = await connect(server)
    status, closed = await answer(reader, timeout=HEAD_TIMEOUT_MS / 1000 + 3)
    writer.close()
    assert closed and status == b""  # nothing asked, nothing answered: just closed


async def test_connections_beyond_the_cap_are_refused_until_idle_ones_time_out(
    server: RunningServer, logs: Any
) -> None:
    idle = [await connect(server) for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.05)  # all accepted
    extra = [await connect(server) for _ in range(5)]
    for reader, writer in extra:
        writer.write(head(b"\r\n"))
        status, closed = await answer(reader, timeout=2)
        writer.close()
        assert closed and status.startswith(b"HTTP/1.1 503"), status
    # the silent ones go at the head timeout, and the server answers again
    for reader, _ in idle:
        assert (await answer(reader, timeout=HEAD_TIMEOUT_MS / 1000 + 3))[1]
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200
    for _, writer in idle:
        writer.close()
    refusals = [r for r in logs.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]  # once per interval
    assert_no_traceback(logs)


@pytest.mark.parametrize(
    "serve", [{"headTimeoutMs": 50}, {"headTimeoutMs": "10"}, {"maxConnections": 0}]
)
def test_out_of_range_limits_are_config_errors(serve: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        server_config(serve=serve)


def test_the_cap_leaves_half_the_open_files_limit_to_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert http_limits.connection_cap(1000) == 128
    assert "lowered to 128" in caplog.text and "ulimit -n" in caplog.text
    assert http_limits.connection_cap(100) == 100
