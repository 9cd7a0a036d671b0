"""Twilio's side of a bidirectional `<Connect><Stream>` Media Stream (docs/carriers.md §1.5).

The emulator connects to the app's WebSocket as a client and sends JSON text frames: `connected`,
`start` (sequenceNumber "1", streamSid, callSid, customParameters, mediaFormat), then one `media`
frame of 160 µ-law bytes (20 ms) per tick on the inbound track, paced in real time (times
`time_scale`): the callee's speech audio when it talks, µ-law silence otherwise, as a phone line
would carry. Audio the app sends is queued and "played" one 20 ms frame per tick; a `mark` is
echoed once the audio queued before it has played, `clear` drops the queue and returns its
pending marks at once, and `stop` is sent when the stream ends from Twilio's side.

The callee takes turns: once the app's audio has stopped for `HANGOVER_S`, it hears
`[audio N ms]`, waits its reply delay, then presses digits (`dtmf` frames) or says its next line.
The line's text goes out-of-band into `extra["said_via_stream"]` so a fake speech-to-text can
pair it with the audio; what the app played is kept in `extra["audio_in"]`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voice_call.audio.g711 import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, SILENCE_BYTE, frames
from voice_call.security.signatures.twilio import HEADER, compute_signature
from voice_call.sim.callee import SimulatedCallee
from voice_call.sim.common import AppFrame
from voice_call.sim.twilio.markup import Stream
from voice_call.sim.voice import speech_audio

HANGOVER_S = 0.2  # silence after the app's audio that ends its turn (TTS chunks may arrive late)
SILENCE = bytes([SILENCE_BYTE]) * FRAME_BYTES
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1}


@dataclass
class StreamPeer:
    """What a stream needs from its call: identity, the callee, and where to report."""

    account_sid: str
    call_sid: str
    auth_token: str
    callee: SimulatedCallee
    extra: dict[str, Any]  # the EmulatedCall's extra: audio_in, said_via_stream, errors
    time_scale: float
    reply_delay_s: float  # emulated seconds
    next_reply: Callable[[], tuple[str, str] | None]  # ("dtmf", digits) | ("speech", line)
    on_status: Callable[[str, str, str | None], None]  # (streamSid, StreamEvent, StreamError)
    note: Callable[[int, str], None]
    speech: Callable[[str], bytes] = field(default=speech_audio)


@dataclass(frozen=True)
class _Mark:
    name: str


class MediaStreamSession:
    def __init__(self, stream: Stream, peer: StreamPeer) -> None:
        self.stream = stream
        self.peer = peer
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._ws: ClientConnection | None = None
        self._playout: deque[bytes | _Mark] = deque()
        self._inbound: deque[bytes] = deque()
        self._turn_ms = 0  # how much of the app's current utterance has played
        self._last_audio_tick = 0
        self._reply_tick: int | None = None
        self._warned: set[int] = set()
        self._speaking: asyncio.Task[None] | None = None

    def _url(self) -> str | None:
        """The URL to connect to, or None (after noting why) when Twilio would refuse it."""
        parts = urlsplit(self.stream.url)
        # Twilio wants wss://; ws:// is accepted too because everything here is loopback.
        if parts.scheme not in ("wss", "ws") or not parts.hostname:
            self.peer.note(31922, f"Stream url {self.stream.url!r} is not a wss:// URL")
            return None
        if self.stream.track != "inbound_track":
            self.peer.note(31941, "<Connect><Stream> supports track=inbound_track only")
            return None
        if parts.query:
            # [M] Twilio allows no query string on a Stream url (use <Parameter>); drop it.
            self.peer.note(12200, "Stream url must not carry a query string; it was dropped")
        return urlunsplit(parts._replace(query="", fragment=""))

    async def run(self) -> bool:
        """Stream until the app closes the socket (False) or the callee hangs up (True)."""
        url = self._url()
        if url is None:
            self.peer.on_status(self.stream_sid, "stream-error", "invalid Stream configuration")
            return False
        # [M] the handshake is believed to be signed like a webhook: over the URL, no params.
        headers = {HEADER: compute_signature(self.peer.auth_token, url)}
        try:
            self._ws = await connect(
                url, additional_headers=headers, proxy=None, compression=None, close_timeout=1
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.peer.note(31920, f"Stream WebSocket handshake failed: {exc}")
            self.peer.on_status(self.stream_sid, "stream-error", str(exc))
            return False
        hung_up = False
        tasks: set[asyncio.Task[Any]] = set()
        try:
            await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await self._send({"event": "start", "start": self._start_body()})
            self.peer.extra.setdefault("stream_sids", []).append(self.stream_sid)
            self.peer.on_status(self.stream_sid, "stream-started", None)
            tasks = {asyncio.create_task(self._receive()), asyncio.create_task(self._tick())}
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, ConnectionClosed):
                    raise error
            hung_up = any(t.result() for t in done if t.exception() is None)
        except ConnectionClosed:
            pass  # the app went away right after the handshake: same as closing the stream
        finally:
            if self._speaking is not None:
                tasks.add(self._speaking)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close()
        return hung_up

    def _start_body(self) -> dict[str, Any]:
        return {
            "accountSid": self.peer.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.peer.call_sid,
            "tracks": ["inbound"],  # <Connect><Stream> carries the inbound track only
            "customParameters": dict(self.stream.parameters),
            "mediaFormat": MEDIA_FORMAT,
        }

    async def _send(self, message: dict[str, Any]) -> None:
        """Send with the next sequenceNumber; the lock keeps wire order equal to number order."""
        assert self._ws is not None
        async with self._send_lock:
            if message["event"] != "connected":
                self._seq += 1
                message = {
                    "event": message["event"],
                    "sequenceNumber": str(self._seq),
                    "streamSid": self.stream_sid,
                    **{k: v for k, v in message.items() if k != "event"},
                }
            await self._ws.send(json.dumps(message))

    async def _close(self) -> None:
        """Twilio's end of the stream: `stop`, then close (a no-op when the app closed first)."""
        self.peer.on_status(self.stream_sid, "stream-stopped", None)
        if self._ws is None:
            return
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            stop = {"accountSid": self.peer.account_sid, "callSid": self.peer.call_sid}
            await asyncio.wait_for(self._send({"event": "stop", "stop": stop}), 1)
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            await asyncio.wait_for(self._ws.close(), 2)

    # ------------------------------------------------------------------ app → Twilio

    async def _receive(self) -> bool:
        assert self._ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self._ws:
                if isinstance(raw, bytes):
                    self._warn(31950, "Media Stream binary frame ignored; send JSON text")
                    continue
                await self._handle(raw)
        return False

    def _warn(self, code: int, message: str) -> None:
        """Twilio raises each stream protocol warning once per stream."""
        if code not in self._warned:
            self._warned.add(code)
            self.peer.note(code, message)

    def _parse(self, raw: str) -> tuple[str, dict[str, Any]] | None:
        """(event, its body) for a message Twilio accepts, else None after warning 31951."""
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        event = message.get("event") if isinstance(message, dict) else None
        if not isinstance(message, dict) or event not in ("media", "mark", "clear"):
            self._warn(
                31951, f"Media Stream message is not valid JSON or has unknown event {event}"
            )
            return None
        if message.get("streamSid") != self.stream_sid:
            # [M] a message for another (or no) stream is dropped, not played.
            self._warn(31951, "Media Stream message has a missing or wrong streamSid")
            return None
        body = message.get(event, {})
        if event != "clear" and not isinstance(body, dict):
            self._warn(31951, f"Media Stream {event} message has no {event} object")
            return None
        return event, body if isinstance(body, dict) else {}

    async def _handle(self, raw: str) -> None:
        arrived = asyncio.get_running_loop().time()
        parsed = self._parse(raw)
        if parsed is None:
            return
        event, body = parsed
        log: list[AppFrame] = self.peer.extra.setdefault("frames_in", [])
        if event == "media":
            try:
                audio = base64.b64decode(body["payload"], validate=True)
            except (KeyError, binascii.Error, ValueError, TypeError):
                self._warn(31951, "Media Stream media payload is missing or not base64")
                return
            log.append(AppFrame(arrived, event, len(audio)))
            if audio:
                self._playout.append(audio)
        else:
            log.append(AppFrame(arrived, event))
        if event == "mark":
            if not isinstance(body.get("name"), str):
                self._warn(31951, "Media Stream mark has no name")
                return
            self._playout.append(_Mark(body["name"]))
        elif event == "clear":
            dropped = [item for item in self._playout if isinstance(item, _Mark)]
            self._playout.clear()
            for mark in dropped:  # marks whose audio was dropped come back at once
                await self._send({"event": "mark", "mark": {"name": mark.name}})

    # ------------------------------------------------------------------ the 20 ms clock

    async def _tick(self) -> bool:
        """One tick per 20 ms (scaled): send a frame, play a frame, let the callee take turns."""
        loop = asyncio.get_running_loop()
        frame_s = FRAME_MS / 1000 * self.peer.time_scale
        started = loop.time()
        tick = 0
        while True:
            tick += 1
            # Absolute schedule: a late tick is caught up rather than drifting.
            await asyncio.sleep(max(0.0, started + tick * frame_s - loop.time()))
            payload = self._inbound.popleft() if self._inbound else SILENCE
            media = {
                "track": "inbound",
                "chunk": str(tick),
                "timestamp": str((tick - 1) * FRAME_MS),
                "payload": base64.b64encode(payload).decode(),
            }
            await self._send({"event": "media", "media": media})
            if await self._play(tick):
                return True
            await self._take_turn(tick)

    async def _play(self, tick: int) -> bool:
        """Play up to one frame of the app's audio; True when the callee hangs up on it."""
        played = bytearray()
        while self._playout and len(played) < FRAME_BYTES:
            head = self._playout[0]
            if isinstance(head, _Mark):
                if played:
                    break  # its audio finishes with this frame; echoed below
                self._playout.popleft()
                await self._send({"event": "mark", "mark": {"name": head.name}})
                continue
            take = FRAME_BYTES - len(played)
            played += head[:take]
            if len(head) > take:
                self._playout[0] = head[take:]
            else:
                self._playout.popleft()
        while self._playout and isinstance(self._playout[0], _Mark):
            mark = self._playout.popleft()
            assert isinstance(mark, _Mark)
            await self._send({"event": "mark", "mark": {"name": mark.name}})
        if played:
            self.peer.extra.setdefault("audio_in", bytearray()).extend(played)
            self._turn_ms += len(played) * 1000 // SAMPLE_RATE
            self._last_audio_tick = tick
            self._reply_tick = None  # the app is still talking: the callee waits
            return False
        idle_s = (tick - self._last_audio_tick) * FRAME_MS / 1000
        if self._turn_ms and idle_s >= HANGOVER_S:
            heard, self._turn_ms = f"[audio {self._turn_ms} ms]", 0
            if self.peer.callee.hear(heard):
                return True
            wait_s = max(self.peer.reply_delay_s, HANGOVER_S)
            self._reply_tick = self._last_audio_tick + math.ceil(wait_s * 1000 / FRAME_MS)
        return False

    async def _take_turn(self, tick: int) -> None:
        if self._reply_tick is None or tick < self._reply_tick or self._inbound:
            return
        if self._speaking is not None and not self._speaking.done():
            return  # still synthesising the previous line
        self._reply_tick = None
        reply = self.peer.next_reply()
        if reply is None:
            return
        kind, value = reply
        if kind == "dtmf":
            for digit in value:
                await self._send(
                    {"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}}
                )
            return
        self._speaking = asyncio.create_task(self._speak(value))

    async def barge_in(self, line: str) -> None:
        """The callee says `line` now, whoever is talking (over the app's audio, say)."""
        self._reply_tick = None
        await self._speak(line)

    async def _speak(self, line: str) -> None:
        # espeak-ng runs as a subprocess: keep it off the loop so the 20 ms clock keeps going.
        audio = await asyncio.to_thread(self.peer.speech, line)
        self.peer.extra.setdefault("said_via_stream", []).append(line)
        self._inbound.extend(frames(audio))
