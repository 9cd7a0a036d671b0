"""A fake Cartesia API on a loopback port: the text-to-speech WebSocket.

Public API::

    fake = FakeCartesia(
        "car-test",            # the only key it accepts (X-API-Key, Bearer, or ?api_key=)
        first_byte_ms=90,      # each transcript's wait before its first chunk
        per_chunk_ms=20,       # wait between chunks
        chunk_ms=40,           # audio per chunk
        time_scale=1.0,        # multiplies every delay
    )
    async with fake:
        fake.ws_url            # "ws://127.0.0.1:PORT/tts/websocket"
        fake.sockets           # list[CartesiaSocketLog]: each socket's headers, messages in/out
        fake.script.error = "Internal error"   # every request now answered with an error frame
        await fake.drop()      # close every socket from the server side

The handshake needs a key and an API version (`Cartesia-Version` header or
`cartesia_version` query). [M] A missing or wrong key is refused at the handshake with HTTP 401
and a missing version with HTTP 400, each with a JSON `{"error": ...}` body: the statuses follow
Cartesia's REST errors, the body's wording is ours.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from voice_call.sim.cartesia.tts import CartesiaSocketLog, Script, TtsSocket
from voice_call.sim.server import LoopbackService

PATH = "/tts/websocket"


def presented_key(ws: WebSocket) -> str | None:
    bearer = ws.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return ws.headers.get("x-api-key") or ws.query_params.get("api_key")


class FakeCartesia(LoopbackService):
    def __init__(
        self,
        api_key: str = "car-test",
        *,
        first_byte_ms: float = 90,
        per_chunk_ms: float = 20,
        chunk_ms: int = 40,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.script = Script(first_byte_ms, per_chunk_ms, chunk_ms)
        self.time_scale = time_scale
        self.sockets: list[CartesiaSocketLog] = []
        self._open: list[TtsSocket] = []
        self.app = Starlette(routes=[WebSocketRoute(PATH, self._serve)])

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + PATH

    async def _serve(self, ws: WebSocket) -> None:
        record = CartesiaSocketLog(dict(ws.headers), dict(ws.query_params))
        self.sockets.append(record)
        refusal = self._refusal(ws)
        if refusal is not None:
            record.refused = refusal.status_code
            await ws.send_denial_response(refusal)
            return
        socket = TtsSocket(ws, self.script, lambda: self.time_scale, record)
        self._open.append(socket)
        try:
            await socket.run()
        finally:
            self._open.remove(socket)

    def _refusal(self, ws: WebSocket) -> JSONResponse | None:
        key = presented_key(ws)
        if key is None:
            return JSONResponse({"error": "Missing API key: send the X-API-Key header."}, 401)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return JSONResponse({"error": "Invalid API key"}, 401)
        if not (ws.headers.get("cartesia-version") or ws.query_params.get("cartesia_version")):
            return JSONResponse(
                {"error": "Missing Cartesia-Version header (e.g. 2025-04-16)."}, 400
            )
        return None

    async def drop(self, code: int = 1011) -> None:
        """Close every open socket from the server side (a lost connection, for tests)."""
        for socket in list(self._open):
            await socket.close(code)

    def asgi_app(self) -> Any:
        return self.app
