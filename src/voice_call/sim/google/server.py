"""A fake Gemini Live service on a loopback port: `BidiGenerateContent` over a real WebSocket.

Public API::

    fake = FakeGeminiLive(
        "gemini-test-key",                      # the only key it accepts (?key= or x-goog-api-key)
        script=LiveScript(caller=["what time is it"], replies=["It is noon.", Reply(...)],
                          first_audio_ms=300, chunk_ms=40),
        time_scale=1.0,                         # multiplies every delay; small in tests
        models=None,                            # model ids it serves; None: any
        binary_frames=True,                     # server JSON in binary frames, as the service
        fail_after_responses=None,              # close 1011 after this many model turns
    )
    async with fake:
        fake.url         # "ws://127.0.0.1:PORT/ws/google.ai…BidiGenerateContent" (no key)
        fake.sessions    # list[LiveSession]: each socket's received / sent messages, timings
        fake.rate_limited = True                # new sockets close 1011 with the quota reason
        await fake.server_error()               # every open socket closes 1011
        await fake.end_sessions()               # every open socket closes 1000
        await fake.go_away(0.5)                 # goAway {timeLeft}, then the close

See `voice_call.sim.google.live` for the protocol itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from voice_call.sim.google.live import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    INTERNAL,
    QUOTA,
    LiveOptions,
    LiveScript,
    LiveSession,
    LiveSocket,
)
from voice_call.sim.server import LoopbackService

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


class FakeGeminiLive(LoopbackService):
    def __init__(
        self,
        api_key: str = "gemini-test-key",
        *,
        script: LiveScript | None = None,
        time_scale: float = 1.0,
        models: Iterable[str] | None = None,
        binary_frames: bool = True,
        fail_after_responses: int | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.script = script or LiveScript()
        self.time_scale = time_scale
        self.models = frozenset(models) if models is not None else None
        self.binary_frames = binary_frames
        self.fail_after_responses = fail_after_responses
        self.rate_limited = False
        self.sessions: list[LiveSession] = []
        self._sockets: list[LiveSocket] = []
        self._handles: dict[str, list[tuple[str, str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def asgi_app(self) -> Any:
        return Starlette(routes=[WebSocketRoute(PATH, self._live)])

    @property
    def url(self) -> str:
        return "ws" + super().url.removeprefix("http") + PATH

    async def _live(self, ws: WebSocket) -> None:
        key = ws.query_params.get("key") or ws.headers.get("x-goog-api-key")
        record = LiveSession(key=key)
        self.sessions.append(record)
        options = LiveOptions(
            api_key=self.api_key,
            script=self.script,
            time_scale=self.time_scale,
            models=self.models,
            binary_frames=self.binary_frames,
            fail_after_responses=self.fail_after_responses,
            handles=self._handles,
        )
        socket = LiveSocket(ws, options, record)
        if self.rate_limited:
            await ws.accept()
            await socket.close(CLOSE_INTERNAL, QUOTA)
            record.closed = True
            return
        self._sockets.append(socket)
        try:
            await socket.run()
        finally:
            self._sockets.remove(socket)

    async def server_error(self, code: int = CLOSE_INTERNAL, reason: str = INTERNAL) -> None:
        """Every open session fails now, as a server error mid-call does."""
        for socket in list(self._sockets):
            await socket.close(code, reason)

    async def end_sessions(self, reason: str = "") -> None:
        """The service ends every open session cleanly."""
        for socket in list(self._sockets):
            await socket.close(CLOSE_NORMAL, reason)

    async def go_away(self, time_left_s: float) -> None:
        """Send `goAway` to every open session; each closes once its time is up."""
        for socket in list(self._sockets):
            task = asyncio.create_task(socket.go_away(time_left_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.end_sessions("server stopping")
