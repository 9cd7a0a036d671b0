"""Plivo's audio stream (`<Stream>`): the emulator dials the app's WebSocket and streams the call.

Frames (docs/carriers.md §3.5; field types as in Plivo's own stream SDK models):
  to the app   start        {"event","sequenceNumber":1,"start":{"callId","streamId","accountId",
                             "tracks","mediaFormat":{"encoding","sampleRate"}},"extra_headers"}
               media        {"event","sequenceNumber","streamId","media":{"track","timestamp",
                             "chunk","payload"},"extra_headers"}, one 20 ms frame per tick
               playedStream {"event","sequenceNumber","streamId","name"}: a checkpoint's audio
                             has played
               clearedAudio {"event","sequenceNumber","streamId"}
  from the app playAudio {"event","media":{"contentType","sampleRate","payload"}},
               checkpoint {"event","streamId","name"}, clearAudio {"event","streamId"}, sendDTMF.

The callee speaks after it has heard the bot: once the app's audio has played and the line has
then been quiet for `UTTERANCE_GAP_FRAMES`, the callee "hears" `[audio N ms]` and, after its
reply delay, its next line is sent as speech audio (`voice.speech_audio`); the text is in
`callee.said` and, once its audio is queued, `call.extra["said_via_stream"]`, for the fake
speech-to-text service. Everything the app played is kept, µ-law, in `call.extra["heard_audio"]`;
the StreamLog notes when each app frame arrived (monotonic clock) and each playAudio's size, so
tests can check the app's pacing and how fast it stops on a barge-in.

A stream with keepCallAlive="true" holds the XML until the socket closes (a transfer closes it);
one without runs alongside the rest of the XML until the call ends.

[M] Not confirmed, chosen as most likely: `extra_headers` is a `"{k: v}"` string, `timestamp` is
epoch milliseconds as a string (advancing 20 ms a frame in carrier time), L16 is little-endian,
no `stop` frame is sent (the socket is just closed when the call or stream ends), a clearAudio
drops pending checkpoints without acknowledging them, and the stream status callback carries the
call's standard params plus `Event`, `StreamID`, `ServiceURL` and `Timestamp`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE, frames, pcm16_to_ulaw, ulaw_to_pcm16
from voice_call.sim.plivo.call import PlivoLeg, Target, cdr_time, party_hangup
from voice_call.sim.plivo.webhooks import PlivoHooks
from voice_call.sim.voice import speech_audio

FRAME_S = 0.020
UTTERANCE_GAP_FRAMES = 15  # 300 ms of quiet after the bot's audio ends its turn
DEFAULT_CONTENT_TYPE = "audio/x-l16;rate=8000"  # [S] Plivo's default
SILENT_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES


def _flag(text: str | None) -> bool:
    return (text or "").strip().lower() == "true"


@dataclass
class StreamLog:
    """What one stream did, for tests: kept in `call.extra["streams"]`."""

    stream_id: str
    url: str
    bidirectional: bool
    content_type: str
    sent_frames: int = 0
    played_frames: int = 0
    checkpoints: list[str] = field(default_factory=list)  # names acknowledged, in order
    cleared: int = 0
    received: list[str] = field(default_factory=list)  # event names the app sent
    received_at: list[float] = field(default_factory=list)  # their arrival, time.monotonic()
    audio_sizes: list[int] = field(default_factory=list)  # µ-law bytes of each playAudio
    error: str | None = None
    closed_by: str | None = None  # "app" | "call" | "timeout" | "transfer" | "error"


def _to_ulaw(raw: bytes, content_type: str, rate: int) -> bytes:
    """An app's playAudio payload as 8 kHz µ-law."""
    if "l16" not in content_type.lower():
        return raw
    pcm = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2")
    if rate == 16000:
        pcm = pcm[::2]
    return pcm16_to_ulaw(pcm.astype(np.int16))


