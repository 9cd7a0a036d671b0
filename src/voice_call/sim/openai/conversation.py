"""The Realtime conversation WebSocket, `/v1/realtime?model=…`: a speech-to-speech session.

GA protocol only (`session.type: "realtime"`). Beside the transcription socket it reuses (input
formats, energy VAD, the caller's words from a script), a conversation socket answers:

* `response.create` → `response.created`, an assistant audio item (`response.output_item.added`,
  `conversation.item.added`, `response.content_part.added`), after `first_audio_ms` the speech
  in ~100 ms `response.output_audio.delta` chunks (µ-law for `audio/pcmu`, PCM16 24 kHz for
  `audio/pcm`) with `response.output_audio_transcript.delta` word by word, then the `.done`
  events and `response.done`. What it says: `response.instructions` that start with
  `SAY_PREFIX` are said verbatim; else a tool's follow-up once its output arrived; else the next
  scripted reply (`ConversationScript`). A second one while a response is active is refused
  (`conversation_already_has_active_response`), as the real service does.
* server VAD turns: `speech_started` cancels a response being generated when
  `interrupt_response` (`response.done` status `cancelled`, reason `turn_detected`); the commit
  adds the user item, transcribes it when asked, and answers it when `create_response`.
* `response.cancel` (`response_cancel_not_active` when idle), `conversation.item.create` (user,
  system and assistant messages in GA content types; `function_call_output` for a call it made,
  which is answered on the next `response.create`), `conversation.item.truncate` (the item must
  be an assistant audio item and `audio_end_ms` within the audio sent, else an `error` event).
* failure modes: a bad key (error event, close 1008), rate limiting (responses fail), a server
  error after N responses or on demand (error event, close 1011), the session ended by the
  server (close 1000).

Each socket's record (`ConversationSession`) holds every received and sent event, the
truncations and when each response's first audio delta left, for tests and the bench.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.audio.g711 import pcm16_to_alaw, ulaw_to_pcm16
from voice_call.sim.ai_http import speech_pcm16, split
from voice_call.sim.openai.chat import tokens
from voice_call.sim.openai.errors import auth_error
from voice_call.sim.openai.realtime import (
    RealtimeSession,
    TranscriptionScript,
    TranscriptionSocket,
    TranscriptTurn,
    new_id,
    offered_subprotocols,
)
from voice_call.sim.openai.realtime_config import (
    ClientEventError,
    ConversationConfig,
    as_object,
    invalid,
)
from voice_call.sim.voice import synthetic_speech

# The wording the provider (realtime/providers/openai.py) uses to make the model say a text.
SAY_PREFIX = "Say exactly this, word for word, and nothing else: "
CHUNK_MS = 100  # [M] the real service's delta size varies; ~100 ms is typical
BYTES_PER_MS = {"g711_ulaw": 8, "g711_alaw": 8, "pcm16": 48}
SERVER_ERROR = (
    "The server had an error while processing your request. Sorry about that! "
    "You can retry your request, or contact us through our help center if the error persists."
)


@dataclass(frozen=True)
class ToolCall:
    """A scripted function call; after its output comes back (and `response.create`), the
    model says `then` — a text, a function of the output, or by default the output itself.
    `say`: words spoken first in the same response, the call after them (what the real model
    does when it says goodbye and calls end_call); a caller cutting them cancels the call too."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    then: str | Callable[[str], str] | None = None
    say: str | None = None

    def follow_up(self, output: str) -> str:
        if isinstance(self.then, str):
            return self.then
        if self.then is not None:
            return self.then(output)
        with contextlib.suppress(ValueError):
            decoded = json.loads(output)
            if isinstance(decoded, str):
                return decoded
        return output


Reply = str | ToolCall


