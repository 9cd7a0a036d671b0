"""The WebSocket machinery the streaming speech-to-text clients share.

One socket per session: `connect()` opens it, a supervisor task reads events until it drops
and then reconnects `max_reconnects` times, `backoff_s` × 2^(n-1) apart (through an injectable
`sleep`, so tests need not wait), and a writer task drains the audio queue. Audio sent while
the socket is down is dropped, as the caller's words then are anyway. Each client supplies
`_open()` (connect and handshake), `_audio_message()`, `_receive()` and the reset hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voice_call.speech.stt.base import SttError, SttListener

log = logging.getLogger("voice_call.stt")

MAX_QUEUED_FRAMES = 100  # 2 s of 20 ms frames; more means the socket stalled


class ReconnectSettings(Protocol):
    @property
    def max_reconnects(self) -> int: ...

    @property
    def backoff_s(self) -> float: ...


S = TypeVar("S", bound=ReconnectSettings)


class ReconnectingStt(ABC, Generic[S]):
    lost_message = "speech-to-text connection lost; reconnecting failed"

    def __init__(
        self,
        settings: S,
        listener: SttListener | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.listener = listener
        self._sleep = sleep
        self._ws: ClientConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: deque[str | bytes] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self.reconnects = 0
        self.dropped_frames = 0
        self.speech_ended_at: float | None = None

    # --- what each client supplies

    @abstractmethod
    async def _open(self) -> ClientConnection:
        """Connect and finish the service's handshake; SttError when that fails."""

    @abstractmethod
    def _audio_message(self, ulaw: bytes) -> str | bytes:
        """The frame that carries `ulaw` to the service."""

    @abstractmethod
    def _receive(self, raw: str | bytes) -> None:
        """One message from the service."""

    def _on_dropped(self, ws: ClientConnection) -> None:
        """The socket dropped: forget the half-heard utterance."""

    def _on_reconnected(self) -> None:
        """A new socket: the service's clock starts again."""

    async def _idle(self) -> None:
        """Wait for audio to send."""
        await self._wake.wait()

    # --- the shared machinery

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self) -> None:
        """Open the session; concurrent callers share one attempt."""
        if self._ws is not None:
            return
        if self._closed:
            raise SttError("speech-to-text session is closed")
        if self._supervisor is not None and not self._supervisor.done():
            return  # dropped and reconnecting on its own: a second socket would race it
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._first_connect())
        await asyncio.shield(self._connecting)

    async def _first_connect(self) -> None:
        self._ws = await self._open()
        self._supervisor = asyncio.create_task(self._supervise())
        self._writer = asyncio.create_task(self._write())

    def send_audio(self, ulaw: bytes) -> None:
        if self._ws is None or not ulaw:
            return
        if len(self._queue) >= MAX_QUEUED_FRAMES:
            self._queue.popleft()
            self.dropped_frames += 1
        self._queue.append(self._audio_message(ulaw))
        self._wake.set()

    async def _write(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._idle()
                continue
            ws = self._ws
            if ws is None:
                self._queue.clear()
                continue
            message = self._queue.popleft()
            try:
                await ws.send(message)
            except ConnectionClosed:
                self._queue.clear()  # the supervisor notices and reconnects

    async def _supervise(self) -> None:
        while not self._closed:
            ws = self._ws
            assert ws is not None
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    self._receive(raw)
            if self._closed:
                return
            self._ws = None
            self._on_dropped(ws)
            if not await self._reconnect():
                self._notify_error(self.lost_message, True)
                return

    async def _reconnect(self) -> bool:
        for attempt in range(1, self.settings.max_reconnects + 1):
            await self._sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            if self._closed:
                return False
            try:
                ws = await self._open()
            except SttError as exc:
                log.warning("speech-to-text reconnect %d failed: %s", attempt, exc)
                continue
            self.reconnects += 1
            self._on_reconnected()
            self._ws = ws
            return True
        return False

    def _notify_error(self, message: str, fatal: bool) -> None:
        log.warning("speech-to-text: %s", message)
        if self.listener is not None:
            self.listener.on_error(message, fatal)

    async def close(self) -> None:
        self._closed = True
        if self.dropped_frames or self.reconnects:  # the caller's words may be missing
            log.warning(
                "speech-to-text session closed after %d reconnect(s), %d audio frame(s) dropped",
                self.reconnects,
                self.dropped_frames,
            )
        tasks = [t for t in (self._connecting, self._supervisor, self._writer) if t is not None]
        ws, self._ws = self._ws, None
        await self._shut_down(ws, tasks)

    async def _shut_down(
        self, ws: ClientConnection | None, tasks: list[asyncio.Task[None]]
    ) -> None:
        """Close the socket, then stop the reader and writer."""
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await asyncio.wait_for(ws.close(), 2)
        await cancel_tasks(tasks)


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
