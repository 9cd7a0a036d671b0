"""A test carrier for the media route: sends each carrier's frames, plays back what it is sent.

Frame shapes follow the emulators (`sim/twilio/stream.py`, `sim/telnyx/stream.py`,
`sim/plivo/stream.py`; the protocol tests check our classes against those directly). Unlike the
emulators it timestamps everything it receives, so tests can measure cadence and barge-in
latency, and it talks whenever a test says so (`talk`), also over the bot.

Playback model: outbound media is queued and one 20 ms frame "plays" per tick; a mark or
checkpoint comes back once the audio before it has played; `clear` drops the queue (Twilio and
Telnyx then return the dropped marks, Plivo answers `clearedAudio` and returns none).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE, pcm16_to_ulaw

SILENT = bytes([SILENCE_BYTE]) * FRAME_BYTES


def loud_frames(count: int) -> list[bytes]:
    """Speech-loud µ-law (a 300 Hz tone), enough for any energy VAD."""
    t = np.arange(count * FRAME_BYTES) / 8000
    audio = pcm16_to_ulaw((np.sin(2 * np.pi * 300 * t) * 9000).astype(np.int16))
    return [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]


@dataclass
class Received:
    at: float
    event: str
    frame: dict[str, Any]


@dataclass
class _Mark:
    name: str


@dataclass
class FakeCarrier:
    carrier: str  # twilio | telnyx | plivo
    url: str  # ws://host:port/voice/stream
    call_id: str  # the carrier's id for the call
    token: str | None = None
    media_format: dict[str, Any] | None = None
    received: list[Received] = field(default_factory=list)
    played: bytearray = field(default_factory=bytearray)
    close_code: int | None = None
    close_reason: str = ""
    stream_id: str = field(default_factory=lambda: "MZ" + uuid.uuid4().hex)
    headers: dict[str, str] = field(default_factory=dict)  # extra handshake headers

    def __post_init__(self) -> None:
        self._ws: ClientConnection | None = None
        self._seq = 0
        self._chunk = 0
        self._speech: deque[bytes] = deque()
        self._playout: deque[bytes | _Mark] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self.closed = asyncio.Event()
        self.first_loud_sent_at: float | None = None

    # ------------------------------------------------------------------ connecting

    def connect_url(self) -> str:
        if self.carrier != "twilio" and self.token is not None:
            return self.url + "?" + urlencode({"token": self.token})
        return self.url

    async def open(self, *, start: bool = True, pump: bool = True) -> None:
        self._ws = await connect(
            self.connect_url(),
            proxy=None,
            compression=None,
            max_size=None,
            additional_headers=self.headers,
        )
        self._tasks.append(asyncio.create_task(self._read()))
        if self.carrier in ("twilio", "telnyx"):
            connected = {"event": "connected", "version": "1.0.0"}
            await self.send_json(
                connected | ({"protocol": "Call"} if self.carrier == "twilio" else {})
            )
        if start:
            await self.send_json(self.start_frame())
        if pump:
            self._tasks.append(asyncio.create_task(self._tick()))

    def start_frame(self) -> dict[str, Any]:
        if self.carrier == "twilio":
            params = {"token": self.token} if self.token is not None else {}
            fmt = self.media_format or {
                "encoding": "audio/x-mulaw",
                "sampleRate": 8000,
                "channels": 1,
            }
            body = {
                "accountSid": "AC" + "0" * 32,
                "streamSid": self.stream_id,
                "callSid": self.call_id,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": fmt,
            }
            return {"event": "start", "streamSid": self.stream_id, "start": body}
        if self.carrier == "telnyx":
            fmt = self.media_format or {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}
            body = {
                "user_id": "u1",
                "call_control_id": self.call_id,
                "call_session_id": "s1",
                "custom_parameters": {},
                "media_format": fmt,
            }
            return {"event": "start", "start": body, "stream_id": self.stream_id}
        fmt = self.media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000}
        body = {
            "callId": self.call_id,
            "streamId": self.stream_id,
            "accountId": "MA1",
            "tracks": ["inbound"],
            "mediaFormat": fmt,
        }
        return {"event": "start", "start": body, "extra_headers": "{}"}

    async def send_json(self, frame: dict[str, Any]) -> None:
        self._seq += 1
        counter = {
            "twilio": {"sequenceNumber": str(self._seq)},
            "telnyx": {"sequence_number": str(self._seq)},
            "plivo": {"sequenceNumber": self._seq},
        }[self.carrier]
        await self.send_text(
            json.dumps({**frame, **(counter if frame["event"] != "connected" else {})})
        )

    async def send_text(self, text: str) -> None:
        assert self._ws is not None
        await self._ws.send(text)

    async def media(self, payload: bytes) -> None:
        self._chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self._chunk),
            "timestamp": str((self._chunk - 1) * 20),
            "payload": base64.b64encode(payload).decode(),
        }
        frame: dict[str, Any] = {"event": "media", "media": media}
        if self.carrier == "twilio":
            frame["streamSid"] = self.stream_id
        elif self.carrier == "telnyx":
            frame["stream_id"] = self.stream_id
        else:
            frame["streamId"] = self.stream_id
        await self.send_json(frame)

    async def stop(self) -> None:
        """The carrier ends the stream (Plivo has no stop frame: it just closes)."""
        if self.carrier == "twilio":
            await self.send_json({"event": "stop", "streamSid": self.stream_id, "stop": {}})
        elif self.carrier == "telnyx":
            await self.send_json({"event": "stop", "stop": {}, "stream_id": self.stream_id})
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close()

    def talk(self, frames: list[bytes]) -> None:
        self._speech.extend(frames)

    # ------------------------------------------------------------------ what the app sends

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                self.received.append(Received(time.monotonic(), frame["event"], frame))
                await self._handle(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            self.closed.set()
            self._changed.set()

    async def _handle(self, frame: dict[str, Any]) -> None:
        event = frame["event"]
        if event in ("media", "playAudio"):
            self._playout.append(base64.b64decode(frame["media"]["payload"]))
        elif event in ("mark", "checkpoint"):
            name = frame["mark"]["name"] if event == "mark" else frame["name"]
            self._playout.append(_Mark(name))
            await self._return_marks()
        elif event in ("clear", "clearAudio"):
            dropped = [item for item in self._playout if isinstance(item, _Mark)]
            self._playout.clear()
            if self.carrier == "plivo":
                await self.send_json({"event": "clearedAudio", "streamId": self.stream_id})
            else:
                for mark in dropped:
                    await self._ack(mark.name)

    async def _ack(self, name: str) -> None:
        if self.carrier == "plivo":
            await self.send_json(
                {"event": "playedStream", "streamId": self.stream_id, "name": name}
            )
        elif self.carrier == "twilio":
            await self.send_json(
                {"event": "mark", "streamSid": self.stream_id, "mark": {"name": name}}
            )
        else:
            await self.send_json(
                {"event": "mark", "stream_id": self.stream_id, "mark": {"name": name}}
            )

    async def _return_marks(self) -> None:
        while self._playout and isinstance(self._playout[0], _Mark):
            mark = self._playout.popleft()
            assert isinstance(mark, _Mark)
            await self._ack(mark.name)

    async def _tick(self) -> None:
        """20 ms a tick: send one caller frame, play one of the app's."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                tick += 1
                if self._speech:
                    if self.first_loud_sent_at is None:
                        self.first_loud_sent_at = time.monotonic()
                    await self.media(self._speech.popleft())
                else:
                    await self.media(SILENT)
                await self._return_marks()
                if self._playout:
                    head = self._playout.popleft()
                    assert isinstance(head, bytes)
                    self.played.extend(head)
                    await self._return_marks()
                await asyncio.sleep(max(0.0, start + tick * 0.020 - loop.time()))

    # ------------------------------------------------------------------ for assertions

    def of(self, *events: str) -> list[Received]:
        return [r for r in self.received if r.event in events]

    def media_frames(self) -> list[Received]:
        return self.of("media", "playAudio")

    def clears(self) -> list[Received]:
        return self.of("clear", "clearAudio")

    async def wait(self, check: Any, timeout: float = 5) -> None:
        """Until `check()` holds, woken by each frame received (an event, not polling)."""
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()
