"""The text-to-speech WebSocket, `/tts/websocket`: generation requests multiplexed by context.

A request is `{model_id, transcript, voice: {mode: "id", id}, language, context_id,
output_format: {container: "raw", encoding, sample_rate}, continue, flush}`; `{context_id,
cancel: true}` stops a context. Each context runs its inputs in order, contexts run side by
side. A transcript is answered with `chunk` messages (base64 `data`, `flush_id`) after
`first_byte_ms`, one per `per_chunk_ms`; a `flush` with `flush_done` (its `flush_id`, then the
id goes up); `continue: false` ends the context with `done`. Inputs on a context must keep
every field but `transcript`, `continue` and `flush` as the first one set them, as the docs say.

Errors are `{"type": "error", "done": true, "error", "status_code", "context_id"}` and end their
context; the socket stays open. [M] The wording of each error is ours, and so is answering
input on a finished context with an error (the docs do not say what happens).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.audio.g711 import SAMPLE_RATE, pcm16_to_ulaw
from voice_call.sim.ai_http import pause, speech_pcm16, split
from voice_call.sim.voice import synthetic_speech

PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
ENCODINGS = ("pcm_mulaw", "pcm_s16le")  # what this fake renders; the API has more
FIXED = ("model_id", "voice", "language", "output_format")  # same on every input of a context


@dataclass
class CartesiaSocketLog:
    """One socket's traffic, for tests to assert on."""

    headers: dict[str, str]
    query: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    refused: int | None = None  # the HTTP status a refused handshake got
    closed: bool = False


@dataclass
class Script:
    """The fake's behaviour, read per message so tests may change it between sentences."""

    first_byte_ms: float = 90
    per_chunk_ms: float = 20
    chunk_ms: int = 40
    error: str | None = None  # every generation request is answered with this error
    models: tuple[str, ...] | None = None  # None: any id starting with "sonic"


class RequestError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Context:
    first: dict[str, Any]  # the first input: its fixed fields bind the rest
    inputs: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    flush_id: int = 1
    finished: bool = False  # continue: false was sent, or it failed / was cancelled


