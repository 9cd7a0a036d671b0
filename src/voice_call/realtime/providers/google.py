"""Gemini Live (`BidiGenerateContent` over WebSocket) behind the `RealtimeModel` protocol.

Wire: `wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.
GenerativeService.BidiGenerateContent?key=<API key>` — the key in the query, as the API's own
WebSocket examples pass it (a browser cannot set headers; the SDKs' `x-goog-api-key` header is
the other accepted way). The first message is `setup` (model, voice, language, instructions,
tools as `functionDeclarations` with `parametersJsonSchema`, automatic activity detection,
both transcriptions, session resumption, a sliding context window), answered by
`setupComplete`. The service sends its JSON in text or binary frames; both are read.

Audio: the caller's µ-law 8 kHz is decoded and resampled to 16 kHz PCM (soxr "QQ", one
streaming resampler per session, no filter delay) for `realtimeInput.audio`; the model's
24 kHz PCM (`inlineData`) is resampled to 8 kHz ("LQ") and µ-law encoded for the listener.

Events: `serverContent.interrupted` → `on_speech_started`, then `on_response_done` (the service
already stopped generating; nothing to truncate; the cut turn's own `turnComplete` is then
ignored); `inputTranscription` pieces → `on_input_transcript` (the utterance so far; final when
the model starts answering — its first audio, transcript or tool call — or at `turnComplete`,
since Gemini marks no end of an utterance); `outputTranscription` → `on_output_transcript`;
`generationComplete` → `on_response_done` (no more audio comes; `turnComplete` follows only
after the service's assumed playback, so it is the fallback); `toolCall` → `on_tool_call`, then
`on_response_done` (the model waits for the result, as OpenAI's `response.done` after a call, so
a filler `say` goes out at once); `toolCallCancellation` ids are remembered and their late
results not sent; `usageMetadata` is ignored. `say`/`respond` while the model is producing are
queued (a client turn would cut it) and sent when it stops.

`speech_ended_at`: Gemini sends no end-of-speech event, so it is the monotonic time at which the
last loud caller frame (20 ms RMS over a fixed gate) was forwarded before the model's turn began.

`goAway {timeLeft}`: the connection is renewed before the time runs out without the listener
noticing — at the end of the turn in progress, or at half the time left, whichever comes first:
a new socket resumes with the latest `sessionResumptionUpdate` handle (resumption is enabled in
every setup), or, without a handle, replays the conversation so far; if that fails the listener
gets `on_error(fatal=True)`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voice_call.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voice_call.audio.resample import Resampler
from voice_call.config.realtime import GeminiLiveOptions
from voice_call.realtime.model import ModelListener, RealtimeError, SessionSetup, Speaker

log = logging.getLogger("voice_call.realtime")

DEFAULT_URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
DEFAULT_MODEL = "gemini-3.1-flash-live-preview"
DEFAULT_VOICE = "Kore"
VERBATIM = "Say exactly this, word for word, and nothing else: "
IN_RATE = 16000
OUT_RATE = 24000
IN_MIME = f"audio/pcm;rate={IN_RATE}"
MAX_QUEUED = 100  # 2 s of 20 ms frames; more means the socket stalled
SPEECH_RMS = 0.025 * 32768  # a frame this loud is speech (≈ -32 dBFS), as the fake VAD gates

Sensitivity = Literal["high", "low"]


@dataclass(frozen=True)
class GeminiLiveSettings:
    api_key: str
    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    voice: str = DEFAULT_VOICE
    silence_duration_ms: int | None = None  # None: the service's defaults
    prefix_padding_ms: int | None = None
    start_sensitivity: Sensitivity | None = None
    end_sensitivity: Sensitivity | None = None
    connect_timeout_s: float = 10.0


def settings_from(options: GeminiLiveOptions | None, api_key: str | None) -> GeminiLiveSettings:
    """The `realtime.providers.google` block over the defaults; `api_key` is the env fallback
    (GEMINI_API_KEY / GOOGLE_API_KEY, read by the caller)."""
    opts = options or GeminiLiveOptions()
    key = opts.api_key or api_key
    if not key:
        raise RealtimeError(
            "realtime.providers.google.apiKey: required for the google realtime provider — "
            "set it, or GEMINI_API_KEY / GOOGLE_API_KEY"
        )
    return GeminiLiveSettings(
        api_key=key,
        url=opts.url or DEFAULT_URL,
        model=opts.model or DEFAULT_MODEL,
        voice=opts.voice or DEFAULT_VOICE,
        silence_duration_ms=opts.silence_duration_ms,
        prefix_padding_ms=opts.prefix_padding_ms,
        start_sensitivity=opts.start_sensitivity,
        end_sensitivity=opts.end_sensitivity,
    )


def setup_message(
    settings: GeminiLiveSettings, setup: SessionSetup, handle: str | None = None
) -> dict[str, Any]:
    speech: dict[str, Any] = {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": setup.voice or settings.voice}}
    }
    if setup.language:
        speech["languageCode"] = setup.language
    body: dict[str, Any] = {
        "model": "models/" + settings.model.removeprefix("models/"),
        "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": speech},
        "systemInstruction": {"parts": [{"text": setup.instructions}]},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "sessionResumption": {"handle": handle} if handle else {},
        # without it an audio session ends at 15 minutes; a phone call may run longer
        "contextWindowCompression": {"slidingWindow": {}},
    }
    if setup.tools:
        declarations = [
            {"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}
            for t in setup.tools
        ]
        body["tools"] = [{"functionDeclarations": declarations}]
    detection = _activity_detection(settings)
    if detection:
        body["realtimeInputConfig"] = {"automaticActivityDetection": detection}
    return {"setup": body}


def _activity_detection(settings: GeminiLiveSettings) -> dict[str, Any]:
    detection: dict[str, Any] = {}
    if settings.start_sensitivity:
        detection["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{settings.start_sensitivity}"
    if settings.end_sensitivity:
        detection["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{settings.end_sensitivity}"
    if settings.prefix_padding_ms is not None:
        detection["prefixPaddingMs"] = settings.prefix_padding_ms
    if settings.silence_duration_ms is not None:
        detection["silenceDurationMs"] = settings.silence_duration_ms
    return {k: v.upper() if isinstance(v, str) else v for k, v in detection.items()}


def history_message(history: list[tuple[Speaker, str]]) -> dict[str, Any] | None:
    turns = [
        {"role": "user" if speaker == "user" else "model", "parts": [{"text": text}]}
        for speaker, text in history
        if text
    ]
    if not turns:
        return None
    return {"clientContent": {"turns": turns, "turnComplete": False}}


def _seconds(duration: Any) -> float:
    """A protobuf Duration in JSON ("12.5s") → seconds; unreadable → 0."""
    try:
        return max(0.0, float(str(duration).removesuffix("s")))
    except ValueError:
        return 0.0


class GeminiLive:
    """One Gemini Live session per call (see the module docstring)."""

    name = "google"

    def __init__(self, settings: GeminiLiveSettings) -> None:
        self.settings = settings
        self.listener: ModelListener | None = None
        self.speech_ended_at: float | None = None
        self._setup: SessionSetup | None = None
        self._ws: ClientConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._handover: asyncio.Task[None] | None = None
        self._outbox: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._history: list[tuple[Speaker, str]] = []
        self._handle: str | None = None
        # cubic: no filter delay, and upsampling adds no aliasing (see audio/resample.py)
        self._upsampler = Resampler(8000, IN_RATE, quality="QQ")
        self._downsampler = _downsampler()
        self._fed = False  # the downsampler holds audio of the current turn
        self._last_loud: float | None = None
        # the model's turn: True from its first output to turnComplete
        self._turn_active = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._done_sent = False
        self._cut = False  # the service interrupted the turn; no output since
        self._heard = ""  # the caller's utterance so far (input transcription)
        self._said: list[str] = []  # the model's words this turn (output transcription)
        self._queued: deque[str] = deque()  # say()/respond() waiting for the turn to end
        self._cancelled_calls: set[str] = set()
        self.dropped_frames = 0
        self.handovers = 0

    # ---- connection ----

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self, setup: SessionSetup) -> None:
        if self._ws is not None:
            return
        if self._closed:
            raise RealtimeError("the Gemini Live session is closed")
        if self._connecting is None or self._connecting.done():
            self._setup = setup
            self._history = list(setup.history)
            self._handle = None
            self._connecting = asyncio.create_task(self._first_connect(setup))
        await asyncio.shield(self._connecting)

    async def _first_connect(self, setup: SessionSetup) -> None:
        ws = await self._open(setup, handle=None, history=self._history)
        self._attach(ws)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))

    async def _open(
        self, setup: SessionSetup, *, handle: str | None, history: list[tuple[Speaker, str]]
    ) -> ClientConnection:
        url = self.settings.url
        url += ("&" if "?" in url else "?") + urlencode({"key": self.settings.api_key})
        timeout = self.settings.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                ws = await connect(
                    url, proxy=None, compression=None, max_size=1 << 22, open_timeout=None
                )
                try:
                    await ws.send(json.dumps(setup_message(self.settings, setup, handle)))
                    while "setupComplete" not in _parse(await ws.recv()):
                        pass
                    if handle is None and (replay := history_message(history)) is not None:
                        await ws.send(json.dumps(replay))
                    return ws
                except BaseException:
                    await ws.close()
                    raise
        except TimeoutError:
            raise RealtimeError(f"Gemini Live did not answer within {timeout:g} s") from None
        except ConnectionClosed as exc:
            raise RealtimeError(f"Gemini Live refused the session: {_closed_why(exc)}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise RealtimeError(f"Gemini Live refused the connection: HTTP {status}") from None
        except InvalidURI:  # its message would carry the key in the query
            raise RealtimeError(
                f'Gemini Live URL "{self.settings.url}" is not a WebSocket URL — use wss://…'
            ) from None
        except (OSError, InvalidHandshake) as exc:
            raise RealtimeError(f"cannot reach Gemini Live: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [self._connecting, self._handover, self._reader, self._writer]
        current = asyncio.current_task()
        for task in tasks:
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RealtimeError):
                    await task
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    # ---- outgoing ----

    def _enqueue(self, message: dict[str, Any] | str) -> None:
        if self._ws is None:
            return
        self._outbox.append(message if isinstance(message, str) else json.dumps(message))
        self._wake.set()

    def send_audio(self, ulaw: bytes) -> None:
        if self._ws is None or not ulaw:
            return
        pcm = ulaw_to_pcm16(ulaw)
        if float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) >= SPEECH_RMS:
            self._last_loud = time.monotonic()
        samples = self._upsampler.push(pcm.astype("<i2").tobytes())
        if not len(samples):
            return
        if len(self._outbox) >= MAX_QUEUED:
            self._outbox.popleft()
            self.dropped_frames += 1
        data = base64.b64encode(samples.astype("<i2").tobytes()).decode()
        self._enqueue(f'{{"realtimeInput":{{"audio":{{"data":"{data}","mimeType":"{IN_MIME}"}}}}}}')

    async def _write(self) -> None:
        while True:
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            ws = self._ws
            if ws is None:
                self._outbox.clear()
                continue
            message = self._outbox.popleft()
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)  # a closed socket is the reader's to report

    def interrupted(self, heard_ms: int) -> None:
        """Nothing to send: Gemini stopped generating when it sent `interrupted`, and its Live
        API has no way to truncate what the model remembers saying. Stale resampler state is
        dropped so the next turn starts clean."""
        self._downsampler, self._fed = _downsampler(), False

    def say(self, text: str) -> None:
        self._client_turn(VERBATIM + text)

    def respond(self) -> None:
        self._client_turn(None)

    def _client_turn(self, text: str | None) -> None:
        content: dict[str, Any] = {"turnComplete": True}
        if text is not None:
            content["turns"] = [{"role": "user", "parts": [{"text": text}]}]
        message = json.dumps({"clientContent": content})
        if self._turn_active:
            self._queued.append(message)  # a client turn would cut the one in progress
        else:
            self._enqueue(message)

    def tool_result(
        self, call_id: str, name: str, output: Any, *, error: str | None = None
    ) -> None:
        if call_id in self._cancelled_calls:
            self._cancelled_calls.discard(call_id)
            return  # the service gave up on this call when the caller cut in
        if error is not None:
            response: dict[str, Any] = {"error": error}
        elif isinstance(output, dict):
            response = output
        else:
            response = {"output": output}
        reply = {"id": call_id, "name": name, "response": response}
        self._enqueue({"toolResponse": {"functionResponses": [reply]}})

    # ---- incoming ----

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._handle_message(_parse(raw))
        except ConnectionClosed:
            pass
        if ws is not self._ws or self._closed:
            return  # retired by a handover, or closed by us
        self._ws = None
        if self._handover is not None and not self._handover.done():
            return  # the handover reports its own failure
        self._lost(ws)

    def _lost(self, ws: ClientConnection) -> None:
        close = ws.protocol.close_rcvd
        listener = self.listener
        if listener is None:
            return
        if close is not None and close.code == 1000:
            listener.on_closed(close.reason or "Gemini Live ended the session")
        else:
            code = close.code if close is not None else 1006
            reason = close.reason if close is not None else "the connection dropped"
            listener.on_error(f"Gemini Live closed the session: {reason} ({code})", True)

    def _handle_message(self, message: dict[str, Any]) -> None:
        content = message.get("serverContent")
        if isinstance(content, dict):
            self._server_content(content)
        calls = message.get("toolCall")
        if isinstance(calls, dict):
            self._tool_call(calls)
        cancelled = message.get("toolCallCancellation")
        if isinstance(cancelled, dict):
            self._cancelled_calls.update(str(i) for i in cancelled.get("ids") or [])
        update = message.get("sessionResumptionUpdate")
        if isinstance(update, dict) and update.get("resumable") and update.get("newHandle"):
            self._handle = str(update["newHandle"])
        go_away = message.get("goAway")
        if isinstance(go_away, dict):
            self._go_away(_seconds(go_away.get("timeLeft")))

    def _server_content(self, content: dict[str, Any]) -> None:
        listener = self.listener
        heard = content.get("inputTranscription")
        if isinstance(heard, dict) and heard.get("text"):
            self._heard += str(heard["text"])
            if listener is not None:
                listener.on_input_transcript(self._heard.strip(), False)
        if content.get("interrupted"):
            self._downsampler, self._fed = _downsampler(), False
            if listener is not None:
                listener.on_speech_started()
            self._end_output()  # the cut turn is over; its turnComplete (if any) is not news
            self._cut = True
        turn = content.get("modelTurn")
        if isinstance(turn, dict):
            for part in turn.get("parts") or []:
                self._part(part)
        said = content.get("outputTranscription")
        if isinstance(said, dict) and said.get("text"):
            self._model_output()
            self._said.append(str(said["text"]))
            if listener is not None:
                listener.on_output_transcript(str(said["text"]))
        if content.get("generationComplete"):
            self._response_done()
        if content.get("turnComplete"):
            if self._cut and not self._turn_active:
                self._cut = False  # the interrupted turn's end: the caller is still talking
            else:
                self._turn_complete()

    def _part(self, part: Any) -> None:
        inline = part.get("inlineData") if isinstance(part, dict) else None
        if not isinstance(inline, dict) or not str(inline.get("mimeType", "")).startswith(
            "audio/pcm"
        ):
            return
        self._model_output()
        pcm = base64.b64decode(str(inline.get("data", "")))
        self._fed = True
        samples = self._downsampler.push(pcm)
        if len(samples) and self.listener is not None:
            self.listener.on_audio(pcm16_to_ulaw(samples))

    def _model_output(self) -> None:
        """The model's turn has begun: the caller's utterance is final now."""
        if self._turn_active:
            return
        self._turn_active, self._done_sent, self._cut = True, False, False
        self._idle.clear()
        self._said = []
        if self._last_loud is not None:
            self.speech_ended_at = self._last_loud
        self._final_input()

    def _final_input(self) -> None:
        heard, self._heard = self._heard.strip(), ""
        if heard:
            self._history.append(("user", heard))
            if self.listener is not None:
                self.listener.on_input_transcript(heard, True)

    def _response_done(self) -> None:
        if self._done_sent:
            return
        self._done_sent = True
        # only audio of this turn is flushed: a resampler replaced on a cut holds just priming
        tail = self._downsampler.flush() if self._fed else None
        self._downsampler = _downsampler()
        self._fed = False
        if self.listener is not None:
            if tail is not None and len(tail):
                self.listener.on_audio(pcm16_to_ulaw(tail))
            self.listener.on_response_done()

    def _turn_complete(self) -> None:
        self._final_input()
        self._end_output()

    def _end_output(self) -> None:
        """The model stopped producing: its turn ended, was cut, or waits on a function call."""
        if self._turn_active:
            self._response_done()
        said = "".join(self._said).strip()
        if said:
            self._history.append(("bot", said))
        self._said = []
        self._turn_active = False
        self._idle.set()
        while self._queued:
            self._enqueue(self._queued.popleft())

    def _tool_call(self, body: dict[str, Any]) -> None:
        self._model_output()
        for call in body.get("functionCalls") or []:
            if not isinstance(call, dict):
                continue
            args = call.get("args")
            arguments = args if isinstance(args, dict) else {"_raw": json.dumps(args)}
            if self.listener is not None:
                self.listener.on_tool_call(str(call.get("id")), str(call.get("name")), arguments)
        self._end_output()

    # ---- goAway: renew the connection before the service ends it ----

    def _go_away(self, time_left_s: float) -> None:
        if self._handover is None or self._handover.done():
            self._handover = asyncio.create_task(self._renew(time_left_s))

    async def _renew(self, time_left_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(time_left_s / 2):
                await self._idle.wait()
        old, setup = self._ws, self._setup
        if setup is None:
            return
        try:
            ws = await self._open(setup, handle=self._handle, history=self._history)
        except RealtimeError as exc:
            if old is not None:
                self._ws = None
                await old.close()
            if self.listener is not None and not self._closed:
                self.listener.on_error(f"Gemini Live could not renew the session: {exc}", True)
            return
        self.handovers += 1
        self._attach(ws)
        if old is not None:
            await old.close()


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.warning("Gemini Live sent a frame that is not JSON (%d bytes)", len(raw))
        return {}
    return message if isinstance(message, dict) else {}


def _closed_why(exc: ConnectionClosed) -> str:
    close = exc.rcvd
    if close is None:
        return "the connection closed without a reason"
    return f"{close.reason or 'no reason given'} ({close.code})"


def _downsampler() -> Resampler:
    """A fresh 24 → 8 kHz resampler, primed: soxr's stream hands back nothing for the first
    chunk it is fed, so unprimed every answer's first 40 ms would wait for its second chunk
    (measured: +40 ms per turn in bench/realtime.py). 2 ms of silence fills the filter."""
    resampler = Resampler(OUT_RATE, 8000)
    resampler.push(bytes(OUT_RATE // 500 * 2))
    return resampler
