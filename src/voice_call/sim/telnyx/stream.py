"""Telnyx media streaming over WebSocket: the emulator dials the app's `stream_url`.

Frames out (docs/carriers.md §2.4 and the Telnyx AsyncAPI page): `connected`, `start` (with
`media_format` PCMU/8000/1), `media` every 20 ms, `dtmf`, `mark`, `error`, `stop`. Field names are
snake_case and counters are strings, as in the documented `start` example. The `media`, `dtmf`,
`mark`, `error` and `stop` bodies are not shown in full anywhere we could read [M]:
  media  {"event","sequence_number","stream_id","media":{"track","chunk","timestamp","payload"}}
  dtmf   {"event","sequence_number","stream_id","occurred_at","dtmf":{"digit"}}
  mark   {"event","sequence_number","stream_id","mark":{"name"}}
  error  {"event","sequence_number","stream_id","payload":{"code","title","detail"}}
  stop   {"event","sequence_number","stream_id","stop":{"user_id","call_control_id"}}
Frames in: `media` (`{"media":{"payload"}}`: µ-law in RTP mode, an MP3 file in mp3 mode),
`mark`, `clear`. App audio is "played" to the callee at real-time pace (scaled): a mark comes back
once the audio before it has played, `clear` drops queued audio and returns queued marks. Every
frame the app sends is logged with its arrival time (`AppFrame`), so tests can check its pacing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voice_call.audio.g711 import FRAME_BYTES, FRAME_MS, SILENCE_BYTE
from voice_call.sim.common import AppFrame
from voice_call.sim.telnyx.webhooks import iso_now

log = logging.getLogger(__name__)

SILENCE = bytes([SILENCE_BYTE]) * FRAME_BYTES
# The bot's turn is over once its audio has been silent this long (a pause, not a jitter gap).
END_OF_TURN_FRAMES = 15  # 300 ms of call time
# ...and at least this long in real time, so that loopback jitter between two chunks of one
# utterance does not split it in two when time_scale makes 300 ms a few milliseconds.
END_OF_TURN_MIN_REAL_S = 0.1


@dataclass(frozen=True)
class StreamParams:
    url: str
    track: str = "inbound_track"  # inbound_track | outbound_track | both_tracks
    bidirectional_mode: str | None = None  # "rtp" | "mp3" (Telnyx treats absent as mp3 [S])
    codec: str = "PCMU"
    custom_parameters: dict[str, str] = field(default_factory=dict)
    auth_token: str | None = None


@dataclass(frozen=True)
class CallInfo:
    user_id: str
    call_control_id: str
    call_session_id: str
    from_number: str
    to_number: str
    client_state: str | None


@dataclass
class _QueuedMark:
    name: str


class StreamListener:
    """What the stream tells the call about the app's audio (override what you need)."""

    def playout_started(self) -> None: ...

    def playout_ended(self, played_ms: int, interrupted: bool) -> None: ...

    def mp3_received(self, size: int) -> None: ...


