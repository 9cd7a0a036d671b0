"""Our media path's own cost per frame, without sockets: `python -m bench.media_path [SECONDS]`.

The `streams` benchmark measures the whole server (kernel, event loop, TTS conversion, ours);
on a shared machine its µs per frame moves by a third from one run to the next. This drives
only our code, in one process, on a hand-run clock: N media sessions play preloaded audio
through the shared ticker, pacer, session, outbox and the direct lane's frame writer into a
transport that drops the bytes (outbound), and one masked Twilio media frame per session per
20 ms goes through the direct lane's frame walk, the feed, the parser and the session
(inbound). It prints CPU µs per frame each way and socket writes per outbound frame.

For counts that no neighbour disturbs, run it under `valgrind --tool=callgrind` at two lengths
and divide the difference in instructions by the difference in frames (startup cancels out).
`VOICECALL_BENCH_STREAMS=200` sessions (default).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from websockets.protocol import State

from voice_call.media.lateness import LatenessStats
from voice_call.media.outbox import Outbox
from voice_call.media.pacer import SlotScheduler
from voice_call.media.session import MediaSession
from voice_call.media.stream_protocols import Start, TwilioStream
from voice_call.models import CallEvent
from voice_call.server import media as media_route
from voice_call.server.fast_ws import FastWebSocketProtocol
from voice_call.speech.stack import Voice
from voice_call.speech.stt.fake import FakeStt
from voice_call.speech.tts.fake import FakeTts


class HandClock:
    """An event loop's clock and timers, run by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._heap: list[tuple[float, int, Callable[..., object], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), callback, args))

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            when, _, callback, args = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            callback(*args)
        self.now = until


class Sink:
    """A transport that counts writes and drops the bytes."""

    writes = 0

    def write(self, data: bytes) -> None:
        Sink.writes += 1


def channel() -> Any:
    """What `FastWebSocketProtocol.send_text_now` reads of its connection: open, writable."""
    writable = asyncio.Event()
    writable.set()
    conn = types.SimpleNamespace(state=State.OPEN, extensions=[], current_size=None)
    return types.SimpleNamespace(
        close_sent=False, disconnected=False, writable=writable, conn=conn, transport=Sink()
    )


def lane(feed: media_route._Feed) -> FastWebSocketProtocol:
    """A direct lane, attached to `feed`, past its handshake (no server around it)."""
    protocol = object.__new__(FastWebSocketProtocol)
    protocol.__dict__.update(
        _inbox=types.SimpleNamespace(sink=feed),
        _lane=True,
        _pending=b"",
        _ws_left=0,
        _tracking=True,
        _given_up=False,
        close_sent=False,
        config=types.SimpleNamespace(ws_max_size=1 << 20),
        conn=types.SimpleNamespace(current_size=None, state=State.OPEN),
    )
    return protocol


def masked_text(text: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(text))
    return bytes((0x81, 0x80 | 126)) + len(text).to_bytes(2, "big") + mask + body


async def _sink(event: CallEvent) -> None:
    pass


async def _never(text: str) -> None:
    raise AssertionError("the direct lane takes every frame")


async def measure(streams: int, seconds: float) -> dict[str, float]:
    clock = HandClock()
    ticker = SlotScheduler(loop=clock)  # type: ignore[arg-type]
    stats = LatenessStats()
    sessions = []
    for n in range(streams):
        protocol = TwilioStream()
        protocol.bind(Start(call_id="CA1", stream_id=f"MZ{n:032x}"))
        wire = channel()
        outbox = Outbox(
            _never,
            try_send=lambda *texts, wire=wire: FastWebSocketProtocol.send_text_now(wire, *texts),
            stats=stats,
            clock=clock.time,
        )
        voice = Voice(FakeTts({}), 5.0)
        session = MediaSession(f"c{n}", protocol, outbox, FakeStt(), voice, _sink, scheduler=ticker)
        await session.stt.connect()
        session.play(b"\x01" * 160 * int(seconds * 60), "audio")
        sessions.append(session)

    writes, started = Sink.writes, time.process_time()
    clock.run(clock.now + seconds)
    out_cpu = time.process_time() - started
    out_frames = sum(s.audio_frames for s in sessions)
    writes = Sink.writes - writes

    route: Any = types.SimpleNamespace(limits=types.SimpleNamespace(max_frame_bytes=65536))
    route._sized = lambda data: media_route.MediaRoute._sized(route, data)
    lanes = []
    for n, session in enumerate(sessions):
        feed = media_route._Feed(route, session.protocol, session)
        feed.ended = asyncio.get_running_loop().create_future()
        text = (
            '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2",'
            f'"timestamp":"5","payload":"{"/" * 216}"}},"streamSid":"MZ{n:032x}"}}'
        )
        lanes.append((lane(feed), masked_text(text.encode())))
    started = time.process_time()
    for _ in range(int(seconds * 50)):
        for walker, frame in lanes:
            walker.data_received(frame)
    in_cpu = time.process_time() - started
    in_frames = sum(s.inbound_frames for s in sessions)
    for session in sessions:
        await session.close()
    return {
        "out µs/frame": round(out_cpu / out_frames * 1e6, 2),
        "in µs/frame": round(in_cpu / in_frames * 1e6, 2),
        "frames out": out_frames,
        "frames in": in_frames,
        "writes per frame out": round(writes / out_frames, 3),
    }


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    streams = int(os.environ.get("VOICECALL_BENCH_STREAMS", "200"))
    print(json.dumps(asyncio.run(measure(streams, seconds)), ensure_ascii=False))


if __name__ == "__main__":
    main()
