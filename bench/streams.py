"""`streams`: N concurrent full-duplex media streams against one server process on one core.

The server (`bench/streams_server.py`) runs in its own process pinned to core 0; this process
plays the carrier, pinned to core 1 when there is one: it opens N Twilio-protocol media sockets,
sends each a 20 ms µ-law frame every 20 ms, reads everything the server sends and echoes its
marks as Twilio would. Every call talks the whole time (one long reply after another), so each
stream carries 50 frames a second each way; each call's first reply starts at a random word of
the reply, so calls finish their replies at independent moments, as real calls do.

Measured in the server over a window after a warm-up: outbound frame lateness (when the frame
was handed to the socket minus when it was due on the pacer's absolute clock) at p50 / p99 /
max, the server's CPU as a share of its one core and per media frame (both ways), and frames
per second both ways.

Environment knobs: `VOICECALL_BENCH_STREAMS="100,500"` (levels), `VOICECALL_BENCH_WINDOW=10`
(seconds), `VOICECALL_BENCH_REPEAT=3` (run each level that often and keep the least disturbed
run: on a shared machine a neighbour only ever makes figures worse), `VOICECALL_BENCH_PROFILE=500`
(profile the server at that level; the top functions and own time per package go to stderr).
Comparisons: `VOICECALL_BENCH_WS=websockets-sansio` (another uvicorn WebSocket implementation:
the media route then takes the plain ASGI path), `VOICECALL_BENCH_LOOP=uvloop` (if importable),
`VOICECALL_BENCH_DEFLATE=1` (the carrier offers permessage-deflate), `VOICECALL_BENCH_ALIGNED=1`
(every call says the whole reply from the start, so all N replies end within 2 s of each other
every ~12 s: N syntheses and their events at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
SILENT_B64 = "/" * 216  # 160 bytes of 0xFF, base64
LEVELS = (50, 100, 200, 300, 400, 500)
PHASES = 10
# Carriers are not known to offer permessage-deflate; VOICECALL_BENCH_DEFLATE=1 offers it.
COMPRESSION: Literal["deflate"] | None = (
    "deflate" if os.environ.get("VOICECALL_BENCH_DEFLATE") == "1" else None
)


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})


class Carrier:
    """All N sockets of the carrier side, driven by one 20 ms ticker."""

    def __init__(self, port: int, calls: list[list[str]]) -> None:
        self.url = f"ws://127.0.0.1:{port}/voice/stream"
        self.calls = calls
        self.sockets: list[tuple[ClientConnection, str]] = []
        self.received = 0
        self.marks = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        for index, (call_sid, token) in enumerate(self.calls):
            sid = f"MZ{index:032x}"
            ws = await connect(self.url, proxy=None, compression=COMPRESSION, max_size=None)
            await ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
            start = {
                "streamSid": sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            await ws.send(json.dumps({"event": "start", "streamSid": sid, "start": start}))
            media = (
                f'{{"event":"media","streamSid":"{sid}","media":{{"track":"inbound",'
                f'"payload":"{SILENT_B64}"}}}}'
            )
            self.sockets.append((ws, media))
            self.tasks.append(asyncio.create_task(self._read(ws, sid)))
        self.tasks.append(asyncio.create_task(self._tick()))

    async def _read(self, ws: ClientConnection, sid: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self.received += 1
                if '"event":"mark"' in message:  # Twilio echoes marks once played
                    name = json.loads(message)["mark"]["name"]
                    self.marks += 1
                    reply = {"event": "mark", "streamSid": sid, "mark": {"name": name}}
                    await ws.send(json.dumps(reply))

    async def _tick(self) -> None:
        """Each socket sends every 20 ms, the sockets spread over 10 phases 2 ms apart: calls
        start at random moments, so a carrier's frames never arrive all at once."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        slots = [self.sockets[phase::PHASES] for phase in range(PHASES)]
        tick = 0
        while True:
            for ws, media in slots[tick % PHASES]:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(media)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.020 / PHASES - loop.time()))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for ws, _ in self.sockets:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.close()