class TelnyxMediaStream:
    def __init__(
        self,
        params: StreamParams,
        info: CallInfo,
        listener: StreamListener,
        audio_in: bytearray,
        *,
        time_scale: float,
        send_silence: bool,
        mp3_in: list[bytes] | None = None,
        frames_in: list[AppFrame] | None = None,
    ) -> None:
        self.params = params
        self.info = info
        self.listener = listener
        self.audio_in = audio_in  # every µ-law byte the callee heard from the app
        self.mp3_in = mp3_in if mp3_in is not None else []
        self.frames_in = frames_in if frames_in is not None else []
        self.time_scale = time_scale
        self.send_silence = send_silence
        self.stream_id = str(uuid.uuid4())
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._sequence = 0
        self._chunks = {"inbound": 0, "outbound": 0}
        self._ticks = 0
        self._playout: deque[bytes | _QueuedMark] = deque()
        self._played_ms = 0  # of the bot turn being played
        self._quiet_frames = 0
        self._last_audio_at = 0.0  # loop time the app's audio last arrived or played
        self._speech = bytearray()  # the callee's audio still to send
        self._speech_done: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pacing = False
        self.closed = False

    @property
    def sends_inbound(self) -> bool:
        return self.params.track in ("inbound_track", "both_tracks")

    @property
    def bot_playing(self) -> bool:
        return self._played_ms > 0 or any(isinstance(i, bytes) for i in self._playout)

    async def wait_closed(self) -> tuple[int | None, str | None]:
        """Once the socket has closed: its close code and reason (the app refusing it: 1008)."""
        if self._ws is None:
            return None, None
        await self._ws.wait_closed()
        return self._ws.close_code, self._ws.close_reason

    async def open(self) -> None:
        """Connect and send `connected` + `start`; raises OSError/WebSocketException on failure."""
        headers = {}
        if self.params.auth_token:
            headers["x-telnyx-streaming-auth-token"] = self.params.auth_token
        self._ws = await connect(
            self.params.url, additional_headers=headers, proxy=None, open_timeout=5, close_timeout=2
        )
        try:
            await self._greet()
        except BaseException:
            await self._ws.close()
            raise
        self._pacing = True
        self._tasks = [asyncio.create_task(self._pace()), asyncio.create_task(self._receive())]

    async def _greet(self) -> None:
        connected: dict[str, Any] = {"event": "connected", "version": "1.0.0"}
        if self.params.auth_token:
            connected["x-telnyx-streaming-auth-token"] = self.params.auth_token
        await self._send(connected, numbered=False)
        await self._send(
            {
                "event": "start",
                "start": {
                    "user_id": self.info.user_id,
                    "call_control_id": self.info.call_control_id,
                    "call_session_id": self.info.call_session_id,
                    "from": self.info.from_number,
                    "to": self.info.to_number,
                    "client_state": self.info.client_state,
                    "custom_parameters": self.params.custom_parameters,
                    "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
                },
            }
        )

    async def speak(self, audio: bytes) -> None:
        """Send the callee's audio on the inbound track; returns once the last frame went out."""
        if self.closed or not self.sends_inbound or not self._pacing:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._speech.extend(audio)
        self._speech_done.append((len(self._speech), done))
        await done

    async def send_dtmf(self, digit: str) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self._send({"event": "dtmf", "occurred_at": iso_now(), "dtmf": {"digit": digit}})

    async def close(self) -> None:
        """Send `stop` and close the socket (what Telnyx does on streaming_stop or hang-up)."""
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._release_speech(everything=True)
        with contextlib.suppress(ConnectionClosed, OSError):
            await self._send(
                {
                    "event": "stop",
                    "stop": {
                        "user_id": self.info.user_id,
                        "call_control_id": self.info.call_control_id,
                    },
                }
            )
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close()

    # -- sending ---------------------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any], numbered: bool = True) -> None:
        if self._ws is None:
            return
        async with self._send_lock:
            if numbered:
                self._sequence += 1
                frame = {
                    "event": frame["event"],
                    "sequence_number": str(self._sequence),
                    **{k: v for k, v in frame.items() if k != "event"},
                    "stream_id": self.stream_id,
                }
            await self._ws.send(json.dumps(frame))

    async def _send_media(self, track: str, payload: bytes) -> None:
        self._chunks[track] += 1
        await self._send(
            {
                "event": "media",
                "media": {
                    "track": track,
                    "chunk": str(self._chunks[track]),
                    "timestamp": str(self._ticks * FRAME_MS),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
            }
        )

    async def _pace(self) -> None:
        """One 20 ms tick per (20 ms x time_scale): play the app's audio, send the callee's."""
        loop = asyncio.get_running_loop()
        interval = FRAME_MS / 1000 * self.time_scale
        next_at = loop.time()
        try:
            while True:
                await self._tick()
                next_at += interval
                delay = next_at - loop.time()
                if delay < -0.2:  # far behind (a loaded machine): do not burst to catch up
                    next_at = loop.time()
                await asyncio.sleep(max(delay, 0))
        except ConnectionClosed:  # the app closed the socket
            self._pacing = False
            self._release_speech(everything=True)

    async def _tick(self) -> None:
        self._ticks += 1
        await self._return_leading_marks()
        played = self._pop_playout_frame()
        if played:
            if self._played_ms == 0:
                self.listener.playout_started()
            self.audio_in.extend(played)
            self._played_ms += FRAME_MS
            self._quiet_frames = 0
            self._last_audio_at = asyncio.get_running_loop().time()
            if self.params.track in ("outbound_track", "both_tracks"):
                await self._send_media("outbound", played)
        elif self._played_ms:
            self._quiet_frames += 1
            quiet_s = asyncio.get_running_loop().time() - self._last_audio_at
            if self._quiet_frames >= END_OF_TURN_FRAMES and quiet_s >= END_OF_TURN_MIN_REAL_S:
                self._end_turn(interrupted=False)
        if self.sends_inbound:
            frame = bytes(self._speech[:FRAME_BYTES])
            if frame:
                del self._speech[:FRAME_BYTES]
                frame += SILENCE[len(frame) :]
                for i, (end, fut) in enumerate(self._speech_done):
                    self._speech_done[i] = (end - FRAME_BYTES, fut)
                await self._send_media("inbound", frame)
                self._release_speech()
            elif self.send_silence:
                await self._send_media("inbound", SILENCE)

    def _release_speech(self, everything: bool = False) -> None:
        keep = []
        for end, fut in self._speech_done:
            if everything or end <= 0:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((end, fut))
        self._speech_done = keep

    def _pop_playout_frame(self) -> bytes:
        frame = bytearray()
        while self._playout and len(frame) < FRAME_BYTES:
            head = self._playout[0]
            if isinstance(head, _QueuedMark):
                break
            take = head[: FRAME_BYTES - len(frame)]
            frame.extend(take)
            rest = head[len(take) :]
            if rest:
                self._playout[0] = rest
            else:
                self._playout.popleft()
        return bytes(frame)

    async def _return_leading_marks(self) -> None:
        while self._playout and isinstance(self._playout[0], _QueuedMark):
            mark = self._playout.popleft()
            assert isinstance(mark, _QueuedMark)
            await self._send({"event": "mark", "mark": {"name": mark.name}})

    def _end_turn(self, interrupted: bool) -> None:
        played, self._played_ms, self._quiet_frames = self._played_ms, 0, 0
        self.listener.playout_ended(played, interrupted)

    # -- receiving -------------------------------------------------------------------------------

    async def _receive(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in self._ws:
                await self._handle(message)

    async def _handle(self, message: str | bytes) -> None:
        arrived = asyncio.get_running_loop().time()
        try:
            frame = json.loads(message)
            event = frame["event"]
        except (ValueError, TypeError, KeyError):
            await self._error("100003", "malformed_frame", "Frame is not a JSON object with event")
            return
        if event == "media":
            await self._on_media(frame.get("media") or {}, arrived)
            return
        self.frames_in.append(AppFrame(arrived, str(event)))
        if event == "mark":
            name = str((frame.get("mark") or {}).get("name", ""))
            if any(isinstance(i, bytes) for i in self._playout):
                self._playout.append(_QueuedMark(name))
            else:  # nothing playing or queued: the mark comes straight back
                await self._send({"event": "mark", "mark": {"name": name}})
        elif event == "clear":
            # Playback stops at once; then the marks that were waiting come back.
            marks = [i for i in self._playout if isinstance(i, _QueuedMark)]
            self._playout.clear()
            if self._played_ms:
                self._end_turn(interrupted=True)
            for mark in marks:
                await self._send({"event": "mark", "mark": {"name": mark.name}})
        else:
            log.debug("telnyx stream: ignoring %r frame", event)

    async def _on_media(self, media: dict[str, Any], arrived: float) -> None:
        try:
            payload = base64.b64decode(str(media.get("payload", "")), validate=True)
        except (binascii.Error, ValueError):
            await self._error("100004", "invalid_media", "media.payload is not base64")
            return
        self.frames_in.append(AppFrame(arrived, "media", len(payload)))
        if not payload:
            return
        if self.params.bidirectional_mode == "rtp":
            self._playout.append(payload)
            self._last_audio_at = asyncio.get_running_loop().time()
        else:
            # mp3 mode: we cannot decode MP3, so the callee "hears" the file as soon as it arrives.
            self.mp3_in.append(payload)
            self.listener.mp3_received(len(payload))

    async def _error(self, code: str, title: str, detail: str) -> None:
        # Error codes and the payload shape are not documented in what we could read [M].
        await self._send(
            {"event": "error", "payload": {"code": code, "title": title, "detail": detail}}
        )