class ConversationScript:
    """What the fake model says and what the caller is heard to say.

    `replies`: answers in order (the greeting first when the client asks for one), or a function
    of the caller's last transcript; once a list runs out the model says `default`. `caller`:
    the caller's utterances in order (the fake cannot recognise speech), else `caller_source`.
    """

    def __init__(
        self,
        replies: Iterable[Reply] | Callable[[str], Reply] = (),
        *,
        caller: Iterable[str] = (),
        caller_source: Callable[[TranscriptTurn], str] | None = None,
        default: str = "Okay.",
        first_audio_ms: float = 300,
        per_chunk_ms: float = 40,
        first_delta_ms: float = 150,
        per_word_ms: float = 40,
        fail_after_responses: int | None = None,
        rate_limited: bool = False,
    ) -> None:
        self._reply_fn = replies if callable(replies) else None
        self._replies: deque[Reply] = deque() if callable(replies) else deque(replies)
        self.caller = TranscriptionScript(
            caller, source=caller_source, first_delta_ms=first_delta_ms, per_word_ms=per_word_ms
        )
        self.default = default
        self.first_audio_ms = first_audio_ms
        self.per_chunk_ms = per_chunk_ms
        self.fail_after_responses = fail_after_responses
        self.rate_limited = rate_limited

    def reply(self, text: Reply) -> None:
        """Queue the model's next answer."""
        self._replies.append(text)

    def say(self, text: str) -> None:
        """Queue what the caller's next turn is heard as."""
        self.caller.say(text)

    def reply_to(self, transcript: str) -> Reply:
        if self._reply_fn is not None:
            return self._reply_fn(transcript)
        return self._replies.popleft() if self._replies else self.default


@dataclass(frozen=True)
class Truncation:
    item_id: str
    audio_end_ms: int
    heard: str  # the words of the item's transcript that fit in `audio_end_ms`, roughly


@dataclass(frozen=True)
class FirstAudio:
    response_id: str
    at: float  # time.monotonic() when the response's first audio delta was sent


