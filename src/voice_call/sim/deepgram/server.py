"""A fake Deepgram API on a loopback port: live transcription and Aura text-to-speech.

Public API::

    fake = FakeDeepgram(
        "dg-test",                                   # the only key it accepts (Token)
        listen=ListenScript(["caller line 1", ...], source=None,
                            first_result_ms=150, per_word_ms=40, final_ms=30,
                            idle_timeout_ms=10_000),
        speak=SpeakScript(first_byte_ms=150, per_chunk_ms=20, chunk_ms=50),
        time_scale=1.0,                              # multiplies every delay; 0.05 in tests
    )
    async with fake:
        fake.url           # "http://127.0.0.1:PORT" — the API root (tts.providers.deepgram.baseUrl)
        fake.listen_url    # "ws://127.0.0.1:PORT/v1/listen" (streaming.providers.deepgram.url)
        fake.streams       # list[ListenStream]: each socket's query, received and sent messages
        fake.requests      # list[LoggedRequest]: every HTTP request and its status
        fake.listen.say("yes please")       # what the caller's next utterance transcribes to
        fake.listen.refuse(503, "…")        # handshakes refused on demand (count=…)
        fake.speak.fail = (500, "…", "…")   # every synthesis fails while set
        await fake.drop_streams(1011, "…")  # close the live sockets from the server side

Endpoints: `WS /v1/listen` (listen.py), `POST /v1/speak` (speak.py), `GET /v1/models` (a short
model list; clients use it to open a connection early). Auth is `Authorization: Token <key>`;
a missing or wrong key is a 401 `{"err_code": "INVALID_AUTH", "err_msg", "request_id"}` — for
the WebSocket too, at the handshake, before any upgrade.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voice_call.sim.ai_http import LoggedRequest, logged
from voice_call.sim.deepgram.errors import auth_failure
from voice_call.sim.deepgram.listen import ListenScript, ListenSocket, ListenStream, serve_listen
from voice_call.sim.deepgram.speak import SpeakScript, speak
from voice_call.sim.server import LoopbackService

MODELS = {
    "stt": [{"name": "nova-3", "canonical_name": "nova-3", "streaming": True}],
    "tts": [{"name": "aura-2-thalia-en", "canonical_name": "aura-2-thalia-en"}],
}


class FakeDeepgram(LoopbackService):
    def __init__(
        self,
        api_key: str = "dg-test",
        *,
        listen: ListenScript | None = None,
        speak: SpeakScript | None = None,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.listen = listen or ListenScript()
        self.speak = speak or SpeakScript()
        self.time_scale = time_scale
        self.requests: list[LoggedRequest] = []
        self.streams: list[ListenStream] = []
        self._live: set[ListenSocket] = set()
        self.app = Starlette(
            routes=[
                WebSocketRoute("/v1/listen", self._listen),
                Route("/v1/speak", logged(self.requests, self._speak), methods=["POST"]),
                Route("/v1/models", logged(self.requests, self._models), methods=["GET"]),
            ]
        )

    async def _listen(self, ws: WebSocket) -> None:
        refused = auth_failure(ws, self.api_key)
        await serve_listen(ws, refused, self.listen, self.time_scale, self.streams, self._live)

    async def _speak(self, request: Request) -> Response:
        return auth_failure(request, self.api_key) or await speak(
            request, self.speak, self.time_scale
        )

    async def _models(self, request: Request) -> Response:
        return JSONResponse(MODELS)

    async def drop_streams(self, code: int = 1011, reason: str = "INTERNAL_SERVER_ERROR") -> int:
        """Close every live transcription socket from the server side; how many were open."""
        sockets = list(self._live)
        await asyncio.gather(*(socket.close(code, reason) for socket in sockets))
        return len(sockets)

    def asgi_app(self) -> Any:
        return self.app

    @property
    def listen_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/v1/listen"
