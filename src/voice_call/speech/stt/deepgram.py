"""Deepgram live transcription over a WebSocket (`/v1/listen`).

The caller's µ-law goes out as binary frames exactly as the carrier sent it
(`encoding=mulaw&sample_rate=8000&channels=1`): no transcoding, no resampling. Deepgram's events
map onto the listener: `SpeechStarted` (with `vad_events=true`) is the barge-in trigger; a
`Results` message with `is_final: false` is a partial; `is_final: true` segments are kept until
`speech_final: true` (endpointing heard `endpointing` ms of quiet) or `UtteranceEnd` (a gap of
`utterance_end_ms` after the last word, which also catches endings noise kept endpointing from
seeing), and then their text together is the final — as Deepgram's docs say to assemble them.

With no audio for a few seconds (a hold, a silent greeting) a `KeepAlive` text frame keeps the
socket from Deepgram's 10 s idle close; `close()` sends `CloseStream` so the last words are
flushed. An unexpected close reconnects up to 5 times, 1 s × 2^(n-1) apart, as the OpenAI
client does; audio sent meanwhile is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voice_call.speech.stt.base import SttError, SttListener

log = logging.getLogger("voice_call.stt")

DEFAULT_URL = "wss://api.deepgram.com/v1/listen"
MAX_QUEUED_FRAMES = 100  # 2 s of 20 ms frames; more means the socket stalled
KEEPALIVE = json.dumps({"type": "KeepAlive"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})


@dataclass(frozen=True)
class DeepgramSttSettings:
    api_key: str
    url: str = DEFAULT_URL
    model: str = "nova-3"
    language: str | None = None
    endpointing_ms: int = 300
    utterance_end_ms: int | None = 1000
    interim_results: bool = True
    smart_format: bool = True
    connect_timeout_s: float = 10.0
    max_reconnects: int = 5
    backoff_s: float = 1.0
    keepalive_s: float = 4.0  # Deepgram closes a socket idle for 10 s


def listen_url(settings: DeepgramSttSettings) -> str:
    """`settings.url` with the stream's parameters in its query (what the URL has stays)."""
    params: dict[str, str] = {
        "model": settings.model,
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": str(settings.interim_results).lower(),
        "endpointing": str(settings.endpointing_ms),
        "vad_events": "true",
        "smart_format": str(settings.smart_format).lower(),
    }
    if settings.language:
        params["language"] = settings.language
    if settings.utterance_end_ms is not None and settings.interim_results:
        params["utterance_end_ms"] = str(settings.utterance_end_ms)
    parts = urlsplit(settings.url)
    given = dict(parse_qsl(parts.query))
    return urlunsplit(parts._replace(query=urlencode({**params, **given})))