async def _command(server: asyncio.subprocess.Process, line: str) -> dict[str, Any]:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(line.encode() + b"\n")
    await server.stdin.drain()
    if line != "report":
        return {}
    reply: dict[str, Any] = json.loads(await server.stdout.readline())
    return reply


async def level(streams: int, warmup_s: float, window_s: float, profile: bool) -> dict[str, Any]:
    # Replies start at random moments over 2 s (a short smoke run starts them together).
    spread_s = min(2.0, warmup_s * 2 / 3)
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.streams_server",
        "--streams",
        str(streams),
        "--core",
        "0",
        "--spread",
        str(spread_s),
        *(["--ws", ws] if (ws := os.environ.get("VOICECALL_BENCH_WS")) else []),
        *(["--aligned"] if os.environ.get("VOICECALL_BENCH_ALIGNED") == "1" else []),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None if profile else asyncio.subprocess.DEVNULL,
        limit=1 << 24,
    )
    assert server.stdout is not None
    carrier: Carrier | None = None
    try:
        ready = json.loads(await asyncio.wait_for(server.stdout.readline(), 120))
        carrier = Carrier(ready["port"], ready["calls"])
        await carrier.open()
        await asyncio.sleep(warmup_s)
        await _command(server, "profile" if profile else "reset")
        client_cpu, received = time.process_time(), carrier.received
        await asyncio.sleep(window_s)
        report = await _command(server, "report")
        client_cpu = time.process_time() - client_cpu
        received = carrier.received - received
        await _command(server, "quit")
    finally:
        if carrier is not None:
            await carrier.close()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(server.wait(), 20)
        if server.returncode is None:
            server.kill()
            await server.wait()
    wall = report["wall_s"]
    frames = report["written"] + report.get("inbound", 0)
    return {
        "streams": streams,
        "live": report["streams"],
        "frames out/s": round(report["written"] / wall),
        "frames in/s": round(report["inbound"] / wall) if "inbound" in report else "-",
        "lateness p50 ms": round(report["p50_ms"], 2),
        "p99 ms": round(report["p99_ms"], 2),
        "max ms": round(report["max_ms"], 1),
        "pacer wake p50/p99 ms": f"{report['wake_p50_ms']:.1f} / {report['wake_p99_ms']:.1f}",
        "server CPU (1 core)": f"{report['cpu_s'] / wall:.0%}",
        # CPU per media frame, both ways: the per-message cost, steadier than lateness on a
        # shared machine (a neighbour on the core delays frames but does not add to this).
        "server µs/frame": round(report["cpu_s"] * 1e6 / max(1, frames), 1),
        "client CPU": f"{client_cpu / wall:.0%}",
        "resyncs": report["resyncs"],
        "gc max ms": max(report["gc"]["max_ms"]),
        "received/s": round(received / wall),
    }


async def _run(smoke: bool) -> list[dict[str, Any]]:
    _pin(1)
    env_levels = os.environ.get("VOICECALL_BENCH_STREAMS")
    levels = [int(n) for n in env_levels.split(",")] if env_levels else list(LEVELS)
    window_s = float(os.environ.get("VOICECALL_BENCH_WINDOW", "10"))
    warmup_s = 3.0
    if smoke:
        levels, window_s, warmup_s = [4], 1.0, 0.5
    profile_at = int(os.environ.get("VOICECALL_BENCH_PROFILE", "0") or 0)
    repeat = 1 if smoke else max(1, int(os.environ.get("VOICECALL_BENCH_REPEAT", "1")))
    rows = []
    for n in levels:
        runs = [await level(n, warmup_s, window_s, profile=n == profile_at) for _ in range(repeat)]
        # Other work on a shared machine only ever makes a run worse: keep the least disturbed.
        best = min(runs, key=lambda row: (row["p99 ms"], row["lateness p50 ms"]))
        rows.append({**best, "runs": repeat} if repeat > 1 else best)
    return rows


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(_run(smoke))
