"""ElevenLabs realtime speech-to-text (Scribe) over its WebSocket, `/v1/speech-to-text/realtime`.

The caller's µ-law goes through unchanged (`audio_format=ulaw_8000`): no decoding, no
resampling. The service's VAD commits each utterance (`commit_strategy=vad`) after
`vad_silence_threshold_secs` of quiet; `partial_transcript` messages are the partials and
`committed_transcript` the final. The API sends no speech-started event, so the barge-in
trigger is the first non-empty partial of an utterance — a word later than a VAD event would
be, which also means a cough or line noise that yields no word never interrupts. An
unexpected close reconnects up to 5 times, 1 s × 2^(n-1) apart, dropping audio meanwhile, as
the OpenAI client does (openai_realtime.py).
"""

from __future__ import annotations

import asyncio
import base64
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
from voice_call.speech.stt.socket import ReconnectingStt

log = logging.getLogger("voice_call.stt")

DEFAULT_URL = "wss://api.elevenlabs.io/v1/speech-to-text/realtime"
# Every error message the service documents ends the same way or is one of these.
ERRORS = frozenset({"quota_exceeded", "rate_limited", "queue_overflow", "resource_exhausted"})


@dataclass(frozen=True)
class ElevenLabsSttSettings:
    api_key: str
    url: str = DEFAULT_URL
    model: str = "scribe_v2_realtime"
    language: str | None = None
    vad_silence_threshold_secs: float = 0.8  # the API's 1.5 s is slow for a phone turn
    vad_threshold: float = 0.4
    min_speech_duration_ms: int = 100
    min_silence_duration_ms: int = 100
    connect_timeout_s: float = 10.0
    max_reconnects: int = 5
    backoff_s: float = 1.0


def session_url(settings: ElevenLabsSttSettings) -> str:
    """The URL with the session's settings in its query (what the API takes them as)."""
    query = {
        "model_id": settings.model,
        "audio_format": "ulaw_8000",
        "commit_strategy": "vad",
        "vad_silence_threshold_secs": f"{settings.vad_silence_threshold_secs:g}",
        "vad_threshold": f"{settings.vad_threshold:g}",
        "min_speech_duration_ms": str(settings.min_speech_duration_ms),
        "min_silence_duration_ms": str(settings.min_silence_duration_ms),
    }
    if settings.language:
        query["language_code"] = settings.language
    parts = urlsplit(settings.url)
    given = dict(parse_qsl(parts.query))  # a query in the configured URL wins
    return urlunsplit(parts._replace(query=urlencode({**query, **given})))


class ElevenLabsStt(ReconnectingStt[ElevenLabsSttSettings]):
    def __init__(
        self,
        settings: ElevenLabsSttSettings,
        listener: SttListener | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings, listener, sleep=sleep)
        self._speaking = False  # a partial of the current utterance has arrived

    async def _open(self) -> ClientConnection:
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                ws = await connect(
                    session_url(self.settings),
                    additional_headers={"xi-api-key": self.settings.api_key},
                    proxy=None,
                    compression=None,
                    max_size=1 << 20,
                    open_timeout=None,
                )
                try:
                    # the service speaks first: `session_started`, or why it refuses
                    message = _message(await ws.recv())
                    kind = message.get("message_type")
                    if kind != "session_started":
                        raise SttError(f"speech-to-text refused the session: {_error(message)}")
                    return ws
                except BaseException:
                    await ws.close()
                    raise
        except TimeoutError:
            raise SttError(
                f"speech-to-text did not answer within {self.settings.connect_timeout_s:g} s"
            ) from None
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace")[:300] if exc.response.body else ""
            status = exc.response.status_code
            raise SttError(f"speech-to-text refused the session: HTTP {status} {body}") from None
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            raise SttError(f"cannot reach speech-to-text: {type(exc).__name__}: {exc}") from None

    def _audio_message(self, ulaw: bytes) -> str:
        audio = base64.b64encode(ulaw).decode()
        return (
            '{"message_type":"input_audio_chunk","audio_base_64":"'
            + audio
            + '","commit":false,"sample_rate":8000}'
        )

    def _receive(self, raw: str | bytes) -> None:
        self._dispatch(_message(raw))

    def _on_dropped(self, ws: ClientConnection) -> None:
        self._speaking = False

    def _dispatch(self, message: dict[str, Any]) -> None:
        listener = self.listener
        kind = message.get("message_type")
        text = message.get("text")
        if kind == "partial_transcript" and isinstance(text, str) and text.strip():
            if not self._speaking:
                self._speaking = True
                if listener is not None:
                    listener.on_speech_started()
            if listener is not None:
                listener.on_partial(text.strip())
        elif kind == "committed_transcript" and isinstance(text, str):
            self._speaking = False
            if text.strip():
                # the VAD committed after its silence threshold: the last word ended that
                # much before the commit (the commit's own delay is the service's latency)
                silence_s = self.settings.vad_silence_threshold_secs
                self.speech_ended_at = time.monotonic() - silence_s
                if listener is not None:
                    listener.on_final(text.strip())
        elif isinstance(kind, str) and (kind.endswith("error") or kind in ERRORS):
            self._notify_error(f"{kind}: {_error(message)}", False)


def _message(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return message if isinstance(message, dict) else {}


def _error(message: dict[str, Any]) -> str:
    error = message.get("error") or message.get("message") or message.get("message_type")
    return str(error)[:300] if error else "unknown error"
