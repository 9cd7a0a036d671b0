"""The server side of the `streams` benchmark: one process, one core, N streamed calls.

Run by `bench/streams.py`, not by hand. It starts a Runtime (mock provider, streaming on, the
in-process fake STT and fake TTS, so only our media path is measured), places N calls, prints
one JSON line with the port and each call's carrier id and stream token, and keeps every
call's media session talking (one long reply after another). Commands on stdin, one per line:
`reset` starts the measuring window, `report` prints its figures as JSON, `profile` does the
same under cProfile (the top functions go to stderr), `quit` stops.

As one of K workers (`bench/streams_workers.py`): `--redis URL` makes it a cluster instance on
that Redis (shared tokenSecret, so any worker admits any call's socket), `--reuse-port --port P`
binds the port the K workers share (SO_REUSEPORT, as `serve --workers` binds it), and
`--worker I/K` places its share of the N calls (every K-th from I). A call's socket lands on
whichever worker the kernel picks: each call is driven by the worker that placed it (its
owner), whose `speak` reaches the worker holding the socket over the cluster channel when that
is another one, as a conversation's replies do. The figures (lateness, frames, CPU) are those
of the streams this worker holds; `report` carries the lateness histogram so the driver can
merge the workers' figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voice_call.config import parse_config
from voice_call.media.lateness import LatenessStats
from voice_call.media.playback import SessionClosed
from voice_call.models import Mode
from voice_call.runtime import Runtime
from voice_call.server import serve as serve_module
from voice_call.server.serve import RunningServer, start_background

REPLY = (
    "Thanks for calling. Your appointment is on Tuesday at three in the afternoon. "
    "Please bring your insurance card and arrive ten minutes early. "
    "If you need to reschedule, just say so now and I will find another time."
)


TOKEN_SECRET = "bench-streams-workers-token-secret-0123456789"
PREFIX = "bench-streams"


def config(streams: int, port: int, redis: str | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {}
    if redis is not None:
        cluster = {"store": {"backend": "redis", "url": redis, "prefix": PREFIX}}
    return {
        **cluster,
        "provider": "mock",
        "serve": {"port": port},
        "maxConcurrentCalls": streams,
        "staleCallReaperSeconds": 0,
        "maxDurationSeconds": 3600,
        "mock": {"answerDelayMs": 0, "silent": True},
        "streaming": {
            "enabled": True,
            "provider": "fake",
            "maxConnections": streams + 16,
            "maxPendingConnections": streams + 16,
            "maxPendingConnectionsPerIp": streams + 16,
            "preStartTimeoutMs": 60_000,
            **({"tokenSecret": TOKEN_SECRET} if redis is not None else {}),
        },
        "tts": {"provider": "fake", "providers": {"fake": {"firstChunkMs": 30, "chunkMs": 200}}},
    }


WAKES = LatenessStats()  # the pacers' own wake-up lateness (the loop's responsiveness)


class GcPauses:
    """How long the cyclic garbage collector stopped the loop, per generation."""

    def __init__(self) -> None:
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.max = [0.0, 0.0, 0.0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        gen, took = info["generation"], time.perf_counter() - self._started
        self.count[gen] += 1
        self.total[gen] += took
        self.max[gen] = max(self.max[gen], took)


GC = GcPauses()


async def keep_talking(runtime: Runtime, call_id: str, offset_s: float, aligned: bool) -> None:
    """One reply after another. The first is the tail of the reply from a random word on, so
    the calls' replies end at independent moments, as real calls' do; `aligned`: the whole reply
    every time, so all N replies end within the start spread of each other, every ~12 s (a
    stress case: N syntheses and their events at once)."""
    session = await runtime.media.wait_for(call_id, 120)  # in a cluster, perhaps a proxy
    text = REPLY
    if not aligned:
        words = REPLY.split()
        text = " ".join(words[random.randrange(len(words)) :])
    if session is not None:
        watch_pacer(session)
        await asyncio.sleep(offset_s)  # calls do not all start talking in the same instant
    while session is not None:
        try:
            await session.speak(text)
        except SessionClosed:
            return
        text = REPLY


def watch_pacer(session: object) -> None:
    """Count the wake-ups of a stream held here (a proxy to another worker's has no pacer)."""
    pacer = getattr(session, "_pacer", None)
    if pacer is not None:
        pacer.stats = WAKES


def sparse(stats: LatenessStats) -> dict[str, Any]:
    """The histogram's non-empty bins, with what `LatenessStats.merge` needs besides."""
    bins = {index: n for index, n in enumerate(stats.counts) if n}
    return {"bins": bins, "count": stats.count, "total": stats.total, "max": stats.max}


class Window:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stats: LatenessStats = runtime.media.stats
        self.reset()

    def reset(self) -> None:
        self.stats.__init__()  # type: ignore[misc]  # the outboxes hold this very object
        WAKES.__init__()  # type: ignore[misc]
        GC.reset()
        for session in self.runtime.media._sessions.values():
            watch_pacer(session)  # the streams held here that another worker drives
        self.cpu = time.process_time()
        self.wall = time.monotonic()
        self.frames = self._frames()
        self.inbound = self._inbound()
        self.audio = self._audio()

    def _audio(self) -> dict[str, int]:
        return {call: s.audio_frames for call, s in self.runtime.media._sessions.items()}

    def _speaking(self) -> int:
        """Streams held here that sent speech in the window (whoever drives them)."""
        return sum(n > self.audio.get(call, 0) for call, n in self._audio().items())

    def _inbound(self) -> int:
        return sum(s.inbound_frames for s in self.runtime.media._sessions.values())

    def _frames(self) -> int:
        sessions = self.runtime.media._sessions.values()
        return sum(s.audio_frames + s.keepalive_frames for s in sessions)

    def report(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        sessions = list(self.runtime.media._sessions.values())
        return {
            "streams": len(sessions),
            "wall_s": wall,
            "cpu_s": time.process_time() - self.cpu,
            "frames": self._frames() - self.frames,
            "written": self.stats.count,
            "p50_ms": self.stats.percentile(50) * 1000,
            "p99_ms": self.stats.percentile(99) * 1000,
            "max_ms": self.stats.max * 1000,
            "gc": {
                "count": GC.count,
                "total_ms": [round(t * 1000) for t in GC.total],
                "max_ms": [round(t * 1000, 1) for t in GC.max],
            },
            "wake_p50_ms": WAKES.percentile(50) * 1000,
            "wake_p99_ms": WAKES.percentile(99) * 1000,
            "resyncs": sum(s._pacer.resyncs for s in sessions),
            "inbound": self._inbound() - self.inbound,
            "speaking": self._speaking(),
            "histogram": sparse(self.stats),
        }


def by_package(stats: pstats.Stats) -> str:
    """Own time summed per package: where a frame's cost goes, ours and the stack's."""
    groups: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (path, _, name), (_, _, own, _, _) in raw.items():
        key = "builtins/C" if path == "~" else path
        for marker in ("voice_call/", "site-packages/", "python3.11/"):
            if marker in path:
                rest = path.split(marker, 1)[1]
                key = marker.rstrip("/") + ":" + rest.split("/")[0].removesuffix(".py")
                break
        if path == "~":
            key = "C: " + name.split(" of ")[0].strip("{}<>")[:40]
        groups[key] = groups.get(key, 0.0) + own
    total = sum(groups.values())
    lines = [
        f"{share / total:6.1%}  {key}"
        for key, share in sorted(groups.items(), key=lambda kv: -kv[1])
    ]
    return "own time by package:\n" + "\n".join(lines[:30])


async def start(runtime: Runtime, reuse_port: bool) -> RunningServer:
    if not reuse_port:
        return await start_background(runtime, announce=False)
    # As a `serve --workers` worker binds: the port shared with the other workers.
    return await serve_module._start(runtime, None, signals=False, announce=False, reuse_port=True)


def share(streams: int, worker: str) -> int:
    """How many of the `streams` calls worker I of K (`I/K`) places: every K-th from I."""
    index, _, count = worker.partition("/")
    return len(range(int(index), streams, int(count)))


async def main(
    streams: int,
    port: int,
    spread_s: float,
    aligned: bool,
    *,
    redis: str | None = None,
    reuse_port: bool = False,
    worker: str = "0/1",
) -> None:
    with tempfile.TemporaryDirectory() as home:
        runtime = Runtime(parse_config(config(streams, port, redis), env={}), Path(home))
        server = await start(runtime, reuse_port)
        try:
            calls = []
            for _ in range(share(streams, worker)):
                record = await runtime.manager.initiate(
                    to="+15555550123", message="Hi", mode=Mode.CONVERSATION
                )
                calls.append(record.call_id)
            await runtime.manager.settle()
            out = []
            talkers = []
            for call_id in calls:
                record = await runtime.store.get(call_id)
                assert record is not None and record.provider_call_id
                out.append([record.provider_call_id, runtime.media.token(call_id)])
                offset_s = random.uniform(0, spread_s)
                talker = keep_talking(runtime, call_id, offset_s, aligned)
                talkers.append(asyncio.create_task(talker))
            print(json.dumps({"port": server.port, "calls": out}), flush=True)
            await commands(runtime)
            for task in talkers:
                task.cancel()
        finally:
            await server.stop()


async def commands(runtime: Runtime) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    window = Window(runtime)
    profiler: cProfile.Profile | None = None
    while line := (await reader.readline()).decode().strip():
        if line == "reset":
            window.reset()
        elif line == "profile":
            profiler = cProfile.Profile()
            profiler.enable()
            window.reset()
        elif line == "report":
            if profiler is not None:
                profiler.disable()
                text = io.StringIO()
                stats = pstats.Stats(profiler, stream=text)
                stats.sort_stats("tottime").print_stats(30)
                print(by_package(stats), file=text)
                print(text.getvalue(), file=sys.stderr, flush=True)
                profiler = None
            print(json.dumps(window.report()), flush=True)
        elif line == "quit":
            return


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--spread", type=float, default=2.0, help="start replies within N s")
    parser.add_argument("--ws", default=None, help="uvicorn's ws implementation (a comparison)")
    parser.add_argument("--aligned", action="store_true", help="all replies end together")
    parser.add_argument("--redis", default=None, help="a cluster instance on this Redis")
    parser.add_argument("--reuse-port", action="store_true", help="share --port (SO_REUSEPORT)")
    parser.add_argument("--worker", default="0/1", help="I/K: place every K-th call from I")
    args = parser.parse_args()
    if args.ws:
        serve_module.WS_PROTOCOL = args.ws
    if args.core is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.core})
    # VOICECALL_BENCH_LOOP=uvloop: the same server on uvloop (not a dependency; a comparison).
    factory = None
    if os.environ.get("VOICECALL_BENCH_LOOP") == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(
            main(
                args.streams,
                args.port,
                args.spread,
                args.aligned,
                redis=args.redis,
                reuse_port=args.reuse_port,
                worker=args.worker,
            )
        )
