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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voice_call.speech.stt.base import SttError, SttListener
from voice_call.speech.stt.socket import ReconnectingStt, cancel_tasks

log = logging.getLogger("voice_call.stt")

DEFAULT_URL = "wss://api.deepgram.com/v1/listen"
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


class DeepgramStt(ReconnectingStt[DeepgramSttSettings]):
    lost_message = "Deepgram connection lost; reconnecting failed"

    def __init__(
        self,
        settings: DeepgramSttSettings,
        listener: SttListener | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings, listener, sleep=sleep)
        self._segments: list[str] = []  # is_final text of the utterance so far
        self._last_word_end_s: float | None = None
        # Audio sent on this connection, in ms: Deepgram's `start`/`end` times count on the
        # same timeline, so what was sent after the last word is how long ago it ended.
        self._sent_ms = 0.0

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

    def _audio_message(self, ulaw: bytes) -> bytes:
        self._sent_ms += len(ulaw) / 8  # µ-law 8 kHz: 8 bytes a millisecond
        return bytes(ulaw)

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self.settings.keepalive_s)
        except TimeoutError:
            self._queue.append(KEEPALIVE)  # no audio for a while: stay open

    def _receive(self, raw: str | bytes) -> None:
        if isinstance(raw, str):
            self._dispatch(_event(raw))

    def _on_dropped(self, ws: ClientConnection) -> None:
        self._segments.clear()
        log.warning("Deepgram closed the stream: %s", _close_reason(ws))

    def _on_reconnected(self) -> None:
        self._sent_ms = 0.0  # a new stream: its times start at zero again

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

    async def _shut_down(
        self, ws: ClientConnection | None, tasks: list[asyncio.Task[None]]
    ) -> None:
        """Stop the reader and writer, then ask Deepgram to flush (`CloseStream`) and close."""
        await cancel_tasks(tasks)
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
