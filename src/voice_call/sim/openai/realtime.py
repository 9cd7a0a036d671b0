"""The Realtime transcription WebSocket, `/v1/realtime?intent=transcription`.

Two dialects, chosen per connection as the real service chooses them:

* beta — the client sent `OpenAI-Beta: realtime=v1` (or the `openai-beta.realtime-v1`
  subprotocol): `transcription_session.created`, `transcription_session.update` →
  `transcription_session.updated`, session fields `input_audio_format`,
  `input_audio_transcription`, `turn_detection`, `input_audio_noise_reduction`;
  `conversation.item.created` on commit.
* GA — otherwise: `session.created`, `session.update` with `session.type = "transcription"` →
  `session.updated`, fields under `session.audio.input` (`format: {type: audio/pcm|audio/pcmu|
  audio/pcma}`, `transcription`, `turn_detection`, `noise_reduction`);
  `conversation.item.added` on commit.

Either way: `input_audio_buffer.append` (base64) feeds an energy VAD → `speech_started`, and
after `silence_duration_ms` of quiet `speech_stopped`, `committed`, the item event, then
`conversation.item.input_audio_transcription.delta` word by word and `...completed`. The words
come out of band from a `TranscriptionScript`, since the fake cannot recognise speech.
`input_audio_buffer.commit` / `.clear` work as documented; a bad client event gets an `error`
event and the socket stays open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.sim.ai_http import pause
from voice_call.sim.openai.chat import tokens
from voice_call.sim.openai.errors import auth_error, error_body
from voice_call.sim.openai.realtime_config import ClientEventError, SessionConfig, invalid
from voice_call.sim.openai.vad import RATES, EnergyVad, Samples, VadSettings, decode

MIN_COMMIT_MS = 100
BETA_EVENTS = {
    "created": "transcription_session.created",
    "update": "transcription_session.update",
    "updated": "transcription_session.updated",
    "item": "conversation.item.created",
}
GA_EVENTS = {
    "created": "session.created",
    "update": "session.update",
    "updated": "session.updated",
    "item": "conversation.item.added",
}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(10)


@dataclass(frozen=True)
class TranscriptTurn:
    """One committed stretch of caller audio, as handed to a transcript source."""

    index: int  # 0-based within its socket
    item_id: str
    audio_ms: int
    pcm16: bytes  # little-endian samples at `rate`
    rate: int


class TranscriptionScript:
    """Where transcripts come from: queued lines first, then `source(turn)`, else ""."""

    def __init__(
        self,
        lines: Iterable[str] = (),
        *,
        source: Callable[[TranscriptTurn], str] | None = None,
        first_delta_ms: float = 150,
        per_word_ms: float = 40,
    ) -> None:
        self._lines: deque[str] = deque(lines)
        self.source = source
        self.first_delta_ms = first_delta_ms
        self.per_word_ms = per_word_ms

    def say(self, text: str) -> None:
        """Queue what the caller's next turn will be transcribed as."""
        self._lines.append(text)

    @property
    def pending(self) -> list[str]:
        return list(self._lines)

    def transcript_for(self, turn: TranscriptTurn) -> str:
        if self._lines:
            return self._lines.popleft()
        return self.source(turn) if self.source is not None else ""


@dataclass
class RealtimeSession:
    """One socket's traffic, for tests to assert on: every client event and server event."""

    dialect: str  # "beta" | "ga"
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    closed: bool = False


