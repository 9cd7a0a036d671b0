"""One Gemini Live `BidiGenerateContent` session of the fake: the wire protocol, turn by turn.

Client messages (exactly one of `setup`, `clientContent`, `realtimeInput`, `toolResponse` per
JSON object; `setup` first): the setup is checked field by field and answered `setupComplete`;
`realtimeInput.audio` (`audio/pcm;rate=N`) feeds an energy VAD; when the caller's speech ends the
scripted words go out as `serverContent.inputTranscription`, then the model's turn: after
`first_audio_ms` (× time_scale) real synthetic speech at 24 kHz in `modelTurn.parts[].inlineData`
chunks with `outputTranscription` word by word, `generationComplete`, `turnComplete`. Caller
speech during a turn sends `interrupted` (then `turnComplete`, as the docs say an interrupted
turn ends) and stops it. A scripted function call sends `toolCall` and waits for the matching
`toolResponse` (cancelled by `toolCallCancellation` when the caller interrupts).

Errors close the socket the way the service does: a bad message or setup 1007 with a reason, a
bad key or unknown model 1008, a server failure 1011. [M] marks behaviour taken from reports of
the real service rather than its documentation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.sim.ai_http import pause, speech_pcm16, split
from voice_call.sim.openai.vad import EnergyVad, VadSettings

OUT_RATE = 24000
OUT_MIME = f"audio/pcm;rate={OUT_RATE}"
VERBATIM = "Say exactly this, word for word, and nothing else: "

CLOSE_NORMAL = 1000
CLOSE_INVALID = 1007  # invalid frame payload data: a message or setup the API refuses
CLOSE_POLICY = 1008  # policy violation: bad key, unknown model
CLOSE_INTERNAL = 1011  # internal error: server failure, quota
# [M] The reasons real sessions were seen closing with.
BAD_KEY = "API key not valid. Please pass a valid API key."
INVALID_ARGUMENT = "Request contains an invalid argument."
INTERNAL = "Internal error encountered."
QUOTA = "You exceeded your current quota, please check your plan and billing details."

CLIENT_MESSAGES = ("setup", "clientContent", "realtimeInput", "toolResponse")
SETUP_FIELDS = {
    "model",
    "generationConfig",
    "systemInstruction",
    "tools",
    "realtimeInputConfig",
    "sessionResumption",
    "contextWindowCompression",
    "inputAudioTranscription",
    "outputAudioTranscription",
    "proactivity",
    "explicitVadSignal",
}
REALTIME_INPUT_FIELDS = {
    "audio",
    "video",
    "text",
    "audioStreamEnd",
    "activityStart",
    "activityEnd",
    "mediaChunks",
}
SENSITIVITY = {
    "startOfSpeechSensitivity": ("START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"),
    "endOfSpeechSensitivity": ("END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"),
}
_MIME = re.compile(r"^audio/pcm(?:;\s*rate=(\d+))?$")


class CloseSession(Exception):
    """End the socket with this close code and reason (the service's way of refusing)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:123]  # a close frame's reason holds at most 123 bytes


@dataclass(frozen=True)
class FunctionCall:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """One model turn: optionally a function call first (answered before it goes on), then
    `text` spoken — as synthetic speech, or `audio` (24 kHz PCM16 LE) when given."""

    text: str = ""
    call: FunctionCall | None = None
    audio: bytes | None = None


class LiveScript:
    """What the fake hears and says: the caller's lines (the fake cannot recognise speech) and
    the model's replies, in order; when a queue runs dry, `default_reply` (or "")."""

    def __init__(
        self,
        caller: Iterable[str] = (),
        replies: Iterable[Reply | str] = (),
        *,
        default_reply: str | Callable[[str], Reply | str] = "Okay.",
        first_audio_ms: float = 300,
        chunk_ms: int = 40,
    ) -> None:
        self._caller: deque[str] = deque(caller)
        self._replies: deque[Reply | str] = deque(replies)
        self.default_reply = default_reply
        self.first_audio_ms = first_audio_ms
        self.chunk_ms = chunk_ms

    def hear(self, text: str) -> None:
        """Queue what the caller's next utterance is transcribed as."""
        self._caller.append(text)

    def reply(self, reply: Reply | str) -> None:
        """Queue the model's next turn."""
        self._replies.append(reply)

    def next_caller_line(self) -> str:
        return self._caller.popleft() if self._caller else ""

    def next_reply(self, heard: str) -> Reply:
        if self._replies:
            chosen = self._replies.popleft()
        elif callable(self.default_reply):
            chosen = self.default_reply(heard)
        else:
            chosen = self.default_reply
        return Reply(chosen) if isinstance(chosen, str) else chosen


@dataclass
class TurnTiming:
    """When a model turn's trigger happened and its first audio left (time.monotonic)."""

    text: str
    triggered_at: float  # caller speech ended (VAD) or the client's turn arrived
    first_audio_at: float | None = None
    interrupted: bool = False
    finished: bool = False


@dataclass
class LiveSession:
    """One socket's traffic, for tests and the bench to assert on."""

    key: str | None
    setup: dict[str, Any] | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)  # PCM16 LE as received
    audio_rates: set[int] = field(default_factory=set)
    turns: list[TurnTiming] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text)
    resumed_from: str | None = None
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""

    def sent_kinds(self) -> list[str]:
        return [next(iter(m)) for m in self.sent if m]


