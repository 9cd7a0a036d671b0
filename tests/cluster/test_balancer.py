"""The chaos test's load balancer (tests/cluster/balancer.py) does what a real one does: each
request of a keep-alive client to the next backend, a refused backend skipped, a WebSocket
kept on the backend it reached, 502 when nobody answers."""

from __future__ import annotations

from collections import Counter

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from tests.cluster.balancer import Balancer
from voice_call.asgi_server import BackgroundServer


def backend(name: str) -> Starlette:
    async def who(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(f"{name}:{len(body)}")

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(f"{name}:{text}")

    return Starlette(routes=[Route("/", who, methods=["GET", "POST"]), WebSocketRoute("/ws", echo)])


async def test_requests_spread_round_robin_and_a_dead_backend_is_skipped() -> None:
    servers = [BackgroundServer(backend(n)) for n in ("a", "b", "c")]
    for server in servers:
        await server.start()
    try:
        async with (
            Balancer([s.port for s in servers]) as lb,
            httpx.AsyncClient(base_url=lb.url, trust_env=False) as http,  # keeps connections
        ):
            answers = [(await http.post("/", content=b"x" * 70_000)).text for _ in range(6)]
            assert Counter(answers) == Counter({"a:70000": 2, "b:70000": 2, "c:70000": 2})

            await servers[1].stop()
            answers = [(await http.get("/")).text for _ in range(4)]
            assert set(answers) == {"a:0", "c:0"}
            assert lb.refusals[servers[1].port] >= 1

            lb.mark(servers[0].port, up=False)
            assert {(await http.get("/")).text for _ in range(3)} == {"c:0"}

            async with connect(lb.url.replace("http", "ws") + "/ws") as ws:
                for n in range(3):  # one socket stays on the backend it reached
                    await ws.send(str(n))
                    assert await ws.recv() == f"c:{n}"

            await servers[2].stop()
            refused = await http.get("/")
            assert refused.status_code == 502
    finally:
        for server in servers:
            await server.stop()
