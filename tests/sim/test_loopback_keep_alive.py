"""A fake service keeps an idle client connection open past httpx's pool expiry (5 s).

At uvicorn's default idle limit (also 5 s) the server could close a pooled connection at the
instant our REST client reused it: the request failed unsent with a ReadError (CI, the Plivo
transfer test). A real carrier's API keeps idle connections far longer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from voice_call.sim.server import LoopbackService

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


class Service(LoopbackService):
    def asgi_app(self) -> Any:
        return ok


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    body = await asyncio.wait_for(reader.readexactly(2), 2)
    return head.split(b"\r\n", 1)[0] + b" " + body


async def test_an_idle_connection_outlives_the_client_pools_expiry() -> None:
    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None
    async with Service() as service:
        port = httpx.URL(service.url).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await answer(reader, writer) == b"HTTP/1.1 200 OK ok"
            await asyncio.sleep(expiry + 0.5)
            assert await answer(reader, writer) == b"HTTP/1.1 200 OK ok"  # same connection
        finally:
            writer.close()
