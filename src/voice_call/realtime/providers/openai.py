"""OpenAI Realtime (speech-to-speech) over a WebSocket: `wss://api.openai.com/v1/realtime?model=…`.

GA protocol (`session.type: "realtime"`). Audio is `audio/pcmu` both ways, so the carrier's µ-law
goes in and the model's µ-law comes out untouched: no decoding, no resampling. The service runs
the turn-taking (server or semantic VAD with `create_response` and `interrupt_response` on): it
answers when the caller stops and cancels its own answer when the caller starts talking.

Client events: `session.update`, `input_audio_buffer.append`, `response.create` (with
`response.instructions` for `say`), `response.cancel`, `conversation.item.create` (the history
on reconnect; `function_call_output`), `conversation.item.truncate`. Only one response may be
active at a time, so a `response.create` asked for while one runs waits for its `response.done`;
one refused because the VAD started a response at the same moment is asked again after it.

`speech_ended_at`: `input_audio_buffer.speech_stopped` carries `audio_end_ms` on the timeline of
the audio sent on this socket, including the `silence_duration_ms` the server VAD waited for; the
audio sent since the last word, in ms, says how long ago the caller stopped. (semantic_vad: no
fixed wait is subtracted, so the figure is the service's own end of turn.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voice_call.config.realtime import OpenAIRealtimeOptions
from voice_call.realtime.model import ModelListener, RealtimeError, SessionSetup

log = logging.getLogger("voice_call.realtime")

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
VERBATIM = "Say exactly this, word for word, and nothing else: "
MAX_QUEUED = 200  # 4 s of 20 ms frames; more means the socket stalled: new audio is dropped
# Harmless: our cancel raced the service's own (interrupt_response) or the response's end.
IGNORED_ERRORS = {"response_cancel_not_active"}
BUSY = "conversation_already_has_active_response"
FAILED = ("failed", "incomplete")


@dataclass(frozen=True)
class OpenAIRealtimeSettings:
    api_key: str
    url: str = DEFAULT_URL
    model: str = "gpt-realtime"
    voice: str = "marin"
    vad: Literal["server_vad", "semantic_vad"] = "server_vad"
    vad_threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    transcription_model: str = "gpt-4o-mini-transcribe"
    max_output_tokens: int | None = None
    connect_timeout_s: float = 10.0


# the `realtime.providers.openai` fields that are settings of the same name
OPTION_NAMES = (
    "url", "model", "voice", "vad", "vad_threshold", "prefix_padding_ms", "silence_duration_ms",
    "eagerness", "transcription_model", "max_output_tokens",
)  # fmt: skip
SERVER_VAD_ONLY = {
    "vad_threshold": "vadThreshold",
    "prefix_padding_ms": "prefixPaddingMs",
    "silence_duration_ms": "silenceDurationMs",
}


def settings_from(
    options: OpenAIRealtimeOptions | None, api_key: str | None
) -> OpenAIRealtimeSettings:
    """The `realtime.providers.openai` block over the defaults; `api_key` is the fallback
    (`openaiApiKey` / OPENAI_API_KEY)."""
    key = (options.api_key if options is not None else None) or api_key
    if not key:
        raise RealtimeError(
            "realtime.providers.openai.apiKey: required for the openai realtime provider — "
            "set it, or openaiApiKey / OPENAI_API_KEY"
        )
    fields: dict[str, Any] = {}
    if options is not None:
        fields = {
            name: getattr(options, name)
            for name in OPTION_NAMES
            if getattr(options, name) is not None
        }
    settings = OpenAIRealtimeSettings(api_key=key, **fields)
    _check_vad(settings, fields)
    return settings


def _check_vad(settings: OpenAIRealtimeSettings, given: dict[str, Any]) -> None:
    """A setting the chosen VAD does not read is an error, never silently ignored."""
    if settings.vad == "semantic_vad":
        for name, key in SERVER_VAD_ONLY.items():
            if name in given:
                raise RealtimeError(
                    f"realtime.providers.openai.{key}: applies to vad server_vad only — "
                    "remove it, or set vad: server_vad"
                )
    elif "eagerness" in given:
        raise RealtimeError(
            "realtime.providers.openai.eagerness: applies to vad semantic_vad only — "
            "remove it, or set vad: semantic_vad"
        )


def session_update(settings: OpenAIRealtimeSettings, setup: SessionSetup) -> dict[str, Any]:
    """The `session.update` that configures a call's session."""
    detection: dict[str, Any] = {"type": settings.vad}
    if settings.vad == "server_vad":
        detection |= {
            "threshold": settings.vad_threshold,
            "prefix_padding_ms": settings.prefix_padding_ms,
            "silence_duration_ms": settings.silence_duration_ms,
        }
    else:
        detection["eagerness"] = settings.eagerness
    detection |= {"create_response": True, "interrupt_response": True}
    transcription: dict[str, Any] = {"model": settings.transcription_model}
    if setup.language:
        transcription["language"] = setup.language.split("-")[0].lower()  # ISO-639-1
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": setup.instructions,
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": transcription,
                "turn_detection": detection,
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": setup.voice or settings.voice},
        },
    }
    if setup.tools:
        session["tools"] = [
            {"type": "function", "name": t.name, "description": t.description,
             "parameters": t.parameters}
            for t in setup.tools
        ]  # fmt: skip
        session["tool_choice"] = "auto"
    if settings.max_output_tokens is not None:
        session["max_output_tokens"] = settings.max_output_tokens
    return {"type": "session.update", "session": session}


