"""The live transcription WebSocket, `/v1/listen`.

Parameters come in the query, checked before the upgrade (a bad one is an HTTP 400, a bad key a
401: Deepgram refuses at the handshake). Audio arrives as binary frames in the named `encoding`
(`mulaw`, `alaw` or `linear16` here) and feeds an energy VAD, since the fake cannot recognise
words but must decide *when* the caller spoke: a loud window starts an utterance
(`SpeechStarted` with `vad_events=true`), then `Results` with `is_final: false` arrive word by
word while it lasts (`interim_results=true`), and `endpointing` ms of quiet end it with
`is_final: true, speech_final: true`; `utterance_end_ms` after the last word, with no new speech,
comes `UtteranceEnd`. The words come out of band from a `ListenScript`.

Control messages (text frames): `KeepAlive` (only keeps the socket alive), `Finalize` (the
utterance so far is finalised now, `from_finalize: true`), `CloseStream` (what was heard is
finalised, then `Metadata` and a 1000 close). A socket that gets neither audio nor a text
message for 10 s is closed with 1011 and the NET-0001 reason, as Deepgram does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.sim.ai_http import pause
from voice_call.sim.deepgram.errors import bad_request, error_response
from voice_call.sim.openai.vad import EnergyVad, VadSettings, decode

# Deepgram's `encoding` names the fake can decode → the VAD's decoder for them.
DECODERS = {"mulaw": "g711_ulaw", "alaw": "g711_alaw", "linear16": "pcm16"}
OTHER_ENCODINGS = ("flac", "amr-nb", "amr-wb", "opus", "ogg-opus", "speex", "g729")
DEFAULT_ENDPOINTING_MS = 10  # [M] Deepgram's documented default
NO_ENDPOINTING_SILENCE_MS = 500  # with endpointing=false the fake still needs a gap
NET_0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window."
    " See https://dpgr.am/net0001"
)
DATA_0000 = "DATA-0000: the text message is not a Deepgram control message"


@dataclass(frozen=True)
class ListenTurn:
    """One utterance the VAD found, as handed to a transcript source (at its start)."""

    index: int  # 0-based within its socket
    started_ms: int  # stream audio time of the first loud window


class ListenScript:
    """Where transcripts come from (queued lines first, then `source(turn)`, else ""), how
    fast results come, and the refusals to answer on demand."""

    def __init__(
        self,
        lines: Iterable[str] = (),
        *,
        source: Callable[[ListenTurn], str] | None = None,
        first_result_ms: float = 150,
        per_word_ms: float = 40,
        final_ms: float = 30,
        idle_timeout_ms: float = 10_000,
        vad_threshold: float = 0.5,
    ) -> None:
        self._lines: deque[str] = deque(lines)
        self.source = source
        self.first_result_ms = first_result_ms  # speech start → the first interim result
        self.per_word_ms = per_word_ms  # between interim results
        self.final_ms = final_ms  # endpoint → the final result
        self.idle_timeout_ms = idle_timeout_ms
        self.vad_threshold = vad_threshold  # loudness that counts as speech (vad.py's scale)
        self._refusal: tuple[int, str, str] | None = None
        self._refusals_left: int | None = None

    def say(self, text: str) -> None:
        """Queue what the caller's next utterance will be transcribed as."""
        self._lines.append(text)

    @property
    def pending(self) -> list[str]:
        return list(self._lines)

    def transcript_for(self, turn: ListenTurn) -> str:
        if self._lines:
            return self._lines.popleft()
        return self.source(turn) if self.source is not None else ""

    def refuse(
        self,
        status: int = 503,
        message: str = "Service unavailable.",
        *,
        code: str = "SERVICE_UNAVAILABLE",
        count: int | None = None,
    ) -> None:
        """Refuse the next `count` handshakes (None: all, until `accept()`) with this error."""
        self._refusal, self._refusals_left = (status, code, message), count

    def accept(self) -> None:
        self._refusal = self._refusals_left = None

    def refusal(self) -> JSONResponse | None:
        if self._refusal is None:
            return None
        if self._refusals_left is not None:
            self._refusals_left -= 1
            if self._refusals_left <= 0:
                refusal, self._refusal = self._refusal, None
                return error_response(*refusal)
        return error_response(*self._refusal)


@dataclass
class ListenStream:
    """One socket's traffic, for tests to assert on."""

    query: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)  # binary: {"binary": n}
    sent: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    refused: int | None = None  # the HTTP status of a refused handshake
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""


@dataclass(frozen=True)
class ListenParams:
    model: str
    encoding: str
    sample_rate: int
    interim_results: bool
    endpointing_ms: int | None  # None: endpointing=false
    utterance_end_ms: int | None
    vad_events: bool


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise ValueError(f"Invalid value for `{name}`: expected true or false, got '{value}'.")
    return value.lower() == "true"


