"""The server side of the `realtime` benchmarks: one process, one core, N realtime voice calls.

Run by `bench/realtime.py`, not by hand. It starts a Runtime with `realtime.enabled` on the
model service at `--model-url` (the fake model runs in the load process, on the other core),
places N conversation calls, prints one JSON line with the port, the stream path and each
call's carrier id and stream token, and serves their media streams: each one a RealtimeSession
(realtime/bridge.py) built by the media route, as in production. Commands on stdin, one per
line, as bench/streams_server.py: `reset` (answered `{}` once the window has started),
`report`, `profile`, `quit`.

Built on the pieces: the config is checked as a Twilio one (realtime refuses the mock carrier,
which has no streams of its own) and then runs on the mock provider, so no carrier REST API is
needed and the benchmark's own carrier (Twilio protocol) opens the streams with the tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.streams_server import GC, WAKES, by_package
from voice_call.config import Config, parse_config
from voice_call.media.lateness import LatenessStats
from voice_call.models import Mode
from voice_call.realtime.bridge import RealtimeSession
from voice_call.runtime import Runtime

KEY = "bench-model-key"
GREETING = "Hello, this is the clinic calling."


def config(calls: int, provider: str, model_url: str, silence_ms: int) -> Config:
    slots = calls + 16
    options: dict[str, Any] = {"url": model_url, "silenceDurationMs": silence_ms}
    if provider == "google":
        options["apiKey"] = KEY
    else:
        options["vadThreshold"] = 0.3
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": "+15550001000",
        "twilio": {"accountSid": "AC" + "b3" * 16, "authToken": "bench-auth-token"},
        "serve": {"port": 0},
        "publicUrl": "http://127.0.0.1:9/voice/webhook",
        "inboundPolicy": "allowlist",
        "openaiApiKey": KEY,
        "maxConcurrentCalls": calls,
        "staleCallReaperSeconds": 0,
        "maxDurationSeconds": 3600,
        "mock": {"answerDelayMs": 0, "silent": True},
        "streaming": {
            "maxConnections": slots,
            "maxPendingConnections": slots,
            "maxPendingConnectionsPerIp": slots,
            "preStartTimeoutMs": 60_000,
        },
        "realtime": {"enabled": True, "provider": provider, "providers": {provider: options}},
    }
    # Checked as the Twilio config it is, then run on the mock carrier (see the docstring).
    return parse_config(raw, env={}).model_copy(update={"provider": "mock"})


def run_delay() -> float:
    """Seconds this process was ready to run but waited for its core (other work on it):
    what tells a disturbed run from a slow one on a shared machine."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class Window:
    """The measuring window's figures, from the runtime's media registry."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stats: LatenessStats = runtime.media.stats
        self.reset()

    def _sessions(self) -> list[Any]:
        return list(self.runtime.media._sessions.values())

    def reset(self) -> None:
        self.stats.__init__()  # type: ignore[misc]  # the outboxes hold this very object
        WAKES.__init__()  # type: ignore[misc]
        GC.reset()
        self.cpu = time.process_time()
        self.wall = time.monotonic()
        self.waited = run_delay()
        self.inbound = sum(s.inbound_frames for s in self._sessions())

    def report(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        sessions = self._sessions()
        return {
            "streams": len(sessions),
            "wall_s": wall,
            "cpu_s": time.process_time() - self.cpu,
            "waited_s": run_delay() - self.waited,
            "written": self.stats.count,
            "p50_ms": self.stats.percentile(50) * 1000,
            "p99_ms": self.stats.percentile(99) * 1000,
            "max_ms": self.stats.max * 1000,
            "gc_max_ms": max(round(t * 1000, 1) for t in GC.max),
            "wake_p99_ms": WAKES.percentile(99) * 1000,
            "resyncs": sum(s._pacer.resyncs for s in sessions),
            "inbound": sum(s.inbound_frames for s in sessions) - self.inbound,
            "dropped_in": sum(getattr(s.model, "dropped_frames", 0) for s in sessions),
            "voice_to_voice_ms": [ms for s in sessions for ms in s.voice_to_voice_ms],
        }


async def greet(runtime: Runtime, call_id: str) -> None:
    """Once the call's stream is bridged: the model says the greeting (the mock carrier does not
    speak through the stream itself). The pacers' wake-ups go to WAKES, so the media stats hold
    the outboxes' write lateness only, as in bench/streams_server.py."""
    session = await runtime.media.wait_for(call_id, 120)
    if isinstance(session, RealtimeSession):
        session._pacer.stats = WAKES
        session.speak(GREETING)


async def main(calls: int, provider: str, model_url: str, silence_ms: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        runtime = Runtime(config(calls, provider, model_url, silence_ms), Path(home))
        from voice_call.server.serve import start_background

        server = await start_background(runtime, announce=False)
        try:
            ids = []
            for _ in range(calls):
                record = await runtime.manager.initiate(
                    to="+15555550123", message=GREETING, mode=Mode.CONVERSATION
                )
                ids.append(record.call_id)
            await runtime.manager.settle()
            out = []
            watchers = []
            for call_id in ids:
                stored = await runtime.store.get(call_id)
                assert stored is not None and stored.provider_call_id
                out.append([stored.provider_call_id, runtime.media.token(call_id)])
                watchers.append(asyncio.create_task(greet(runtime, call_id)))
            ready = {"port": server.port, "path": runtime.media_stream_path, "calls": out}
            print(json.dumps(ready), flush=True)
            await commands(runtime)
            for task in watchers:
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
            print("{}", flush=True)  # the window starts now, not when the driver asked
        elif line == "profile":
            profiler = cProfile.Profile()
            profiler.enable()
            window.reset()
            print("{}", flush=True)
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


def prime_gemini_downsampler() -> None:
    """A comparison (VOICECALL_BENCH_GEMINI_PRIMED=1), not the product: soxr's streaming
    resampler returns nothing for the first chunk it is fed and hands it out with the second,
    so each Gemini answer's first 40 ms chunk waits for the next one. Fed 2 ms of silence when
    made, it answers the first real chunk at once (with those 2 ms of silence in front)."""
    from voice_call.audio.resample import Resampler
    from voice_call.realtime.providers import google

    class Primed(Resampler):
        def __init__(self, in_rate: int, out_rate: int = 8000, quality: str = "LQ") -> None:
            super().__init__(in_rate, out_rate, quality)
            if in_rate > out_rate:
                self.push(bytes(2 * in_rate // 500))

    setattr(google, "Resampler", Primed)  # noqa: B010 (the provider looks it up there)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--provider", choices=("openai", "google"), required=True)
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--silence-ms", type=int, default=500)
    parser.add_argument("--core", type=int, default=None)
    args = parser.parse_args()
    if args.core is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.core})
    if os.environ.get("VOICECALL_BENCH_GEMINI_PRIMED") == "1":
        prime_gemini_downsampler()
    asyncio.run(main(args.calls, args.provider, args.model_url, args.silence_ms))