def history_item(speaker: str, text: str) -> dict[str, Any]:
    """One line of the conversation so far, as a message item (GA content types)."""
    role, part = ("assistant", "output_text") if speaker == "bot" else ("user", "input_text")
    item = {"type": "message", "role": role, "content": [{"type": part, "text": text}]}
    return {"type": "conversation.item.create", "item": item}


class OpenAIRealtime:
    """One call's session with OpenAI Realtime (`RealtimeModel`)."""

    name = "openai"

    def __init__(self, settings: OpenAIRealtimeSettings) -> None:
        self.settings = settings
        self.listener: ModelListener | None = None
        self.speech_ended_at: float | None = None
        self.dropped_frames = 0
        self._ws: ClientConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: deque[tuple[bool, str]] = deque()  # (is audio, message)
        self._wake = asyncio.Event()
        self._closed = False
        self._sent_ms = 0.0  # audio sent on this socket: the service's audio_*_ms timeline
        self._responding = False  # a response is being generated (ours or the VAD's)
        self._response_id: str | None = None
        self._pending: deque[str | None] = deque()  # responses to ask for: instructions or None
        self._asked: dict[str, str | None] = {}  # event_id of a response.create → instructions
        self._muted: set[str] = set()  # responses the caller cut: their late audio is stale
        self._audio_item: str | None = None  # the assistant item whose audio was handed over
        self._item_ms: dict[str, float] = {}
        self._partials: dict[str, str] = {}
        self._untranscribed: set[str] = set()  # committed caller turns, transcript to come
        self._last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self, setup: SessionSetup) -> None:
        """Open and configure the session; concurrent callers share one attempt."""
        if self._ws is not None:
            return
        if self._closed:
            raise RealtimeError("the OpenAI Realtime session is closed")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._start(setup))
        await asyncio.shield(self._connecting)

    async def _start(self, setup: SessionSetup) -> None:
        ws = await self._open(setup)
        self._reset()
        self._ws = ws
        self._wake.set()
        for speaker, text in setup.history:
            self._send(history_item(speaker, text))
        self._reader = asyncio.create_task(self._read(ws))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        self._flush()

    def _reset(self) -> None:
        """A new socket: a new audio timeline and no response in flight."""
        self._sent_ms = 0.0
        self._responding, self._response_id = False, None
        self._muted.clear()
        self._asked.clear()
        self._audio_item = None
        self._item_ms.clear()
        self._partials.clear()
        self._untranscribed.clear()
        self._queue.clear()

    async def _open(self, setup: SessionSetup) -> ClientConnection:
        joiner = "&" if "?" in self.settings.url else "?"
        url = f"{self.settings.url}{joiner}model={quote(self.settings.model)}"
        headers = {"Authorization": f"Bearer {self.settings.api_key}"}
        timeout = self.settings.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                ws = await connect(
                    url,
                    additional_headers=headers,
                    proxy=None,
                    compression=None,
                    max_size=1 << 24,
                    open_timeout=None,
                )
                try:
                    await self._configure(ws, setup)
                except BaseException:
                    await ws.close()
                    raise
                return ws
        except TimeoutError:
            raise RealtimeError(f"OpenAI Realtime did not answer within {timeout:g} s") from None
        except ConnectionClosed as exc:
            why = (exc.rcvd.reason if exc.rcvd else "") or "no reason given"
            raise RealtimeError(f"OpenAI Realtime closed the session: {why}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise RealtimeError(f"OpenAI Realtime refused the connection: HTTP {status}") from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise RealtimeError(
                f"cannot reach OpenAI Realtime: {type(exc).__name__}: {exc}"
            ) from None

    async def _configure(self, ws: ClientConnection, setup: SessionSetup) -> None:
        """The service speaks first (`session.created`, or an `error` for a bad key before it
        closes); our settings are in force once `session.updated` confirms them."""
        sent = False
        while True:
            event = _event(await ws.recv())
            kind = event.get("type")
            if kind == "error":
                raise RealtimeError(f"OpenAI Realtime refused the session: {_message(event)}")
            if kind == "session.updated":
                return
            if not sent:
                await ws.send(json.dumps(session_update(self.settings, setup)))
                sent = True

    # --- sending ------------------------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> str:
        event_id = "evt_" + secrets.token_hex(8)
        self._queue.append((False, json.dumps({**event, "event_id": event_id})))
        self._wake.set()
        return event_id

    def send_audio(self, ulaw: bytes) -> None:
        if self._ws is None or not ulaw:
            return
        if len(self._queue) >= MAX_QUEUED:
            self.dropped_frames += 1
            return
        self._sent_ms += len(ulaw) / 8  # µ-law 8 kHz: 8 bytes a millisecond
        audio = base64.b64encode(ulaw).decode()
        self._queue.append((True, f'{{"type":"input_audio_buffer.append","audio":"{audio}"}}'))
        self._wake.set()

    async def _write(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            ws = self._ws
            if ws is None:  # between sockets: control events wait for the next one
                self._wake.clear()
                await self._wake.wait()
                continue
            _, message = self._queue.popleft()
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)  # a closed socket is the reader's to report

    # --- the commands -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self._ask(VERBATIM + text)

    def respond(self) -> None:
        """Ask for a response: now, or once the active one is done (asked once, however often
        this is called meanwhile)."""
        self._ask(None)

    def _ask(self, instructions: str | None) -> None:
        if instructions is None and None in self._pending:
            return  # several tool results of one response (or respond calls): one response
        self._pending.append(instructions)
        self._flush()

    def _flush(self) -> None:
        """Send the next waiting response.create once no response is active."""
        if self._responding or not self._pending or self._ws is None:
            return
        instructions = self._pending.popleft()
        event: dict[str, Any] = {"type": "response.create"}
        if instructions is not None:
            event["response"] = {"instructions": instructions}
        event_id = self._send(event)
        self._asked[event_id] = instructions
        while len(self._asked) > 8:
            self._asked.pop(next(iter(self._asked)))
        self._responding = True  # until its response.done (or a refusal)

    def tool_result(
        self, call_id: str, name: str, output: Any, *, error: str | None = None
    ) -> None:
        if error is not None:
            text = json.dumps({"error": error})
        elif isinstance(output, str):
            text = output
        else:
            text = json.dumps(output, default=str)
        item = {"type": "function_call_output", "call_id": call_id, "output": text}
        self._send({"type": "conversation.item.create", "item": item})
        self._ask(None)

    def interrupted(self, heard_ms: int) -> None:
        if self._responding:
            self._send({"type": "response.cancel"})
            if self._response_id is not None:
                self._muted.add(self._response_id)
        item = self._audio_item
        if item is None:
            return
        self._audio_item = None  # truncated once; later audio comes in a new item
        # Never past the audio we were given: the service refuses that.
        end_ms = max(0, min(int(heard_ms), int(self._item_ms.get(item, 0))))
        self._send(
            {
                "type": "conversation.item.truncate",
                "item_id": item,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    # --- receiving ----------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self._dispatch(_event(raw))
        if self._closed or self._ws is not ws:
            return
        self._ws = None
        self._responding = False
        code = ws.close_code
        reason = ws.close_reason or ""
        listener = self.listener
        if code == 1000:
            log.info("OpenAI Realtime ended the session: %s", reason or "no reason given")
            if listener is not None:
                listener.on_closed(reason or "the model service ended the session")
            return
        why = self._last_error or reason or "no reason given"
        message = f"OpenAI Realtime connection lost (close {code}): {why}"
        log.warning("%s", message)
        if listener is not None:
            listener.on_error(message, True)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, event)

    def _on_speech_started(self, event: dict[str, Any]) -> None:
        if self._responding and self._response_id is not None:
            self._muted.add(self._response_id)  # the service cancels it (interrupt_response)
        if self.listener is not None:
            self.listener.on_speech_started()

    def _on_speech_stopped(self, event: dict[str, Any]) -> None:
        end_ms = event.get("audio_end_ms")
        if isinstance(end_ms, int | float) and 0 <= end_ms <= self._sent_ms:
            wait = self.settings.silence_duration_ms if self.settings.vad == "server_vad" else 0
            last_word_ms = max(0.0, float(end_ms) - wait)
            self.speech_ended_at = time.monotonic() - (self._sent_ms - last_word_ms) / 1000

    @property
    def transcript_pending(self) -> bool:
        """A caller turn was committed and its transcription (which runs beside the model's
        answer) has not come yet: the bridge waits for it before the call ends."""
        return bool(self._untranscribed)

    def _on_committed(self, event: dict[str, Any]) -> None:
        item = event.get("item_id")
        if isinstance(item, str):
            self._untranscribed.add(item)

    def _on_transcript_failed(self, event: dict[str, Any]) -> None:
        item = event.get("item_id")
        if isinstance(item, str):
            self._untranscribed.discard(item)
            self._partials.pop(item, None)

    def _on_transcript_delta(self, event: dict[str, Any]) -> None:
        item, delta = event.get("item_id"), event.get("delta")
        if isinstance(item, str) and isinstance(delta, str):
            text = self._partials[item] = self._partials.get(item, "") + delta
            if self.listener is not None:
                self.listener.on_input_transcript(text, False)

    def _on_transcript_done(self, event: dict[str, Any]) -> None:
        item, transcript = event.get("item_id"), event.get("transcript")
        if isinstance(item, str):
            self._partials.pop(item, None)
            self._untranscribed.discard(item)
        if isinstance(transcript, str) and transcript.strip() and self.listener is not None:
            self.listener.on_input_transcript(transcript.strip(), True)

    def _on_response_created(self, event: dict[str, Any]) -> None:
        response = event.get("response")
        self._responding = True
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self._response_id = response["id"]

    def _live(self, event: dict[str, Any]) -> bool:
        return event.get("response_id") not in self._muted

    def _on_audio(self, event: dict[str, Any]) -> None:
        delta, item = event.get("delta"), event.get("item_id")
        if not isinstance(delta, str) or not self._live(event):
            return
        try:
            ulaw = base64.b64decode(delta, validate=True)
        except ValueError:
            return
        if isinstance(item, str):
            self._audio_item = item
            self._item_ms[item] = self._item_ms.get(item, 0.0) + len(ulaw) / 8
        if ulaw and self.listener is not None:
            self.listener.on_audio(ulaw)

    def _on_output_transcript(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, str) and self._live(event) and self.listener is not None:
            self.listener.on_output_transcript(delta)

    def _on_tool_call(self, event: dict[str, Any]) -> None:
        call_id, name, raw = event.get("call_id"), event.get("name"), event.get("arguments")
        if not (isinstance(call_id, str) and isinstance(name, str)) or not self._live(event):
            return
        arguments = _arguments(raw if isinstance(raw, str) else "")
        if self.listener is not None:
            self.listener.on_tool_call(call_id, name, arguments)

    def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response")
        response = response if isinstance(response, dict) else {}
        status = response.get("status")
        self._responding, self._response_id = False, None
        listener = self.listener
        if status in FAILED and listener is not None:
            listener.on_error(f"OpenAI Realtime response {status}: {_why(response)}", False)
        if listener is not None:
            listener.on_response_done()
        self._flush()

    def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        if code in IGNORED_ERRORS:
            return
        asked = error.get("event_id")
        if asked in self._asked:
            instructions = self._asked.pop(asked)
            if code == BUSY:  # the VAD started a response just before ours: ask after it
                self._pending.appendleft(instructions)
                return
            if self._response_id is None:  # refused: no response is coming from it
                self._responding = False
                self._flush()
        message = _message(event)
        self._last_error = message
        log.warning("OpenAI Realtime: %s", message)
        if self.listener is not None:
            self.listener.on_error(message, False)

    def _on_rate_limits(self, event: dict[str, Any]) -> None:
        for limit in event.get("rate_limits") or []:
            if isinstance(limit, dict) and limit.get("remaining") == 0:
                log.warning("OpenAI Realtime rate limit reached: %s", limit.get("name"))

    _handlers: ClassVar[dict[str, Callable[[OpenAIRealtime, dict[str, Any]], None]]] = {
        "input_audio_buffer.speech_started": _on_speech_started,
        "input_audio_buffer.speech_stopped": _on_speech_stopped,
        "conversation.item.input_audio_transcription.delta": _on_transcript_delta,
        "conversation.item.input_audio_transcription.completed": _on_transcript_done,
        "conversation.item.input_audio_transcription.failed": _on_transcript_failed,
        "input_audio_buffer.committed": _on_committed,
        "response.created": _on_response_created,
        "response.output_audio.delta": _on_audio,
        "response.output_audio_transcript.delta": _on_output_transcript,
        "response.function_call_arguments.done": _on_tool_call,
        "response.done": _on_response_done,
        "rate_limits.updated": _on_rate_limits,
        "error": _on_error,
    }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._connecting, self._reader, self._writer) if t is not None]
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await asyncio.wait_for(ws.close(), 2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.dropped_frames:
            log.warning("OpenAI Realtime: %d audio frame(s) dropped", self.dropped_frames)


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


def _why(response: dict[str, Any]) -> str:
    details = response.get("status_details")
    if isinstance(details, dict):
        error = details.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(details.get("reason"), str):
            return str(details["reason"])
    return "no reason given"


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}
