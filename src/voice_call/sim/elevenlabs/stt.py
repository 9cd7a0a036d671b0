"""The realtime speech-to-text WebSocket, `/v1/speech-to-text/realtime` (Scribe realtime).

Settings come in the query (`model_id`, `audio_format`, `commit_strategy`, `language_code`,
`vad_silence_threshold_secs`, `vad_threshold`, `min_speech_duration_ms`,
`min_silence_duration_ms`, `include_timestamps`); the server speaks first with
`session_started` (its `config` echoes them). Audio arrives as `input_audio_chunk` messages
(`audio_base_64`, `commit`, `sample_rate`). An energy VAD decides when the caller spoke; the words
come out of band from an `SttScript`, since the fake cannot recognise speech: from the first
loud window, `partial_transcript` grows word by word; after `vad_silence_threshold_secs` of
quiet (`commit_strategy=vad`), or on a chunk with `commit: true`, a `committed_transcript`
(and `committed_transcript_with_timestamps` when asked) ends the segment. There is no
speech-started event: the service sends none. A segment's partials all come out before its
committed transcript.

A bad message gets an `input_error` and the socket stays open. [M] A missing or wrong
`xi-api-key` (or `token`) is answered on the socket with `auth_error` and a 1008 close, and a bad
query setting with `input_error` and a 1008 close; the real close codes are not documented.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.sim.ai_http import pause
from voice_call.sim.openai.vad import EnergyVad, VadSettings, decode

FORMATS = {
    "ulaw_8000": ("g711_ulaw", 8000),
    **{f"pcm_{rate}": ("pcm16", rate) for rate in (8000, 16000, 22050, 24000, 44100, 48000)},
}
DEFAULTS: dict[str, Any] = {
    "audio_format": "pcm_16000",
    "commit_strategy": "manual",
    "vad_silence_threshold_secs": 1.5,
    "vad_threshold": 0.4,
    "min_speech_duration_ms": 100,
    "min_silence_duration_ms": 100,
}
# [M] Scribe's VAD threshold is a speech probability; the fake maps it onto loudness as the
# OpenAI fake does (sim/openai/vad.py): 0.4 ⇒ speech at RMS ≥ 2% of full scale.


class SttScript:
    """What the caller's segments say: queued lines first, then `source(segment index)`, else
    "". A segment's words are chosen when its speech starts (its partials begin then)."""

    def __init__(
        self,
        lines: Iterable[str] = (),
        *,
        source: Callable[[int], str] | None = None,
        first_partial_ms: float = 150,
        per_word_ms: float = 40,
        commit_ms: float = 50,
    ) -> None:
        self._lines: deque[str] = deque(lines)
        self.source = source
        self.segments = 0
        self.first_partial_ms = first_partial_ms  # speech start → first partial
        self.per_word_ms = per_word_ms
        self.commit_ms = commit_ms  # end of speech (or commit) → committed transcript

    def say(self, text: str) -> None:
        self._lines.append(text)

    @property
    def pending(self) -> list[str]:
        return list(self._lines)

    def next_line(self) -> str:
        index, self.segments = self.segments, self.segments + 1
        if self._lines:
            return self._lines.popleft()
        return self.source(index) if self.source is not None else ""


@dataclass
class SttSession:
    """One socket's traffic, for tests to assert on."""

    query: dict[str, str]
    headers: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    closed: bool = False


class SettingError(ValueError):
    pass


def session_config(query: dict[str, str]) -> dict[str, Any]:
    """The query's settings with defaults, checked; SettingError names the bad one."""
    config: dict[str, Any] = dict(DEFAULTS)
    if not query.get("model_id"):
        raise SettingError("model_id is required, e.g. model_id=scribe_v2_realtime")
    config["model_id"] = query["model_id"]
    if "audio_format" in query:
        if query["audio_format"] not in FORMATS:
            raise SettingError(f"audio_format must be one of {', '.join(FORMATS)}")
        config["audio_format"] = query["audio_format"]
    if "commit_strategy" in query:
        if query["commit_strategy"] not in ("manual", "vad"):
            raise SettingError("commit_strategy must be 'manual' or 'vad'")
        config["commit_strategy"] = query["commit_strategy"]
    limits = {
        "vad_silence_threshold_secs": (0.3, 3.0, float),
        "vad_threshold": (0.1, 0.9, float),
        "min_speech_duration_ms": (50, 2000, int),
        "min_silence_duration_ms": (50, 2000, int),
    }
    for name, (low, high, kind) in limits.items():
        if name in query:
            try:
                value = kind(query[name])
            except ValueError:
                raise SettingError(f"{name} must be a number") from None
            if not low <= value <= high:
                raise SettingError(f"{name} must be between {low} and {high}")
            config[name] = value
    if query.get("language_code"):
        config["language_code"] = query["language_code"]
    config["include_timestamps"] = query.get("include_timestamps", "false") == "true"
    config["sample_rate"] = FORMATS[config["audio_format"]][1]
    return config