class PlivoStreamClient:
    """The emulator's side of one `<Stream>`: it dials the app's WebSocket as Plivo does."""

    def __init__(self, leg: PlivoLeg, element: ET.Element, hooks: PlivoHooks) -> None:
        self.leg = leg
        self.hooks = hooks
        self.url = (element.text or "").strip()
        self.bidirectional = _flag(element.get("bidirectional"))
        self.keep_call_alive = _flag(element.get("keepCallAlive"))
        track = (element.get("audioTrack") or "inbound").lower()
        self.tracks = ["inbound", "outbound"] if track == "both" else [track]
        self.timeout_s = float(element.get("streamTimeout") or 86400)
        content_type = element.get("contentType") or DEFAULT_CONTENT_TYPE
        self.encoding = content_type.split(";")[0].strip().lower()
        self.rate = 16000 if "rate=16000" in content_type.replace(" ", "") else 8000
        status_url = element.get("statusCallbackUrl")
        method = (element.get("statusCallbackMethod") or "POST").upper()
        self.status_route = Target(status_url, method) if status_url else None
        pairs = [
            p.split("=", 1) for p in (element.get("extraHeaders") or "").split(",") if "=" in p
        ]
        self.extra_headers = "{" + ", ".join(f"{k.strip()}: {v.strip()}" for k, v in pairs) + "}"
        self.log = StreamLog(str(uuid.uuid4()), self.url, self.bidirectional, content_type)
        leg.call.extra.setdefault("streams", []).append(self.log)
        self._closing: asyncio.Event = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sequence = 0
        self._chunks: dict[str, int] = {}  # per track
        self._started_ms = int(time.time() * 1000)
        self._play = bytearray()  # the app's audio still to play, µ-law 8 kHz
        self._queued = 0  # bytes ever queued for playing (less what clearAudio dropped)
        self._played = 0
        self._checkpoints: deque[tuple[int, str]] = deque()
        self._turn_bytes = 0  # bot audio played since the callee last heard a turn
        self._quiet_frames = 0
        self._speech: deque[bytes] = deque()  # the callee's words, µ-law frames
        self._tasks: list[asyncio.Task[None]] = []

    def close(self, why: str) -> None:
        if self.log.closed_by is None:
            self.log.closed_by = why
        self._closing.set()

    async def run(self) -> None:
        try:
            ws = await connect(self.url, open_timeout=10, max_size=2**22)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            self.log.error = f"{type(exc).__name__}: {exc}"
            self.log.closed_by = "error"
            await self._status("DroppedStream")
            return
        await self._status("StartStream")
        try:
            await self._send(ws, self._start_frame())
            await self._serve(ws)
        except ConnectionClosed:
            self.close("app")
        finally:
            for task in self._tasks:
                task.cancel()
            await ws.close()
        await self._status("StopStream")

    async def _serve(self, ws: ClientConnection) -> None:
        receiving = asyncio.create_task(self._receive(ws))
        pumping = asyncio.create_task(self._pump(ws))
        ended = asyncio.create_task(self.leg.stop.wait())
        closing = asyncio.create_task(self._closing.wait())
        watched = {receiving, pumping, ended, closing}
        timeout = self.timeout_s * self.leg.time_scale
        done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in watched:
            task.cancel()
        for task in watched:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
        if not done:
            self.close("timeout")
        elif ended in done:
            self.close("call")
        else:
            self.close("app")  # the app closed the socket (or `close` already said why)

    def _start_frame(self) -> dict[str, Any]:
        encoding = "audio/x-mulaw" if "mulaw" in self.encoding else "audio/x-l16"
        return {
            "event": "start",
            "start": {
                "callId": self.leg.id,
                "streamId": self.log.stream_id,
                "accountId": self.leg.account_id,
                "tracks": self.tracks,
                "mediaFormat": {"encoding": encoding, "sampleRate": self.rate},
            },
            "extra_headers": self.extra_headers,
        }

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            self._sequence += 1
            await ws.send(json.dumps({"sequenceNumber": self._sequence, **frame}))

    def _encode(self, ulaw: bytes) -> bytes:
        if "mulaw" in self.encoding:
            return ulaw
        pcm = ulaw_to_pcm16(ulaw)
        if self.rate == 16000:
            pcm = np.repeat(pcm, 2)
        return pcm.astype("<i2").tobytes()

    async def _send_media(self, ws: ClientConnection, track: str, ulaw: bytes) -> None:
        chunk = self._chunks[track] = self._chunks.get(track, 0) + 1
        await self._send(
            ws,
            {
                "event": "media",
                "streamId": self.log.stream_id,
                "media": {
                    "track": track,
                    "timestamp": str(self._started_ms + (chunk - 1) * 20),
                    "chunk": chunk,
                    "payload": base64.b64encode(self._encode(ulaw)).decode("ascii"),
                },
                "extra_headers": self.extra_headers,
            },
        )
        self.log.sent_frames += 1

    async def _pump(self, ws: ClientConnection) -> None:
        """One tick per 20 ms of carrier time: send a caller frame, play one of the app's."""
        loop = asyncio.get_running_loop()
        interval = FRAME_S * self.leg.time_scale
        start = loop.time()
        tick = 0
        while True:
            tick += 1
            if "inbound" in self.tracks:
                speech = self._speech.popleft() if self._speech else SILENT_FRAME
                await self._send_media(ws, "inbound", speech)
            played = await self._play_frame(ws)
            if played is not None and "outbound" in self.tracks:
                await self._send_media(ws, "outbound", played)
            await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))

    async def _play_frame(self, ws: ClientConnection) -> bytes | None:
        if not self._play:
            if self._turn_bytes:
                self._quiet_frames += 1
                if self._quiet_frames >= UTTERANCE_GAP_FRAMES:
                    self._end_of_turn()
            return None
        frame = bytes(self._play[:FRAME_BYTES])
        del self._play[:FRAME_BYTES]
        self._played += len(frame)
        self._turn_bytes += len(frame)
        self._quiet_frames = 0
        self.log.played_frames += 1
        self.leg.call.extra["heard_audio"].extend(frame)
        while self._checkpoints and self._checkpoints[0][0] <= self._played:
            await self._played_stream(ws, self._checkpoints.popleft()[1])
        return frame

    def _end_of_turn(self) -> None:
        callee = self.leg.call.callee
        heard_ms = self._turn_bytes * 1000 // 8000
        self._turn_bytes = 0
        self._quiet_frames = 0
        if callee.hear(f"[audio {heard_ms} ms]"):
            callee.hung_up = True
            self.leg.end(party_hangup(self.leg.call.direction))
            return
        self._tasks.append(asyncio.create_task(self._reply()))

    async def _reply(self) -> None:
        callee = self.leg.call.callee
        await asyncio.sleep(callee.script.reply_delay_ms / 1000 * self.leg.time_scale)
        line = callee.next_line()
        if line is not None:
            audio = await asyncio.to_thread(speech_audio, line)  # espeak-ng may take a while
            self.leg.call.extra.setdefault("said_via_stream", []).append(line)
            self._speech.extend(frames(audio))

    async def _played_stream(self, ws: ClientConnection, name: str) -> None:
        self.log.checkpoints.append(name)
        await self._send(
            ws, {"event": "playedStream", "streamId": self.log.stream_id, "name": name}
        )

    async def _receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            self.log.received_at.append(time.monotonic())
            try:
                data = json.loads(message)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.log.received.append("<invalid>")
                continue
            event = str(data.get("event")) if isinstance(data, dict) else "<invalid>"
            self.log.received.append(event)
            if self.bidirectional and isinstance(data, dict):
                await self._handle(ws, event, data)

    async def _handle(self, ws: ClientConnection, event: str, data: dict[str, Any]) -> None:
        if event == "playAudio":
            media = data.get("media") or {}
            try:
                raw = base64.b64decode(str(media.get("payload", "")), validate=True)
            except (binascii.Error, ValueError):
                return
            content_type = str(media.get("contentType") or "audio/x-mulaw")
            audio = _to_ulaw(raw, content_type, int(media.get("sampleRate") or 8000))
            self.log.audio_sizes.append(len(audio))
            self._play.extend(audio)
            self._queued += len(audio)
        elif event == "checkpoint":
            name = str(data.get("name", ""))
            if self._queued <= self._played:
                await self._played_stream(ws, name)  # nothing pending: played already
            else:
                self._checkpoints.append((self._queued, name))
        elif event == "clearAudio":
            self._play.clear()
            self._queued = self._played
            self._checkpoints.clear()
            self.log.cleared += 1
            await self._send(ws, {"event": "clearedAudio", "streamId": self.log.stream_id})
        elif event == "sendDTMF":
            self.leg.call.extra.setdefault("sent_dtmf", []).append(str(data.get("dtmf", "")))

    async def _status(self, event: str) -> None:
        if self.status_route is None:
            return
        params = self.leg.params(self.leg.call.status, event) | {
            "StreamID": self.log.stream_id,
            "ServiceURL": self.url,
            "Timestamp": cdr_time(time.time()) or "",
        }
        if self.log.error:
            params["Error"] = self.log.error
        await self.hooks.send("stream", self.status_route, params)