class TranscriptionSocket:
    """One accepted connection: reads client events, runs the VAD, sends server events."""

    def __init__(
        self, ws: WebSocket, script: TranscriptionScript, time_scale: float, record: RealtimeSession
    ) -> None:
        self.ws = ws
        self.script = script
        self.time_scale = time_scale
        self.record = record
        self.names = BETA_EVENTS if record.dialect == "beta" else GA_EVENTS
        self.config = SessionConfig()
        self.session_id = new_id("sess_")
        self.expires_at = int(time.time()) + 30 * 60
        self.vad = EnergyVad(VadSettings(), RATES[self.config.audio_format])
        self.buffer = bytearray()  # uncommitted audio, PCM16 at the current format's rate
        self.item_id: str | None = None  # the turn the VAD is inside, if any
        self.previous_item_id: str | None = None
        self.turns = 0
        self.queue: asyncio.Queue[tuple[TranscriptTurn, dict[str, Any]]] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._gone = False

    @property
    def rate(self) -> int:
        return RATES[self.config.audio_format]

    async def run(self, subprotocol: str | None) -> None:
        await self.ws.accept(subprotocol=subprotocol)
        await self.send(self.names["created"], session=self._session())
        worker = asyncio.create_task(self._transcribe())
        try:
            while not self._gone:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await self._error(
                        ClientEventError(
                            "Binary frames are not supported; send JSON text.", "invalid_json"
                        ),
                        None,
                    )
                    continue
                await self._handle(text)
        except WebSocketDisconnect:
            pass
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self.record.closed = True

    async def refuse(self, subprotocol: str | None, error: dict[str, Any]) -> None:
        """Answer a bad key (or URL) with an `error` event, then close.

        [M] Observed on the real service: a wrong key still upgrades, and the refusal arrives
        as an error event on the socket; the close code after it is not documented (1008 here).
        """
        await self.ws.accept(subprotocol=subprotocol)
        await self.send("error", error={**error, "event_id": None})
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.ws.close(code=1008)
        self.record.closed = True

    def _session(self) -> dict[str, Any]:
        return self.config.render(self.record.dialect, self.session_id, self.expires_at)

    async def send(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "event_id": new_id("event_"), **fields}
        self.record.sent.append(event)
        async with self._send_lock:
            if self._gone:
                return
            try:
                await self.ws.send_text(json.dumps(event))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._gone = True  # the client left; the read loop ends on its own

    async def _error(self, exc: ClientEventError, event_id: str | None) -> None:
        error = {
            "type": "invalid_request_error",
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "event_id": event_id,
        }
        await self.send("error", error=error)

    async def _handle(self, text: str) -> None:
        event_id: str | None = None
        try:
            try:
                event = json.loads(text)
            except (ValueError, RecursionError) as exc:
                # [M] The real error's wording; its type and the open socket are documented.
                raise ClientEventError(f"Invalid JSON: {exc}", "invalid_json") from None
            if not isinstance(event, dict):
                raise ClientEventError("A client event must be a JSON object.", "invalid_json")
            self.record.received.append(event)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event.get("type")
            handlers = {
                self.names["update"]: self._update,
                "input_audio_buffer.append": self._append,
                "input_audio_buffer.commit": self._commit_request,
                "input_audio_buffer.clear": self._clear,
            }
            if kind is None:
                raise ClientEventError(
                    "Missing required parameter: 'type'.", "missing_required_parameter", "type"
                )
            # [M] A beta event on a GA socket (or the reverse) is refused as an unknown type.
            handler = handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise invalid("type", kind, handlers)
            await handler(event)
        except ClientEventError as exc:
            await self._error(exc, event_id)

    async def _update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise ClientEventError(
                "Missing required parameter: 'session'.", "missing_required_parameter", "session"
            )
        candidate = replace(self.config)  # all-or-nothing: a rejected update changes nothing
        if self.record.dialect == "beta":
            candidate.apply_beta(event["session"])
        else:
            candidate.apply_ga(event["session"])
        if candidate.audio_format != self.config.audio_format:
            self.buffer.clear()  # samples at the old rate cannot join the new ones
        self.config = candidate
        self.vad.set_rate(self.rate)
        if candidate.turn_detection is None:
            self.vad.reset_speech()
        await self.send(self.names["updated"], session=self._session())

    async def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ClientEventError(
                "Missing required parameter: 'audio'.", "missing_required_parameter", "audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientEventError(
                "Invalid 'audio': expected base64-encoded audio bytes.", "invalid_value", "audio"
            ) from None
        samples = decode(self.config.audio_format, data)
        settings = self.config.vad()
        if settings is None:
            self._keep(samples)
            return
        self.vad.settings = settings
        done = 0
        for edge in self.vad.feed(samples):
            self._keep(samples[done : edge.offset])
            done = edge.offset
            if edge.speech:
                self._trim_to(settings.prefix_padding_ms)
                self.item_id = new_id("item_")
                start = max(0, edge.at_ms - settings.prefix_padding_ms)
                await self.send(
                    "input_audio_buffer.speech_started", audio_start_ms=start, item_id=self.item_id
                )
            elif self.item_id is not None:
                item_id, self.item_id = self.item_id, None
                await self.send(
                    "input_audio_buffer.speech_stopped", audio_end_ms=edge.at_ms, item_id=item_id
                )
                await self._commit(item_id)
        self._keep(samples[done:])

    def _keep(self, samples: Samples) -> None:
        self.buffer += samples.astype("<i2").tobytes()

    def _trim_to(self, ms: int) -> None:
        """Keep only the prefix padding before speech, as the server VAD does."""
        keep = self.rate * ms // 1000 * 2
        if len(self.buffer) > keep:
            del self.buffer[: len(self.buffer) - keep]

    def _buffer_ms(self) -> float:
        return len(self.buffer) / 2 / self.rate * 1000

    async def _commit_request(self, event: dict[str, Any]) -> None:
        held = self._buffer_ms()
        if held < MIN_COMMIT_MS:
            raise ClientEventError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {held:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        # A manual commit inside a VAD turn ends it without speech_stopped (documented).
        item_id = self.item_id or new_id("item_")
        self.item_id = None
        self.vad.reset_speech()
        await self._commit(item_id)

    async def _clear(self, event: dict[str, Any]) -> None:
        self.buffer.clear()
        self.item_id = None
        self.vad.reset_speech()
        await self.send("input_audio_buffer.cleared")

    async def _commit(self, item_id: str) -> None:
        turn = TranscriptTurn(
            self.turns, item_id, round(self._buffer_ms()), bytes(self.buffer), self.rate
        )
        self.turns += 1
        self.buffer.clear()
        previous, self.previous_item_id = self.previous_item_id, item_id
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.send(self.names["item"], previous_item_id=previous, item=item)
        if self.config.transcription is not None:
            await self.queue.put((turn, dict(self.config.transcription)))

    async def _transcribe(self) -> None:
        """One turn at a time, so a turn's deltas never interleave with the next turn's."""
        while True:
            turn, settings = await self.queue.get()
            text = self.script.transcript_for(turn)
            self.record.transcripts.append(text)
            whisper = settings.get("model") == "whisper-1"
            # [M] whisper-1 is not incremental: its single delta is the whole transcript.
            pieces = ([text] if text else []) if whisper else tokens(text)
            await pause(self.script.first_delta_ms, self.time_scale)
            for index, piece in enumerate(pieces):
                if index:
                    await pause(self.script.per_word_ms, self.time_scale)
                await self.send(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=turn.item_id,
                    content_index=0,
                    delta=piece,
                )
            await self.send(
                "conversation.item.input_audio_transcription.completed",
                item_id=turn.item_id,
                content_index=0,
                transcript=text,
                usage=_usage(turn, len(pieces), whisper),
            )


def _usage(turn: TranscriptTurn, words: int, whisper: bool) -> dict[str, Any]:
    if whisper:
        return {"type": "duration", "seconds": round(turn.audio_ms / 1000, 3)}
    audio_tokens = max(1, turn.audio_ms // 100)  # ~10 audio tokens a second
    return {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": words,
        "total_tokens": audio_tokens + words,
        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
    }


def offered_subprotocols(ws: WebSocket) -> list[str]:
    return [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def dialect_of(ws: WebSocket) -> str:
    beta = "realtime=v1" in ws.headers.get("openai-beta", "").replace(" ", "")
    return "beta" if beta or "openai-beta.realtime-v1" in offered_subprotocols(ws) else "ga"


async def serve_transcription(
    ws: WebSocket,
    api_key: str,
    script: TranscriptionScript,
    time_scale: float,
    sessions: list[RealtimeSession],
) -> None:
    """The WebSocket route: authenticate, then run one transcription socket."""
    refusal = auth_error(ws, api_key)
    if refusal is None and ws.query_params.get("intent") != "transcription":
        refusal = error_body(
            "This fake serves only transcription sessions: connect with ?intent=transcription.",
            param="intent",
        )
    record = RealtimeSession(dialect_of(ws))
    sessions.append(record)
    # Browsers authenticate through subprotocols; the server then picks "realtime".
    subprotocol = "realtime" if "realtime" in offered_subprotocols(ws) else None
    socket = TranscriptionSocket(ws, script, time_scale, record)
    if refusal is None:
        await socket.run(subprotocol)
    else:
        await socket.refuse(subprotocol, refusal["error"])
