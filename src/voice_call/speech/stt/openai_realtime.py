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
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voice_call.speech.stt.base import SttError, SttListener
from voice_call.speech.stt.socket import ReconnectingStt

log = logging.getLogger("voice_call.stt")

DEFAULT_URL = "wss://api.openai.com/v1/realtime?intent=transcription"


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


class OpenAIRealtimeStt(ReconnectingStt[RealtimeSttSettings]):
    def __init__(
        self,
        settings: RealtimeSttSettings,
        listener: SttListener | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings, listener, sleep=sleep)
        self._partials: dict[str, str] = {}
        # Audio sent on this connection, in ms: the service's `audio_end_ms` counts on the
        # same timeline, so what was sent after it is how long ago the caller stopped.
        self._sent_ms = 0.0

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

    def _audio_message(self, ulaw: bytes) -> str:
        self._sent_ms += len(ulaw) / 8  # µ-law 8 kHz: 8 bytes a millisecond
        audio = base64.b64encode(ulaw).decode()
        return f'{{"type":"input_audio_buffer.append","audio":"{audio}"}}'

    def _receive(self, raw: str | bytes) -> None:
        self._dispatch(_event(raw))

    def _on_dropped(self, ws: ClientConnection) -> None:
        self._partials.clear()

    def _on_reconnected(self) -> None:
        self._sent_ms = 0.0  # a new session: a new audio buffer

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