def _whole(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"Invalid value for `{name}`: expected an integer, got '{value}'.")
    return int(value)


def parse_params(query: Mapping[str, str]) -> ListenParams:
    """The stream's settings, or ValueError with the 400's message. [M] the wording is ours."""
    encoding = query.get("encoding")
    if encoding is None:
        raise ValueError("This fake needs raw audio described: set `encoding` and `sample_rate`.")
    if encoding not in DECODERS:
        known = encoding in OTHER_ENCODINGS
        raise ValueError(
            f"This fake decodes only mulaw, alaw and linear16, not '{encoding}'."
            if known
            else f"Invalid value for `encoding`: '{encoding}'."
        )
    rate = _whole(query, "sample_rate")
    if not rate:
        raise ValueError("`sample_rate` is required when `encoding` is set.")
    if _whole(query, "channels") not in (None, 1):
        raise ValueError("This fake transcribes one channel: set `channels=1`.")
    endpointing: int | None = DEFAULT_ENDPOINTING_MS
    if query.get("endpointing", "").lower() == "false":
        endpointing = None
    elif "endpointing" in query:
        endpointing = _whole(query, "endpointing")
    interim = _flag(query, "interim_results", False)
    utterance_end = _whole(query, "utterance_end_ms")
    if utterance_end is not None and not interim:
        raise ValueError("`utterance_end_ms` requires `interim_results=true`.")
    return ListenParams(
        model=query.get("model") or "base",
        encoding=encoding,
        sample_rate=rate,
        interim_results=interim,
        endpointing_ms=endpointing,
        utterance_end_ms=utterance_end,
        vad_events=_flag(query, "vad_events", False),
    )