class DeepgramStt:
    def __init__(
        self,
        settings: DeepgramSttSettings,
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
        self._queue: deque[bytes | str] = deque()
        self._wake = asyncio.Event()
        self._segments: list[str] = []  # is_final text of the utterance so far
        self._last_word_end_s: float | None = None
        self._closed = False
        self.reconnects = 0
        self.dropped_frames = 0
        self.speech_ended_at: float | None = None
        # Audio sent on this connection, in ms: Deepgram's `start`/`end` times count on the
        # same timeline, so what was sent after the last word is how long ago it ended.
        self._sent_ms = 0.0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self) -> None:
        """Open the stream; concurrent callers share one attempt."""
        if self._ws is not None:
            return
        if self._closed:
            raise SttError("speech-to-text session is closed")
        if self._supervisor is not None and not self._supervisor.done():
            return  # dropped and reconnecting on its own: a second stream would race it
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._first_connect())
        await asyncio.shield(self._connecting)

    async def _first_connect(self) -> None:
        self._ws = await self._open()
        self._supervisor = asyncio.create_task(self._supervise())
        self._writer = asyncio.create_task(self._write())

    async def _open(self) -> ClientConnection:
        headers = {"Authorization": f"Token {self.settings.api_key}"}
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                return await connect(
                    listen_url(self.settings),
                    additional_headers=headers,
                    proxy=None,
                    compression=None,
                    max_size=1 << 20,
                    open_timeout=None,
                )
        except TimeoutError:
            raise SttError(
                f"Deepgram did not answer within {self.settings.connect_timeout_s:g} s"
            ) from None
        except InvalidStatus as exc:
            # Deepgram refuses at the handshake: 401 for a key, 400 for a parameter, with a
            # JSON body ({"err_code", "err_msg"}) and the reason in a `dg-error` header.
            response = exc.response
            reason = response.headers.get("dg-error") or _err_msg(response.body)
            raise SttError(
                f"Deepgram refused the stream: HTTP {response.status_code} {reason}".rstrip()
            ) from None
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            raise SttError(f"cannot reach Deepgram: {type(exc).__name__}: {exc}") from None

    def send_audio(self, ulaw: bytes) -> None:
        if self._ws is None or not ulaw:
            return
        if len(self._queue) >= MAX_QUEUED_FRAMES:
            self._queue.popleft()
            self.dropped_frames += 1
        self._sent_ms += len(ulaw) / 8  # µ-law 8 kHz: 8 bytes a millisecond
        self._queue.append(bytes(ulaw))
        self._wake.set()

    async def _write(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.keepalive_s)
                except TimeoutError:
                    self._queue.append(KEEPALIVE)  # no audio for a while: stay open
                continue
            ws = self._ws
            if ws is None:
                self._queue.clear()
                await asyncio.sleep(0)  # reconnecting: wait for the next frame
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
                    if isinstance(raw, str):
                        self._dispatch(_event(raw))
            if self._closed:
                return
            self._ws = None
            self._segments.clear()
            log.warning("Deepgram closed the stream: %s", _close_reason(ws))
            if not await self._reconnect():
                self._notify_error("Deepgram connection lost; reconnecting failed", True)
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
            self._sent_ms = 0.0  # a new stream: its times start at zero again
            self._ws = ws
            return True
        return False

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "SpeechStarted":
            if self.listener is not None:
                self.listener.on_speech_started()
        elif kind == "Results":
            self._results(event)
        elif kind == "UtteranceEnd":
            end = _number(event.get("last_word_end"))
            if end is not None and end >= 0:
                self._last_word_end_s = end
            self._end_utterance()
        elif kind == "Error":
            message = event.get("description") or event.get("message") or "unknown error"
            self._notify_error(f"Deepgram: {str(message)[:300]}", False)

    def _results(self, event: dict[str, Any]) -> None:
        channel = event.get("channel")
        alternatives = channel.get("alternatives") if isinstance(channel, dict) else None
        first = alternatives[0] if isinstance(alternatives, list) and alternatives else None
        best: dict[str, Any] = first if isinstance(first, dict) else {}
        transcript = best.get("transcript")
        text = transcript.strip() if isinstance(transcript, str) else ""
        if event.get("is_final") is True:
            if text:
                self._segments.append(text)
                self._last_word_end_s = _word_end(event, best)
            if event.get("speech_final") is True:
                self._end_utterance()
            elif text and self.listener is not None:
                self.listener.on_partial(" ".join(self._segments))
        elif text and self.listener is not None:
            self.listener.on_partial(" ".join([*self._segments, text]))

    def _end_utterance(self) -> None:
        """speech_final or UtteranceEnd: the finalized segments are the caller's utterance."""
        if not self._segments:
            return  # UtteranceEnd after speech_final already ended it
        text = " ".join(self._segments)
        self._segments.clear()
        end_s = self._last_word_end_s
        if end_s is not None and 0 <= end_s * 1000 <= self._sent_ms:
            since_ms = self._sent_ms - end_s * 1000
            self.speech_ended_at = time.monotonic() - since_ms / 1000
        if self.listener is not None:
            self.listener.on_final(text)

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
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await ws.send(CLOSE_STREAM)  # Deepgram flushes, sends Metadata, closes
                await asyncio.wait_for(ws.close(), 2)


def _word_end(event: dict[str, Any], best: dict[str, Any]) -> float | None:
    """When the segment's last word ended, in seconds of stream audio."""
    words = best.get("words")
    if isinstance(words, list) and words and isinstance(words[-1], dict):
        end = _number(words[-1].get("end"))
        if end is not None:
            return end
    start, duration = _number(event.get("start")), _number(event.get("duration"))
    return start + duration if start is not None and duration is not None else None


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (true is not a number here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _event(raw: str) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return event if isinstance(event, dict) else {}


def _err_msg(body: bytes | bytearray | None) -> str:
    try:
        message = json.loads(body or b"").get("err_msg")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return str(message)[:300] if message else ""


def _close_reason(ws: ClientConnection) -> str:
    if ws.close_code is None:
        return "the connection dropped"
    return f"{ws.close_code} {ws.close_reason or ''}".strip()