class TtsSocket:
    def __init__(
        self, ws: WebSocket, script: Script, time_scale: Callable[[], float], record: Any
    ) -> None:
        self.ws = ws
        self.script = script
        self.scale = time_scale
        self.record: CartesiaSocketLog = record
        self.contexts: dict[str, Context] = {}
        self._lock = asyncio.Lock()
        self._gone = False

    async def run(self) -> None:
        await self.ws.accept()
        try:
            while not self._gone:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(message.get("text"))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for context in self.contexts.values():
                if context.task is not None:
                    context.task.cancel()
            self.record.closed = True

    async def send(self, message: dict[str, Any]) -> None:
        self.record.sent.append(message)
        async with self._lock:
            if self._gone:
                return
            try:
                await self.ws.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._gone = True

    async def close(self, code: int) -> None:
        async with self._lock:
            self._gone = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code)

    async def error(self, context_id: str | None, message: str, status: int = 400) -> None:
        await self.send(
            {
                "type": "error",
                "done": True,
                "error": message,
                "status_code": status,
                "context_id": context_id,
            }
        )

    async def _handle(self, text: str | None) -> None:
        try:
            request = json.loads(text) if text is not None else None
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            await self.error(None, "Invalid request: send a JSON object as a text message.")
            return
        self.record.received.append(request)
        context_id = request.get("context_id")
        if context_id is not None and not isinstance(context_id, str):
            await self.error(None, "Invalid request: context_id must be a string.")
            return
        if request.get("cancel") is True:
            self._cancel(context_id)
            return
        context_id = context_id or uuid.uuid4().hex
        try:
            context = self._context(context_id, request)
        except RequestError as exc:
            self._end(context_id)
            await self.error(context_id, str(exc), exc.status)
            return
        if request.get("continue") is not True:
            context.finished = True
        context.inputs.put_nowait(request)

    def _context(self, context_id: str, request: dict[str, Any]) -> Context:
        context = self.contexts.get(context_id)
        if context is not None and context.finished:
            raise RequestError(f"Context {context_id} has already finished; use a new context_id.")
        if self.script.error is not None:
            self._end(context_id)
            raise RequestError(self.script.error, 500)
        check_request(request, self.script)
        if context is None:
            context = self.contexts[context_id] = Context(request)
            context.task = asyncio.create_task(self._generate(context_id, context))
            return context
        for name in FIXED:
            if request.get(name) != context.first.get(name):
                raise RequestError(
                    f"Inputs on a context must keep {name} the same as its first input."
                )
        return context

    def _cancel(self, context_id: str | None) -> None:
        if context_id is not None:
            self._end(context_id)

    def _end(self, context_id: str) -> None:
        context = self.contexts.get(context_id)
        if context is not None:
            context.finished = True
            if context.task is not None:
                context.task.cancel()

    async def _generate(self, context_id: str, context: Context) -> None:
        """The context's inputs in order: audio per transcript, then flush / done."""
        while True:
            request = await context.inputs.get()
            transcript = request.get("transcript", "")
            if transcript:
                await self._speak(context_id, context, transcript, request["output_format"])
            if request.get("flush") is True:
                await self.send(
                    {
                        "type": "flush_done",
                        "done": False,
                        "flush_done": True,
                        "flush_id": context.flush_id,
                        "status_code": 206,
                        "context_id": context_id,
                    }
                )
                context.flush_id += 1
            if request.get("continue") is not True:
                await self.send(
                    {"type": "done", "done": True, "status_code": 206, "context_id": context_id}
                )
                return

    async def _speak(
        self, context_id: str, context: Context, text: str, output: dict[str, Any]
    ) -> None:
        encoding, rate = output["encoding"], output["sample_rate"]
        if encoding == "pcm_mulaw":
            audio = synthetic_speech(text) if rate == SAMPLE_RATE else _ulaw(text, rate)
            per_ms = rate // 1000
        else:
            audio, per_ms = speech_pcm16(text, rate), rate // 1000 * 2
        await pause(self.script.first_byte_ms, self.scale())
        for index, chunk in enumerate(split(audio, self.script.chunk_ms * per_ms)):
            if index:
                await pause(self.script.per_chunk_ms, self.scale())
            await self.send(
                {
                    "type": "chunk",
                    "data": base64.b64encode(chunk).decode(),
                    "done": False,
                    "status_code": 206,
                    "step_time": self.script.per_chunk_ms,
                    "flush_id": context.flush_id,
                    "context_id": context_id,
                }
            )


def _ulaw(text: str, rate: int) -> bytes:
    return pcm16_to_ulaw(np.frombuffer(speech_pcm16(text, rate), dtype="<i2"))


def check_request(request: dict[str, Any], script: Script) -> None:
    """A generation request's fields, as the API validates them; RequestError says which."""
    model = request.get("model_id")
    if not isinstance(model, str) or not (
        model in script.models if script.models is not None else model.startswith("sonic")
    ):
        raise RequestError(
            "Invalid model: The model is not valid, make sure it is a valid model ID."
        )
    if not isinstance(request.get("transcript", ""), str):
        raise RequestError("Invalid request: transcript must be a string.")
    voice = request.get("voice")
    if not (
        isinstance(voice, dict) and voice.get("mode") == "id" and isinstance(voice.get("id"), str)
    ):
        raise RequestError('Invalid request: voice must be {"mode": "id", "id": "<voice id>"}.')
    output = request.get("output_format")
    if not isinstance(output, dict) or output.get("container") != "raw":
        raise RequestError(
            'Invalid request: output_format.container must be "raw" on the WebSocket.'
        )
    encoding, rate = output.get("encoding"), output.get("sample_rate")
    if encoding not in ENCODINGS:
        raise RequestError(f"Invalid request: output_format.encoding must be one of {ENCODINGS}.")
    if rate not in PCM_RATES:
        raise RequestError(
            f"Invalid request: output_format.sample_rate must be one of {PCM_RATES}."
        )
    for flag in ("continue", "flush"):
        if flag in request and not isinstance(request[flag], bool):
            raise RequestError(f"Invalid request: {flag} must be a boolean.")