class ListenSocket:
    """One accepted connection: reads audio and control messages, sends results."""

    def __init__(
        self,
        ws: WebSocket,
        script: ListenScript,
        params: ListenParams,
        time_scale: float,
        record: ListenStream,
    ) -> None:
        self.ws = ws
        self.script = script
        self.params = params
        self.time_scale = time_scale
        self.record = record
        self.request_id = str(uuid.uuid4())
        silence = params.endpointing_ms or NO_ENDPOINTING_SILENCE_MS
        self.vad = EnergyVad(VadSettings(script.vad_threshold, 0, silence), params.sample_rate)
        self.turns = 0
        self.started_ms = 0
        self.text: str | None = None  # the utterance in progress, until finalised
        self.utterance_end_due: int | None = None  # audio time of the next UtteranceEnd
        self.last_word_end_ms = 0
        self._interims: asyncio.Task[None] | None = None
        self._tail: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._gone = False

    async def run(self) -> None:
        await self.ws.accept()
        idle_s = self.script.idle_timeout_ms * self.time_scale / 1000
        try:
            while not self._gone:
                try:
                    message = await asyncio.wait_for(self.ws.receive(), idle_s)
                except TimeoutError:
                    await self.close(1011, NET_0001)
                    return
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    await self._audio(message["bytes"])
                elif message.get("text") is not None and await self._control(message["text"]):
                    return
        except WebSocketDisconnect:
            pass
        finally:
            for task in (self._interims, self._tail):
                if task is not None:
                    task.cancel()
            self.record.closed = True

    async def send(self, event: dict[str, Any]) -> None:
        self.record.sent.append(event)
        async with self._send_lock:
            if self._gone:
                return
            try:
                await self.ws.send_text(json.dumps(event))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._gone = True

    async def close(self, code: int, reason: str) -> None:
        """Close from our side (an error on demand, the idle timeout, CloseStream)."""
        self.record.close_code, self.record.close_reason = code, reason
        async with self._send_lock:
            self._gone = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=code, reason=reason)
        self.record.closed = True

    # ------------------------------------------------------------------ audio and the VAD

    async def _audio(self, data: bytes) -> None:
        self.record.received.append({"binary": len(data)})
        self.record.audio_bytes += len(data)
        for edge in self.vad.feed(decode(DECODERS[self.params.encoding], data)):
            if edge.speech:
                await self._speech_started(edge.at_ms)
            else:
                silence = self.params.endpointing_ms or NO_ENDPOINTING_SILENCE_MS
                self._endpoint(edge.at_ms - silence, self.params.endpointing_ms is not None)
        due = self.utterance_end_due
        if due is not None and not self.vad.speaking and self.vad.position_ms >= due:
            self.utterance_end_due = None
            last = self.last_word_end_ms / 1000
            self._then(lambda: self.send(_utterance_end(last)))

    async def _speech_started(self, at_ms: int) -> None:
        self.utterance_end_due = None
        self.started_ms = at_ms
        turn = ListenTurn(self.turns, at_ms)
        self.turns += 1
        self.text = self.script.transcript_for(turn)
        self.record.transcripts.append(self.text)
        if self.params.vad_events:
            await self.send({"type": "SpeechStarted", "channel": [0], "timestamp": at_ms / 1000})
        if self.params.interim_results:
            self._interims = asyncio.create_task(self._interim_results(self.text))

    async def _interim_results(self, text: str) -> None:
        words = text.split()
        await pause(self.script.first_result_ms, self.time_scale)
        for count in range(1, len(words) + 1):
            if count > 1:
                await pause(self.script.per_word_ms, self.time_scale)
            end_ms = max(self.vad.position_ms, self.started_ms + 10)
            await self.send(self._results(words[:count], end_ms, final=False))

    def _endpoint(self, last_loud_ms: int, speech_final: bool, *, finalize: bool = False) -> None:
        """The utterance so far is final (an endpoint, Finalize or CloseStream)."""
        if self._interims is not None:
            self._interims.cancel()
            self._interims = None
        text, self.text = self.text, None
        end_ms = max(last_loud_ms, self.started_ms + 10)
        if text is None:  # already finalised by Finalize: Deepgram still marks the endpoint
            text, end_ms = "", max(last_loud_ms, self.started_ms)
        if text:
            self.last_word_end_ms = end_ms
        event = self._results(text.split(), end_ms, final=True, speech_final=speech_final)
        event["from_finalize"] = finalize

        async def final() -> None:
            await pause(self.script.final_ms, self.time_scale)
            await self.send(event)

        self._then(final)
        if self.params.utterance_end_ms is not None and text:
            self.utterance_end_due = end_ms + self.params.utterance_end_ms

    def _then(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` after the jobs queued before it: results leave in order."""
        previous = self._tail

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await previous
            await job()

        self._tail = asyncio.create_task(run())

    def _results(
        self, words: list[str], end_ms: int, *, final: bool, speech_final: bool = False
    ) -> dict[str, Any]:
        start, span = self.started_ms, max(0, end_ms - self.started_ms)
        timed = []
        for index, word in enumerate(words):
            begin = start + span * index / len(words)
            timed.append(
                {
                    "word": word.strip(".,!?;:").lower(),
                    "start": round(begin / 1000, 3),
                    "end": round((begin + span / len(words)) / 1000, 3),
                    "confidence": 0.98,
                    "punctuated_word": word,
                }
            )
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(span / 1000, 3),
            "start": round(start / 1000, 3),
            "is_final": final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [
                    {"transcript": " ".join(words), "confidence": 0.98, "words": timed}
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": self.params.model, "version": "fake", "arch": "fake"},
                "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.params.model)),
            },
        }

    # ------------------------------------------------------------------ control messages

    async def _control(self, text: str) -> bool:
        """Handle a text frame; True once the socket is closed."""
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            self.record.received.append({"text": text})
            await self.close(1008, DATA_0000)
            return True
        self.record.received.append(event)
        kind = event.get("type")
        if kind == "KeepAlive":
            return False
        if kind == "Finalize":
            if self.text is not None:
                self._endpoint(self.vad.position_ms, False, finalize=True)
            return False
        if kind == "CloseStream":
            if self.text is not None:
                self._endpoint(self.vad.position_ms, False)
            if self._tail is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._tail
            await self.send(self._metadata())
            await self.close(1000, "")
            return True
        await self.close(1008, DATA_0000)
        return True

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0" * 64,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "duration": self.vad.position_ms / 1000,
            "channels": 1,
            "models": [str(uuid.uuid5(uuid.NAMESPACE_URL, self.params.model))],
            "model_info": {},
        }


def _utterance_end(last_word_end_s: float) -> dict[str, Any]:
    return {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end_s}


async def serve_listen(
    ws: WebSocket,
    refused: JSONResponse | None,
    script: ListenScript,
    time_scale: float,
    streams: list[ListenStream],
    live: set[ListenSocket],
) -> None:
    """The WebSocket route: `refused` (auth) or a bad parameter is an HTTP error at the
    handshake; otherwise one transcription socket runs."""
    record = ListenStream(dict(ws.query_params))
    streams.append(record)
    if refused is None:
        refused = script.refusal()
    if refused is None:
        try:
            params = parse_params(ws.query_params)
        except ValueError as exc:
            refused = bad_request(str(exc))
    if refused is not None:
        record.refused = refused.status_code
        record.closed = True
        await ws.send_denial_response(refused)
        return
    socket = ListenSocket(ws, script, params, time_scale, record)
    live.add(socket)
    try:
        await socket.run()
    finally:
        live.discard(socket)