@dataclass
class ConversationSession(RealtimeSession):
    """One conversation socket's record, and the handle to end it from a test."""

    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    truncations: list[Truncation] = field(default_factory=list)
    first_audio: list[FirstAudio] = field(default_factory=list)
    said: list[str] = field(default_factory=list)  # the text of each response spoken in full
    socket: ConversationSocket | None = field(default=None, repr=False)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The client events of type `kind` this socket received, in order."""
        return [e for e in self.received if e.get("type") == kind]

    def server_events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e.get("type") == kind]

    async def fail(self, message: str = SERVER_ERROR) -> None:
        """A server error now: an `error` event, then the socket closes (1011)."""
        if self.socket is not None:
            await self.socket.fail(message)

    async def end(self, reason: str = "session ended") -> None:
        """The service ends the session cleanly (close 1000)."""
        if self.socket is not None:
            await self.socket.close(1000, reason)


@dataclass
class ActiveResponse:
    id: str
    reply: Reply
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    task: asyncio.Task[None] | None = None


class ConversationSocket(TranscriptionSocket):
    """A speech-to-speech session on top of the transcription socket's input side."""

    def __init__(
        self,
        ws: WebSocket,
        script: ConversationScript,
        time_scale: float,
        record: ConversationSession,
    ) -> None:
        # The base transcribes committed turns from its own script; each turn's words are
        # drawn from the conversation script at commit and handed to it, so the reply knows them.
        own = TranscriptionScript(
            first_delta_ms=script.caller.first_delta_ms, per_word_ms=script.caller.per_word_ms
        )
        super().__init__(ws, own, time_scale, record)
        self.conversation = ConversationConfig()
        self.config = self.conversation.input
        self.conversation_script = script
        self.session_record = record
        record.socket = self
        self.response: ActiveResponse | None = None
        self.responses_done = 0
        self.audio_ms: dict[str, int] = {}  # assistant audio item → ms of audio sent
        self.spoken: dict[str, str] = {}  # assistant audio item → its transcript
        self.calls: dict[str, ToolCall] = {}  # call_id → a call awaiting its output
        self.follow_ups: deque[str] = deque()

    def _session(self) -> dict[str, Any]:
        return self.conversation.render(self.session_id, self.expires_at)

    async def send(self, kind: str, **fields: Any) -> None:
        await super().send(kind, **fields)
        # The VAD lives in the base class; the moment it reports speech is the barge-in.
        if kind == "input_audio_buffer.speech_started" and self.conversation.interrupt_response:
            self._cancel("turn_detected")

    async def fail(self, message: str) -> None:
        await self.send(
            "error",
            error={"type": "server_error", "code": "server_error", "message": message,
                   "param": None, "event_id": None},
        )  # fmt: skip
        await self.close(1011, "server error")

    async def close(self, code: int, reason: str) -> None:
        self._gone = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.ws.close(code=code, reason=reason)

    async def run(self, subprotocol: str | None) -> None:
        try:
            await super().run(subprotocol)
        finally:
            if self.response is not None and self.response.task is not None:
                self.response.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.response.task

    async def _handle(self, text: str) -> None:
        event_id: str | None = None
        try:
            try:
                event = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise ClientEventError(f"Invalid JSON: {exc}", "invalid_json") from None
            if not isinstance(event, dict):
                raise ClientEventError("A client event must be a JSON object.", "invalid_json")
            self.record.received.append(event)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event.get("type")
            if kind is None:
                raise ClientEventError(
                    "Missing required parameter: 'type'.", "missing_required_parameter", "type"
                )
            handlers = {
                "session.update": self._update,
                "input_audio_buffer.append": self._append,
                "input_audio_buffer.commit": self._commit_request,
                "input_audio_buffer.clear": self._clear,
                "response.create": self._create,
                "response.cancel": self._cancel_request,
                "conversation.item.create": self._item_create,
                "conversation.item.truncate": self._truncate,
            }
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
        candidate = self.conversation.copy()  # all-or-nothing: a rejected update changes nothing
        candidate.apply(event["session"])
        if candidate.input.audio_format != self.config.audio_format:
            self.buffer.clear()
        self.conversation, self.config = candidate, candidate.input
        self.vad.set_rate(self.rate)
        if candidate.input.turn_detection is None:
            self.vad.reset_speech()
        await self.send("session.updated", session=self._session())

    # --- the caller's turns ---------------------------------------------------------------

    async def _commit(self, item_id: str) -> None:
        turn = TranscriptTurn(
            self.turns, item_id, round(self._buffer_ms()), bytes(self.buffer), self.rate
        )
        words = self.conversation_script.caller.transcript_for(turn)
        if self.config.transcription is not None:
            self.script.say(words)  # what the base's transcriber sends for this turn
        await super()._commit(item_id)
        auto = self.config.turn_detection is not None and self.conversation.create_response
        cut = self.response
        if auto and cut is not None and cut.cancelled.is_set() and cut.task is not None:
            await cut.task  # the answer this turn cut finishes its done events first
        if auto and self.response is None:  # [M] busy (interrupt_response off): no new one
            await self._start(self.conversation_script.reply_to(words))

    # --- responses ------------------------------------------------------------------------

    async def _create(self, event: dict[str, Any]) -> None:
        if self.response is not None:
            raise ClientEventError(
                "Conversation already has an active response in progress: "
                f"{self.response.id}. Wait until the response is finished before creating a "
                "new one.",
                "conversation_already_has_active_response",
            )
        options = as_object(event.get("response") or {}, "response")
        instructions = options.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise ClientEventError(
                "Invalid type for 'response.instructions': expected a string.",
                "invalid_type",
                "response.instructions",
            )
        reply: Reply
        if instructions is not None and instructions.startswith(SAY_PREFIX):
            reply = instructions.removeprefix(SAY_PREFIX)
        elif self.follow_ups:
            reply = self.follow_ups.popleft()
        else:
            reply = self.conversation_script.reply_to("")
        await self._start(reply)

    async def _start(self, reply: Reply) -> None:
        response = ActiveResponse(new_id("resp_"), reply)
        self.response = response
        response.task = asyncio.create_task(self._respond(response))

    def _cancel(self, reason: str) -> None:
        response = self.response
        if response is not None and not response.cancelled.is_set():
            response.reason = reason
            response.cancelled.set()

    async def _cancel_request(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self.response is None or (wanted is not None and wanted != self.response.id):
            raise ClientEventError(
                "Cancellation failed: no active response found", "response_cancel_not_active"
            )
        self._cancel("client_cancelled")

    async def _pause(self, ms: float, response: ActiveResponse) -> bool:
        """Wait `ms` (scaled); True when the response was cancelled meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, ms * self.time_scale / 1000)):
                await response.cancelled.wait()
        return response.cancelled.is_set()

    def _shape(self, response: ActiveResponse, status: str, output: list[Any]) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": response.reason}
        return {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": "conv_" + self.session_id.removeprefix("sess_"),
            "output_modalities": self.conversation.output_modalities,
            "max_output_tokens": self.conversation.max_output_tokens,
            "audio": {"output": {"format": self._session()["audio"]["output"]["format"],
                                 "voice": self.conversation.voice}},
            "usage": None,
        }  # fmt: skip

    async def _respond(self, response: ActiveResponse) -> None:
        await self.send("response.created", response=self._shape(response, "in_progress", []))
        script = self.conversation_script
        if script.rate_limited:
            await self._rate_limited(response)
            return
        reply = response.reply
        if isinstance(reply, ToolCall) and reply.say is not None:
            item, status = await self._speak(response, reply.say)
            output = [item]
            if status == "completed":
                output.append(await self._call(response, reply, output_index=1))
        elif isinstance(reply, ToolCall):
            output = [await self._call(response, reply)]
            status = "completed"
        else:
            item, status = await self._speak(response, reply)
            output = [item]
        self.response = None
        await self.send("response.done", response=self._shape(response, status, output))
        self.responses_done += 1
        limit = script.fail_after_responses
        if limit is not None and self.responses_done >= limit:
            await self.fail(SERVER_ERROR)

    async def _rate_limited(self, response: ActiveResponse) -> None:
        limits = [
            {"name": "requests", "limit": 100, "remaining": 0, "reset_seconds": 20.0},
            {"name": "tokens", "limit": 40000, "remaining": 0, "reset_seconds": 20.0},
        ]
        await self.send("rate_limits.updated", rate_limits=limits)
        shape = self._shape(response, "failed", [])
        # [M] the real shape of a rate-limited response is not documented
        shape["status_details"] = {
            "type": "failed",
            "error": {
                "type": "rate_limit_exceeded",
                "code": "rate_limit_exceeded",
                "message": "Rate limit reached for requests. Please try again in 20s.",
            },
        }
        self.response = None
        await self.send("response.done", response=shape)

    async def _call(
        self, response: ActiveResponse, call: ToolCall, output_index: int = 0
    ) -> dict[str, Any]:
        call_id = new_id("call_")
        arguments = json.dumps(call.arguments)
        item = {
            "id": new_id("item_"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        where = {"response_id": response.id, "item_id": item["id"], "output_index": output_index}
        await self.send("response.output_item.added", response_id=response.id,
                        output_index=output_index, item=item)  # fmt: skip
        await self.send("conversation.item.added", previous_item_id=None, item=item)
        await self.send("response.function_call_arguments.delta", **where, call_id=call_id,
                        delta=arguments)  # fmt: skip
        await self.send("response.function_call_arguments.done", **where, call_id=call_id,
                        name=call.name, arguments=arguments)  # fmt: skip
        done = {**item, "status": "completed", "arguments": arguments}
        await self.send("response.output_item.done", response_id=response.id,
                        output_index=output_index, item=done)  # fmt: skip
        await self.send("conversation.item.done", item=done)
        self.calls[call_id] = call
        return done

    def _audio(self, text: str) -> bytes:
        fmt = self.conversation.output_format
        if fmt == "pcm16":
            return speech_pcm16(text, 24000)
        ulaw = synthetic_speech(text)
        return ulaw if fmt == "g711_ulaw" else pcm16_to_alaw(ulaw_to_pcm16(ulaw))

    async def _speak(self, response: ActiveResponse, text: str) -> tuple[dict[str, Any], str]:
        item_id = new_id("item_")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        where = {"response_id": response.id, "item_id": item_id, "output_index": 0}
        await self.send("response.output_item.added", response_id=response.id, output_index=0,
                        item=item)  # fmt: skip
        await self.send("conversation.item.added", previous_item_id=None, item=item)
        await self.send("response.content_part.added", **where, content_index=0,
                        part={"type": "audio", "transcript": ""})  # fmt: skip
        fmt = self.conversation.output_format
        chunks = split(self._audio(text), CHUNK_MS * BYTES_PER_MS[fmt])
        words = tokens(text)
        said = ""
        self.audio_ms[item_id] = 0
        cancelled = await self._pause(self.conversation_script.first_audio_ms, response)
        for index, chunk in enumerate(chunks):
            if cancelled:
                break
            await self.send("response.output_audio.delta", **where, content_index=0,
                            delta=_b64(chunk))  # fmt: skip
            if index == 0:
                self.session_record.first_audio.append(FirstAudio(response.id, time.monotonic()))
            self.audio_ms[item_id] += len(chunk) // BYTES_PER_MS[fmt]
            due = len(words) * (index + 1) // len(chunks)
            for word in words[len(tokens(said)) : due]:
                said += word
                await self.send("response.output_audio_transcript.delta", **where,
                                content_index=0, delta=word)  # fmt: skip
            if index + 1 < len(chunks):
                cancelled = await self._pause(self.conversation_script.per_chunk_ms, response)
        self.spoken[item_id] = said
        status = "cancelled" if cancelled else "completed"
        if not cancelled:
            self.session_record.said.append(text)
        await self.send("response.output_audio.done", **where, content_index=0)
        await self.send("response.output_audio_transcript.done", **where, content_index=0,
                        transcript=said)  # fmt: skip
        part = {"type": "audio", "transcript": said}
        await self.send("response.content_part.done", **where, content_index=0, part=part)
        done = {**item, "status": "incomplete" if cancelled else "completed",
                "content": [{"type": "output_audio", "transcript": said}]}  # fmt: skip
        await self.send("response.output_item.done", response_id=response.id, output_index=0,
                        item=done)  # fmt: skip
        await self.send("conversation.item.done", item=done)
        return done, status

    # --- the conversation's items ---------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        item = as_object(event.get("item"), "item")
        kind = item.get("type")
        if kind == "function_call_output":
            call_id = item.get("call_id")
            call = self.calls.pop(call_id, None) if isinstance(call_id, str) else None
            if call is None:
                raise ClientEventError(
                    f"Tool call ID '{call_id}' not found in conversation.",
                    "invalid_value",
                    "item.call_id",
                )
            output = item.get("output")
            if not isinstance(output, str):
                raise ClientEventError(
                    "Invalid type for 'item.output': expected a string.",
                    "invalid_type",
                    "item.output",
                )
            self.follow_ups.append(call.follow_up(output))
        elif kind == "message":
            _check_message(item)
        else:
            raise invalid("item.type", kind, ["message", "function_call", "function_call_output"])
        added = {"id": item.get("id") or new_id("item_"), "object": "realtime.item",
                 "status": "completed", **item}  # fmt: skip
        await self.send("conversation.item.added", previous_item_id=event.get("previous_item_id"),
                        item=added)  # fmt: skip
        await self.send("conversation.item.done", item=added)

    async def _truncate(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.audio_ms:
            raise ClientEventError(
                f"Invalid 'item_id': no assistant audio item with id '{item_id}'.",
                "invalid_value",
                "item_id",
            )
        if event.get("content_index") != 0:
            raise invalid("content_index", event.get("content_index"), ["0"])
        end_ms = event.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise ClientEventError(
                "Invalid 'audio_end_ms': expected a non-negative integer.",
                "invalid_value",
                "audio_end_ms",
            )
        sent = self.audio_ms[item_id]
        if end_ms > sent:
            raise ClientEventError(
                f"Audio content of {sent}ms is already shorter than {end_ms}ms",
                "invalid_value",
                "audio_end_ms",
            )
        spoken = tokens(self.spoken.get(item_id, ""))
        heard = "".join(spoken[: round(len(spoken) * end_ms / sent)] if sent else [])
        self.session_record.truncations.append(Truncation(item_id, end_ms, heard.strip()))
        self.audio_ms[item_id] = end_ms
        await self.send(
            "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms
        )


CONTENT_TYPES = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


def _check_message(item: dict[str, Any]) -> None:
    role = item.get("role")
    if role not in CONTENT_TYPES:
        raise invalid("item.role", role, CONTENT_TYPES)
    content = item.get("content")
    if not isinstance(content, list):
        raise ClientEventError(
            "Invalid type for 'item.content': expected an array.", "invalid_type", "item.content"
        )
    for index, part in enumerate(content):
        param = f"item.content[{index}]"
        kind = as_object(part, param).get("type")
        if kind not in CONTENT_TYPES[role]:
            raise invalid(f"{param}.type", kind, CONTENT_TYPES[role])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def serve_conversation(
    ws: WebSocket,
    api_key: str,
    script: ConversationScript,
    time_scale: float,
    sessions: list[ConversationSession],
) -> None:
    """The WebSocket route for a model URL: authenticate, then run one conversation socket."""
    record = ConversationSession("ga", query=dict(ws.query_params), headers=dict(ws.headers))
    sessions.append(record)
    subprotocol = "realtime" if "realtime" in offered_subprotocols(ws) else None
    socket = ConversationSocket(ws, script, time_scale, record)
    refusal = auth_error(ws, api_key)
    if refusal is not None:
        await socket.refuse(subprotocol, refusal["error"])
    else:
        await socket.run(subprotocol)