@dataclass
class LiveOptions:
    """Settings the fake server hands each session."""

    api_key: str
    script: LiveScript
    time_scale: float
    models: frozenset[str] | None  # None: any "models/…" name
    binary_frames: bool
    fail_after_responses: int | None
    handles: dict[str, list[tuple[str, str]]]


class LiveSocket:
    """One accepted connection: setup, then messages in, server content out."""

    def __init__(self, ws: WebSocket, options: LiveOptions, record: LiveSession) -> None:
        self.ws = ws
        self.options = options
        self.script = options.script
        self.record = record
        self.vad = EnergyVad(VadSettings(), 16000)
        self.turn: asyncio.Task[None] | None = None
        self.aside: asyncio.Task[None] | None = None  # a line said while a call waits
        self.pending_calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.responses = 0
        self.resumable = False
        self._send_lock = asyncio.Lock()
        self._gone = False
        self._closing: asyncio.Task[None] | None = None

    # ---- the connection ----

    async def run(self) -> None:
        await self.ws.accept()
        try:
            if self.record.key != self.options.api_key:
                raise CloseSession(CLOSE_POLICY, BAD_KEY)
            await self._setup(await self._receive())
            while not self._gone:
                await self._dispatch(await self._receive())
        except CloseSession as exc:
            await self.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            await self._stop_turn()
            self._gone = True
            self.record.closed = True

    async def _receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        raw = message.get("text")
        if raw is None:
            raw = (message.get("bytes") or b"").decode("utf-8", "replace")
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            raise CloseSession(CLOSE_INVALID, "Invalid JSON payload received.") from None
        if not isinstance(event, dict):
            raise CloseSession(CLOSE_INVALID, "Invalid JSON payload received.")
        self.record.received.append(event)
        unknown = sorted(set(event) - set(CLIENT_MESSAGES))
        if unknown:
            raise CloseSession(CLOSE_INVALID, _unknown_name(unknown[0], ""))
        if len(event) != 1:
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        return event

    async def send(self, message: dict[str, Any]) -> None:
        self.record.sent.append(message)
        async with self._send_lock:
            if self._gone:
                return
            data = json.dumps(message)
            try:
                if self.options.binary_frames:
                    await self.ws.send_bytes(data.encode())
                else:
                    await self.ws.send_text(data)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._gone = True

    async def close(self, code: int, reason: str) -> None:
        """Close with the service's code and reason (idempotent)."""
        async with self._send_lock:
            if self._gone:
                return
            self._gone = True
            self.record.close_code, self.record.close_reason = code, reason[:123]
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code, reason=reason[:123])

    # ---- setup ----

    async def _setup(self, event: dict[str, Any]) -> None:
        setup = event.get("setup")
        if not isinstance(setup, dict):
            raise CloseSession(CLOSE_INVALID, "The first message must be a setup message.")
        unknown = sorted(set(setup) - SETUP_FIELDS)
        if unknown:
            raise CloseSession(CLOSE_INVALID, _unknown_name(unknown[0], "setup"))
        self._check_model(setup.get("model"))
        self._check_activity_detection(setup.get("realtimeInputConfig"))
        modalities = (setup.get("generationConfig") or {}).get("responseModalities", ["AUDIO"])
        if modalities not in (["AUDIO"], ["TEXT"]):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        self.record.setup = setup
        resumption = setup.get("sessionResumption")
        if isinstance(resumption, dict):
            self.resumable = True
            handle = resumption.get("handle")
            if handle:
                if handle not in self.options.handles:
                    raise CloseSession(CLOSE_INVALID, "Session resumption handle is invalid.")
                self.record.resumed_from = handle
                self.record.history.extend(self.options.handles[handle])
        await self.send({"setupComplete": {}})

    def _check_model(self, model: Any) -> None:
        if not isinstance(model, str) or not model.startswith("models/"):
            raise CloseSession(CLOSE_INVALID, "model: must be of the form models/{model}.")
        models = self.options.models
        if models is not None and model.removeprefix("models/") not in models:
            raise CloseSession(
                CLOSE_POLICY,
                f"{model} is not found for API version v1beta, or is not supported for "
                "bidiGenerateContent.",
            )

    def _check_activity_detection(self, config: Any) -> None:
        detection = (config or {}).get("automaticActivityDetection") or {}
        for name, allowed in SENSITIVITY.items():
            value = detection.get(name)
            if value is not None and value not in allowed:
                raise CloseSession(
                    CLOSE_INVALID,
                    f"Invalid value at 'setup.realtime_input_config.automatic_activity_detection"
                    f'.{_snake(name)}\', "{value}"',
                )
        settings = VadSettings()
        if isinstance(detection.get("silenceDurationMs"), int):
            settings.silence_duration_ms = detection["silenceDurationMs"]
        if isinstance(detection.get("prefixPaddingMs"), int):
            settings.prefix_padding_ms = detection["prefixPaddingMs"]
        self.vad.settings = settings

    # ---- client messages ----

    async def _dispatch(self, event: dict[str, Any]) -> None:
        if "setup" in event:
            raise CloseSession(CLOSE_INVALID, "setup must be the first and only setup message.")
        if "realtimeInput" in event:
            await self._realtime_input(event["realtimeInput"])
        elif "clientContent" in event:
            await self._client_content(event["clientContent"])
        else:
            self._tool_response(event["toolResponse"])

    async def _realtime_input(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        unknown = sorted(set(body) - REALTIME_INPUT_FIELDS)
        if unknown:
            raise CloseSession(CLOSE_INVALID, _unknown_name(unknown[0], "realtime_input"))
        audio = body.get("audio")
        if audio is None:
            return
        if not isinstance(audio, dict):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        match = _MIME.match(str(audio.get("mimeType", "")))
        if match is None:
            raise CloseSession(
                CLOSE_INVALID, f"Unsupported audio mime type: {audio.get('mimeType')!r}."
            )
        rate = int(match.group(1) or 16000)
        try:
            data = base64.b64decode(str(audio.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT) from None
        self.record.audio_in += data
        self.record.audio_rates.add(rate)
        self.vad.set_rate(rate)
        usable = len(data) - len(data) % 2
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        for edge in self.vad.feed(samples):
            if edge.speech:
                await self._interrupt()
            else:
                await self._caller_finished()

    async def _caller_finished(self) -> None:
        heard = self.script.next_caller_line()
        words = heard.split()
        for index, word in enumerate(words):
            text = word if index == 0 else " " + word
            await self.send({"serverContent": {"inputTranscription": {"text": text}}})
        if heard:
            self.record.history.append(("user", heard))
        self._start_turn(self.script.next_reply(heard))

    async def _client_content(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        turns = body.get("turns", [])
        if not isinstance(turns, list):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        last_user = ""
        for turn in turns:
            role, text = _turn_text(turn)
            self.record.history.append((role, text))
            if role == "user":
                last_user = text
        if body.get("turnComplete") is not True:
            return
        if last_user.startswith(VERBATIM):
            reply = Reply(last_user.removeprefix(VERBATIM))
        else:
            reply = self.script.next_reply(last_user)
        if self.pending_calls and (self.aside is None or self.aside.done()):
            # [M] Said while a blocking function call waits (a filler line): spoken at once,
            # and the call stays open; its answer's speech follows this.
            timing = TurnTiming(reply.text, time.monotonic())
            self.record.turns.append(timing)
            self.aside = asyncio.create_task(self._speak(reply, timing))
            return
        await self._interrupt()  # a client turn interrupts the model, as speech does
        self._start_turn(reply)

    def _tool_response(self, body: Any) -> None:
        responses = body.get("functionResponses") if isinstance(body, dict) else None
        if not isinstance(responses, list):
            raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
        for response in responses:
            if not isinstance(response, dict) or not isinstance(response.get("response"), dict):
                raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
            waiting = self.pending_calls.pop(str(response.get("id")), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(response["response"])

    # ---- model turns ----

    def _start_turn(self, reply: Reply) -> None:
        timing = TurnTiming(reply.text, time.monotonic())
        self.record.turns.append(timing)
        self.turn = asyncio.create_task(self._speak(reply, timing))

    async def _interrupt(self) -> None:
        """Caller speech (or a client turn) while the model has a turn: stop it."""
        if self.turn is None or self.turn.done():
            return
        for timing in self.record.turns:
            timing.interrupted = timing.interrupted or not timing.finished
        await self._stop_turn()
        cancelled = list(self.pending_calls)
        self.pending_calls.clear()
        if cancelled:
            await self.send({"toolCallCancellation": {"ids": cancelled}})
        await self.send({"serverContent": {"interrupted": True}})
        await self.send({"serverContent": {"turnComplete": True}})

    async def _stop_turn(self) -> None:
        for task in (self.aside, self.turn):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.turn = self.aside = None

    async def _speak(self, reply: Reply, timing: TurnTiming) -> None:
        scale = self.options.time_scale
        await pause(self.script.first_audio_ms, scale)
        if reply.call is not None:
            await self._call(reply.call)
            if self.aside is not None:
                await self.aside
            await pause(self.script.first_audio_ms, scale)
        audio = reply.audio if reply.audio is not None else speech_pcm16(reply.text, OUT_RATE)
        if not reply.text and reply.audio is None:
            audio = b""
        chunks = split(audio, OUT_RATE * 2 * self.script.chunk_ms // 1000) if audio else []
        words = reply.text.split()
        said: list[str] = []
        for index, chunk in enumerate(chunks):
            if index:
                await pause(self.script.chunk_ms, scale)
            if timing.first_audio_at is None:
                timing.first_audio_at = time.monotonic()
            data = base64.b64encode(chunk).decode()
            part = {"inlineData": {"mimeType": OUT_MIME, "data": data}}
            await self.send({"serverContent": {"modelTurn": {"parts": [part]}}})
            due = len(words) * (index + 1) // len(chunks)
            while len(said) < due:
                text = words[len(said)] if not said else " " + words[len(said)]
                said.append(words[len(said)])
                await self.send({"serverContent": {"outputTranscription": {"text": text}}})
        self.record.history.append(("model", reply.text))
        timing.finished = True
        await self.send({"serverContent": {"generationComplete": True}})
        await self.send({"serverContent": {"turnComplete": True}})
        self.responses += 1
        if self.resumable:
            await self._resumption_update()
        limit = self.options.fail_after_responses
        if limit is not None and self.responses >= limit:
            self._closing = asyncio.create_task(self.close(CLOSE_INTERNAL, INTERNAL))

    async def _call(self, call: FunctionCall) -> None:
        call_id = "function-call-" + secrets.token_hex(8)
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending_calls[call_id] = waiting
        message = {"id": call_id, "name": call.name, "args": call.args}
        await self.send({"toolCall": {"functionCalls": [message]}})
        await waiting

    async def _resumption_update(self) -> None:
        handle = "handle-" + secrets.token_hex(8)
        self.options.handles[handle] = list(self.record.history)
        update = {"newHandle": handle, "resumable": True}
        await self.send({"sessionResumptionUpdate": update})

    async def go_away(self, time_left_s: float) -> None:
        """Announce the end of the connection, then end it when the time is up. [M] The code
        of that final close is not documented; 1000 here."""
        await self.send({"goAway": {"timeLeft": f"{time_left_s:g}s"}})
        await asyncio.sleep(time_left_s)
        await self.close(CLOSE_NORMAL, "The session reached its time limit.")


def _turn_text(turn: Any) -> tuple[str, str]:
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "model"):
        raise CloseSession(CLOSE_INVALID, "Please use a valid role: user, model.")
    parts = turn.get("parts")
    if not isinstance(parts, list) or not parts:
        raise CloseSession(CLOSE_INVALID, "* contents.parts: must not be empty.")
    texts = [p.get("text") for p in parts if isinstance(p, dict)]
    if len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
        raise CloseSession(CLOSE_INVALID, INVALID_ARGUMENT)
    return str(turn["role"]), "".join(str(t) for t in texts)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unknown_name(name: str, where: str) -> str:
    # Google's JSON parser: 'Unknown name "x" at \'setup\': Cannot find field.'
    at = f" at '{where}'" if where else ""
    return f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
