"""OpenAI Realtime transcription over a WebSocket (`/v1/realtime?intent=transcription`).

The caller's µ-law is forwarded unchanged (`audio/pcmu`, `g711_ulaw` in the beta dialect): no
transcoding, no resampling. Server VAD settings (threshold, prefix padding, silence duration)
come from `streaming.providers.openai`. Events used: `input_audio_buffer.speech_started`
(barge-in), `conversation.item.input_audio_transcription.delta` (partials) and `.completed`
(finals). An unexpected close reconnects up to 5 times, 1 s × 2^(n-1) apart; audio sent
meanwhile is dropped, as the caller's words then are anyway.

Two wire dialects: "ga" (`session.update` with `session.type: "transcription"`, the current
API) and "beta" (`transcription_session.update` with the `OpenAI-Beta: realtime=v1` header).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voice_call.speech.stt.base import SttError, SttListener

log = logging.getLogger("voice_call.stt")

DEFAULT_URL = "wss://api.openai.com/v1/realtime?intent=transcription"
MAX_QUEUED_FRAMES = 100  # 2 s of 20 ms frames; more means the socket stalled


@dataclass(frozen=True)
class RealtimeSttSettings:
    api_key: str
    url: str = DEFAULT_URL
    model: str = "gpt-4o-transcribe"
    language: str | None = None
    prompt: str | None = None
    vad_threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 800
    api: Literal["ga", "beta"] = "ga"
    connect_timeout_s: float = 10.0
    max_reconnects: int = 5
    backoff_s: float = 1.0


def session_update(settings: RealtimeSttSettings) -> dict[str, Any]:
    transcription: dict[str, Any] = {"model": settings.model}
    if settings.language:
        transcription["language"] = settings.language
    if settings.prompt:
        transcription["prompt"] = settings.prompt
    vad = {
        "type": "server_vad",
        "threshold": settings.vad_threshold,
        "prefix_padding_ms": settings.prefix_padding_ms,
        "silence_duration_ms": settings.silence_duration_ms,
    }
    if settings.api == "beta":
        return {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": transcription,
                "turn_detection": vad,
            },
        }
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": transcription,
                    "turn_detection": vad,
                }
            },
        },
    }


class OpenAIRealtimeStt:
    def __init__(
        self,
        settings: RealtimeSttSettings,
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
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._partials: dict[str, str] = {}
        self._closed = False
        self.reconnects = 0
        self.dropped_frames = 0
        self.speech_ended_at: float | None = None
        # Audio sent on this connection, in ms: the service's `audio_end_ms` counts on the
        # same timeline, so what was sent after it is how long ago the caller stopped.
        self._sent_ms = 0.0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self) -> None:
        """Open and configure the session; concurrent callers share one attempt."""
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

    async def _open(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.settings.api_key}"}
        if self.settings.api == "beta":
            headers["OpenAI-Beta"] = "realtime=v1"
        updated = (
            "transcription_session.updated" if self.settings.api == "beta" else "session.updated"
        )
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                ws = await connect(
                    self.settings.url,
                    additional_headers=headers,
                    proxy=None,
                    compression=None,
                    max_size=1 << 20,
                    open_timeout=None,
                )
                try:
                    # The service speaks first (`session.created`, or an `error` for a bad key
                    # before it closes), then our settings are confirmed by `...updated`.
                    sent = False
                    while True:
                        event = _event(await ws.recv())
                        kind = event.get("type")
                        if kind == "error":
                            raise SttError(f"speech-to-text refused the session: {_message(event)}")
                        if kind == updated:
                            return ws
                        if not sent:
                            await ws.send(json.dumps(session_update(self.settings)))
                            sent = True
                except BaseException:
                    await ws.close()
                    raise
        except TimeoutError:
            raise SttError(
                f"speech-to-text did not answer within {self.settings.connect_timeout_s:g} s"
            ) from None
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            raise SttError(f"cannot reach speech-to-text: {type(exc).__name__}: {exc}") from None

    def send_audio(self, ulaw: bytes) -> None:
        if self._ws is None or not ulaw:
            return
        if len(self._queue) >= MAX_QUEUED_FRAMES:
            self._queue.popleft()
            self.dropped_frames += 1
        self._sent_ms += len(ulaw) / 8  # µ-law 8 kHz: 8 bytes a millisecond
        audio = base64.b64encode(ulaw).decode()
        self._queue.append(f'{{"type":"input_audio_buffer.append","audio":"{audio}"}}')
        self._wake.set()

    async def _write(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
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
                    self._dispatch(_event(raw))
            if self._closed:
                return
            self._ws = None
            self._partials.clear()
            if not await self._reconnect():
                self._notify_error("speech-to-text connection lost; reconnecting failed", True)
                return

    async def _reconnect(self) -> bool:
        for attempt in range(1, self.settings.max_reconnects + 1):
            await self._sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            if self._closed:
                return False
            try:
                self._ws = await self._open()
            except SttError as exc:
                log.warning("speech-to-text reconnect %d failed: %s", attempt, exc)
                continue
            self.reconnects += 1
            self._sent_ms = 0.0  # a new session: a new audio buffer
            return True
        return False

    def _dispatch(self, event: dict[str, Any]) -> None:
        listener = self.listener
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            if listener is not None:
                listener.on_speech_started()
        elif kind == "input_audio_buffer.speech_stopped":
            end_ms = event.get("audio_end_ms")
            if isinstance(end_ms, int | float) and 0 <= end_ms <= self._sent_ms:
                # `audio_end_ms` includes the quiet the VAD waited for: the last word ended
                # that much earlier.
                last_word_ms = max(0.0, float(end_ms) - self.settings.silence_duration_ms)
                since_ms = self._sent_ms - last_word_ms
                self.speech_ended_at = time.monotonic() - since_ms / 1000
        elif kind == "conversation.item.input_audio_transcription.delta":
            item, delta = event.get("item_id"), event.get("delta")
            if isinstance(item, str) and isinstance(delta, str):
                text = self._partials[item] = self._partials.get(item, "") + delta
                if listener is not None:
                    listener.on_partial(text)
        elif kind == "conversation.item.input_audio_transcription.completed":
            item, transcript = event.get("item_id"), event.get("transcript")
            if isinstance(item, str):
                self._partials.pop(item, None)
            if isinstance(transcript, str) and transcript.strip() and listener is not None:
                listener.on_final(transcript.strip())
        elif kind == "error":
            self._notify_error(_message(event), False)

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
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await asyncio.wait_for(ws.close(), 2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _event(raw: str | bytes) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return event if isinstance(event, dict) else {}


def _message(event: dict[str, Any]) -> str:
    error = event.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:300]
    return "unknown error"