class SttSocket:
    """One accepted connection: reads audio chunks, runs the VAD, sends transcripts."""

    def __init__(
        self,
        ws: WebSocket,
        config: dict[str, Any],
        script: SttScript,
        time_scale: float,
        record: SttSession,
    ) -> None:
        self.ws = ws
        self.config = config
        self.script = script
        self.time_scale = time_scale
        self.record = record
        self.codec, self.rate = FORMATS[config["audio_format"]]
        silence_ms = round(config["vad_silence_threshold_secs"] * 1000)
        self.vad = EnergyVad(VadSettings(config["vad_threshold"], 0, silence_ms), self.rate)
        self.segment: asyncio.Task[None] | None = None  # the partials of the current segment
        self.words: list[str] = []  # of the current segment
        self.started_ms = 0
        self._lock = asyncio.Lock()
        self._gone = False

    async def run(self) -> None:
        await self.ws.accept()
        session_id = secrets.token_hex(16)
        await self.send("session_started", session_id=session_id, config=self.config)
        try:
            while not self._gone:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    self.record.close_code = message.get("code")
                    break
                text = message.get("text")
                if text is None:
                    await self.send("input_error", error="Send JSON text messages, not binary.")
                    continue
                await self._handle(text)
        except WebSocketDisconnect as exc:
            self.record.close_code = exc.code
        except RuntimeError:
            pass  # we closed it (drop, refusal) and the client's close came back
        finally:
            if self.segment is not None:
                self.segment.cancel()
            self.record.closed = True

    async def send(self, message_type: str, **fields: Any) -> None:
        message = {"message_type": message_type, **fields}
        self.record.sent.append(message)
        async with self._lock:
            if self._gone:
                return
            try:
                await self.ws.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._gone = True

    async def close(self, code: int, reason: str = "") -> None:
        async with self._lock:
            self._gone = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code, reason=reason)
        self.record.close_code = code
        self.record.closed = True

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            await self.send("input_error", error="Invalid JSON message.")
            return
        if not isinstance(message, dict):
            await self.send("input_error", error="A message must be a JSON object.")
            return
        self.record.received.append(message)
        kind = message.get("message_type", "input_audio_chunk")
        if kind != "input_audio_chunk":
            await self.send("input_error", error=f"Unknown message_type: {kind!r}.")
            return
        audio = message.get("audio_base_64")
        try:
            data = base64.b64decode(audio, validate=True) if isinstance(audio, str) else None
        except (binascii.Error, ValueError):
            data = None
        if data is None:
            await self.send("input_error", error="audio_base_64 must be base64-encoded audio.")
            return
        rate = message.get("sample_rate", self.rate)
        if rate != self.rate:
            await self.send(
                "input_error",
                error=f"sample_rate {rate} does not match {self.config['audio_format']}.",
            )
            return
        await self._audio(data)
        if message.get("commit") is True:
            await self._commit()

    async def _audio(self, data: bytes) -> None:
        for edge in self.vad.feed(decode(self.codec, data)):
            if edge.speech and self.segment is None:
                self.started_ms = edge.at_ms
                self.words = self.script.next_line().split()
                self.segment = asyncio.create_task(self._partials(self.words))
            elif not edge.speech and self.config["commit_strategy"] == "vad":
                silence_ms = round(self.config["vad_silence_threshold_secs"] * 1000)
                await self._commit(edge.at_ms - silence_ms)

    async def _partials(self, words: list[str]) -> None:
        await pause(self.script.first_partial_ms, self.time_scale)
        for count in range(1, len(words) + 1):
            if count > 1:
                await pause(self.script.per_word_ms, self.time_scale)
            await self.send("partial_transcript", text=" ".join(words[:count]))

    async def _commit(self, ended_ms: int | None = None) -> None:
        if self.segment is None:
            self.words = self.script.next_line().split()
            self.started_ms = self.vad.position_ms
        else:
            await self.segment  # the segment's partials come out before its transcript
        self.segment = None
        self.vad.reset_speech()
        words, self.words = self.words, []
        await pause(self.script.commit_ms, self.time_scale)
        text = " ".join(words)
        await self.send("committed_transcript", text=text)
        if self.config["include_timestamps"]:
            end_ms = self.vad.position_ms if ended_ms is None else ended_ms
            await self.send(
                "committed_transcript_with_timestamps",
                text=text,
                language_code=self.config.get("language_code", "en"),
                words=_timed(words, self.started_ms, end_ms),
            )


def _timed(words: list[str], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Words spread evenly over the segment, in seconds from the session's start."""
    step = (end_ms - start_ms) / max(1, len(words)) / 1000
    return [
        {
            "text": word,
            "start": round(start_ms / 1000 + index * step, 3),
            "end": round(start_ms / 1000 + (index + 1) * step, 3),
            "type": "word",
            "logprob": 0.0,
        }
        for index, word in enumerate(words)
    ]


class RealtimeStt:
    """The route: authenticate, check the query, then run one socket per connection."""

    def __init__(self, api_key: str, script: SttScript, scale: Callable[[], float]) -> None:
        self.api_key = api_key
        self.script = script
        self.scale = scale  # read per connection, so tests may retune it
        self.sessions: list[SttSession] = []
        self.sockets: list[SttSocket] = []

    async def serve(self, ws: WebSocket) -> None:
        record = SttSession(dict(ws.query_params), dict(ws.headers))
        self.sessions.append(record)
        key = ws.headers.get("xi-api-key") or ws.query_params.get("token")
        if key is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            socket = SttSocket(ws, dict(DEFAULTS), self.script, self.scale(), record)
            await ws.accept()
            await socket.send("auth_error", error="Invalid API key" if key else "Missing API key")
            await socket.close(1008, "authentication failed")
            return
        try:
            config = session_config(record.query)
        except SettingError as exc:
            socket = SttSocket(ws, dict(DEFAULTS), self.script, self.scale(), record)
            await ws.accept()
            await socket.send("input_error", error=str(exc))
            await socket.close(1008, "invalid settings")
            return
        socket = SttSocket(ws, config, self.script, self.scale(), record)
        self.sockets.append(socket)
        try:
            await socket.run()
        finally:
            self.sockets.remove(socket)

    async def drop(self, code: int = 1011, reason: str = "internal error") -> None:
        """Close every open socket from the server side (a lost connection, for tests)."""
        for socket in list(self.sockets):
            await socket.close(code, reason)
