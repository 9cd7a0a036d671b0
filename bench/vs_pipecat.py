"""`vs_pipecat`: the `streams` load against our server and against pipecat's, side by side.

The same carrier (`bench/streams.py`'s `Carrier`: N Twilio media sockets, a 20 ms µ-law frame
each way every 20 ms, marks echoed) drives our bench server (`bench/streams_server.py`) and a
pipecat server (`bench/pipecat_server.py`: FastAPI websocket transport, Twilio serializer,
20 ms output chunks, no AI services), each one process pinned to core 0, the carrier on core 1.
Runs are interleaved (ours, pipecat, pipecat lean, ours, ...) so a neighbour's load falls on
every side alike, each level at least `VOICECALL_BENCH_REPEAT` (3) times.

Measured the same way for both, from outside the server:
- lateness at the carrier: each stream's frames are due every 20 ms from the earliest the
  stream has shown it can deliver (a running minimum of arrival − n·20 ms); a frame's lateness
  is how far after that it arrived. A stall of over 200 ms re-anchors the stream (as our pacer
  does), and so does the end of a reply (our server's `.end` mark: it has nothing to say until
  the next reply starts, which begins a new schedule; pipecat's stream never pauses);
- server CPU per media frame, both ways (utime + stime from /proc over the window, divided by
  the frames the carrier received and sent): steadier than lateness on a shared machine;
- memory per stream: the server's RSS at the end of the window minus its RSS with one stream
  talking (a run of its own), divided by N − 1.

pipecat is installed into its own virtualenv under the bench cache (`$VOICECALL_BENCH_CACHE`,
else `$XDG_CACHE_HOME/voice-call-bench`, else `~/.cache/voice-call-bench`) and reused when
there. Knobs: `VOICECALL_BENCH_OURS="100,200,300"` and `VOICECALL_BENCH_PIPECAT="10,20,30,40"`
(levels), `VOICECALL_BENCH_PIPECAT_SETUPS="defaults,lean"`, `VOICECALL_BENCH_WINDOW=10`,
`VOICECALL_BENCH_REPEAT=3`. `--smoke` never installs pipecat (about a minute and 0.5 GB): it
runs a few streams on our side, and on pipecat's only when its virtualenv is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench import streams
from voice_call.media.lateness import LatenessStats

ROOT = streams.ROOT
PIPECAT = ("pipecat-ai[websocket]==1.14.0", "uvicorn==0.54.0")  # uvicorn: the version we run
FRAME_S = 0.020
MAX_BEHIND_S = 0.2  # our pacer's re-anchoring threshold, applied to both sides
TARGET_P99_MS = 20.0
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def cache_dir() -> Path:
    if explicit := os.environ.get("VOICECALL_BENCH_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "voice-call-bench"


def pipecat_venv() -> Path:
    return cache_dir() / ("pipecat-" + PIPECAT[0].split("==")[1])


def pipecat_python(install: bool) -> Path | None:
    """The pipecat virtualenv's Python: reused when it has the pinned packages, else built."""
    venv = pipecat_venv()
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if marker.is_file() and marker.read_text() == "\n".join(PIPECAT):
        return python
    if not install:
        return None
    print(f"installing {' '.join(PIPECAT)} into {venv} (once)", file=sys.stderr, flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *PIPECAT], check=True)
    marker.write_text("\n".join(PIPECAT))
    return python


@dataclass(frozen=True)
class Side:
    name: str
    argv: tuple[str, ...]  # the server's command line, without `--streams N`
    reports: bool = False  # answers `reset` / `report` with its own pacer's lateness (ours)


def ours() -> Side:
    # Replies start at random moments over 2 s, as `python -m bench streams` starts them.
    command = (sys.executable, "-m", "bench.streams_server", "--core", "0", "--spread", "2")
    return Side("ours", command, reports=True)


def pipecat(python: Path, setup: str) -> Side:
    command = (str(python), str(ROOT / "bench" / "pipecat_server.py"), "--core", "0")
    return Side(f"pipecat {setup}", command + (("--lean",) if setup == "lean" else ()))


class StreamClock:
    """One stream's frames at the carrier: how late each is on its own 20 ms schedule."""

    __slots__ = ("anchor", "frames", "n")

    def __init__(self) -> None:
        self.frames = 0  # received since the window began
        self.restart()

    def restart(self) -> None:
        self.anchor: float | None = None
        self.n = 0

    def late(self, now: float) -> float:
        self.frames += 1
        if self.anchor is None:
            self.anchor, self.n = now, 0
            return 0.0
        self.n += 1
        base = now - self.n * FRAME_S
        late = base - self.anchor
        if late < 0 or late > MAX_BEHIND_S:
            self.anchor = base  # earlier than ever (a better schedule), or re-anchored
        return max(0.0, late)


class _Counted:
    """A carrier socket as the ticker sees it: each send counts one media frame sent."""

    def __init__(self, ws: ClientConnection, carrier: TimedCarrier) -> None:
        self.ws = ws
        self.carrier = carrier

    async def send(self, message: str) -> None:
        self.carrier.frames_out += 1
        await self.ws.send(message)

    async def close(self) -> None:
        await self.ws.close()


class TimedCarrier(streams.Carrier):
    """`streams.Carrier`, timing every media frame it receives against its stream's clock."""

    def __init__(self, port: int, calls: list[list[str]]) -> None:
        super().__init__(port, calls)
        self.lateness = LatenessStats()
        self.frames_in = 0  # media frames received from the server
        self.frames_out = 0  # and sent to it
        self.clocks: list[StreamClock] = []

    async def open(self) -> None:
        await super().open()
        # Before the ticker first runs: it sends through these, and they count what it sends.
        self.sockets[:] = [(_Counted(ws, self), media) for ws, media in self.sockets]

    def reset(self) -> None:
        self.lateness = LatenessStats()
        self.frames_in = self.frames_out = 0
        for clock in self.clocks:
            clock.restart()
            clock.frames = 0

    async def _read(self, ws: ClientConnection, sid: str) -> None:
        clock = StreamClock()
        self.clocks.append(clock)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self.received += 1
                head = message[:20]
                if '"media"' in head:  # ours writes `{"event":"media"`, pipecat `{"event": "media"`
                    self.frames_in += 1
                    self.lateness.add(clock.late(loop.time()))
                elif '"mark"' in head:  # Twilio echoes marks once played
                    name = json.loads(message)["mark"]["name"]
                    self.marks += 1
                    reply = {"event": "mark", "streamSid": sid, "mark": {"name": name}}
                    await ws.send(json.dumps(reply))
                    if name.endswith(".end"):
                        clock.restart()  # the reply is over; the next one has its own schedule


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def server_log(side: Side, n: int) -> Path:
    """Where a server's stderr goes (the latest run of each side and level)."""
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{side.name.replace(' ', '-')}-{n}.log"


@contextlib.asynccontextmanager
async def _server(side: Side, n: int) -> Any:
    with server_log(side, n).open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            *side.argv,
            "--streams",
            str(n),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            limit=1 << 24,
        )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        yield proc, ready
        proc.stdin.write(b"quit\n")
        await proc.stdin.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def baseline_rss(side: Side) -> float:
    """The server's RSS with one stream talking: what N streams add is counted from there,
    so start-up, imports and whatever the first connection loads lazily are left out."""
    return float((await measure(side, 1, 1.0, 1.0))["rss"])


async def measure(side: Side, n: int, warmup_s: float, window_s: float) -> dict[str, Any]:
    async with _server(side, n) as (proc, ready):
        carrier = TimedCarrier(ready["port"], ready["calls"])
        try:
            await carrier.open()
            await _all_talking(carrier, n)
            await asyncio.sleep(warmup_s)
            carrier.reset()
            cpu, client, wall = _cpu_s(proc.pid), time.process_time(), time.monotonic()
            await _command(proc, side, "reset")
            await asyncio.sleep(window_s)
            own = await _command(proc, side, "report")
            cpu = _cpu_s(proc.pid) - cpu
            client = time.process_time() - client
            wall = time.monotonic() - wall
            sent = carrier.frames_out
            rss = _rss_mib(proc.pid)
            live = sum(1 for clock in carrier.clocks if clock.frames)
            lateness, frames_in = carrier.lateness, carrier.frames_in
        finally:
            await carrier.close()
    frames = frames_in + sent
    return {
        "live": live,
        "us": cpu * 1e6 / max(1, frames),
        "cpu": cpu / wall,
        "client": client / wall,
        "out/s": frames_in / wall / max(1, n),
        "p50": lateness.percentile(50) * 1000,
        "p99": lateness.percentile(99) * 1000,
        "max": lateness.max * 1000,
        "rss": rss,
        "server p99": own["p99_ms"] if own else None,
    }


async def _all_talking(carrier: TimedCarrier, n: int, timeout_s: float = 60.0) -> None:
    """Until every stream has had a frame (a loaded machine starts pipelines slowly); the
    warm-up and the window start from there. One that never talks shows as not live."""
    deadline = time.monotonic() + timeout_s
    while sum(1 for clock in carrier.clocks if clock.frames) < n:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def _command(proc: asyncio.subprocess.Process, side: Side, line: str) -> dict[str, Any]:
    """Our server's own figures, a cross-check of the carrier's (pipecat keeps none)."""
    if not side.reports:
        return {}
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()
    if line != "report":
        return {}
    reply: dict[str, Any] = json.loads(await proc.stdout.readline())
    return reply


def _levels(name: str, default: str) -> list[int]:
    return [int(n) for n in os.environ.get(name, default).split(",") if n.strip()]


def _schedule(sides: list[tuple[Side, list[int]]], repeat: int) -> Iterator[tuple[Side, int]]:
    """Round after round, one run of each side at its i-th level before any side's next."""
    for _ in range(repeat):
        for i in range(max(len(levels) for _, levels in sides)):
            for side, levels in sides:
                if i < len(levels):
                    yield side, levels[i]


def _row(
    side: Side, n: int, results: list[dict[str, Any] | None], idle: float | None
) -> dict[str, Any]:
    runs = [r for r in results if r is not None]
    failed = len(results) - len(runs)
    row: dict[str, Any] = {
        "server": side.name,
        "streams": n,
        "runs": len(results) if not failed else f"{len(results)} ({failed} failed)",
    }
    if not runs:
        return {**row, "held": "no"}
    # A neighbour on a shared machine only ever makes a run worse: keep the least disturbed,
    # for µs/frame too: a starved server leaves sent frames unread, which flatters its µs/frame.
    best = min(runs, key=lambda r: (r["p99"], r["p50"]))
    us = best["us"]
    per_stream = (
        "-"
        if idle is None
        else f"{statistics.median((r['rss'] - idle) / max(1, n - 1) for r in runs):.2f}"
    )
    return {
        **row,
        "live": best["live"],
        "server µs/frame": f"{us:.1f}",
        "MiB/stream": per_stream,
        "p50 ms": f"{best['p50']:.1f}",
        "p99 ms": f"{best['p99']:.1f}",
        "max ms": f"{best['max']:.0f}",
        "held": "yes"
        if best["p99"] <= TARGET_P99_MS and best["live"] == n and not failed
        else "no",
        "server's own p99 ms": "-" if best["server p99"] is None else f"{best['server p99']:.1f}",
        "server CPU": f"{best['cpu']:.0%}",
        "client CPU": f"{best['client']:.0%}",
        "frames out/s/stream": f"{best['out/s']:.1f}",
    }


COLUMNS = (
    "server", "streams", "live", "runs", "server µs/frame", "MiB/stream", "p50 ms", "p99 ms",
    "max ms", "held", "server's own p99 ms", "server CPU", "client CPU", "frames out/s/stream",
)  # fmt: skip


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pipecat setup: the largest N each side held, µs/frame and MiB/stream there, and the
    ratios. A side that held no level tried is compared at its smallest level, and says so."""

    def pick(name: str) -> tuple[dict[str, Any], str] | None:
        mine = [r for r in rows if r["server"] == name and r.get("live")]
        held = [r for r in mine if r["held"] == "yes"]
        if held:
            return max(held, key=lambda r: r["streams"]), str(max(r["streams"] for r in held))
        return (min(mine, key=lambda r: r["streams"]), "none held") if mine else None

    def ratio(a: str, b: str) -> str:
        try:
            return f"{float(a) / float(b):.1f}×"
        except (ValueError, ZeroDivisionError):  # "-" (not measured) or nothing to divide by
            return "-"

    names = dict.fromkeys(r["server"] for r in rows if r["server"] != "ours")
    summary = []
    base = pick("ours")
    for name in names:
        theirs = pick(name)
        if base is None or theirs is None:
            continue
        (ours_row, ours_held), (their_row, their_held) = base, theirs
        summary.append(
            {
                "server": f"ours vs {name}",
                "streams": f"held {ours_held} vs {their_held}: {ratio(ours_held, their_held)}",
                # pipecat's cost ÷ ours at the largest N each held: "8×" means ours is 8× cheaper.
                "server µs/frame": ratio(their_row["server µs/frame"], ours_row["server µs/frame"]),
                "MiB/stream": ratio(their_row["MiB/stream"], ours_row["MiB/stream"]),
            }
        )
    return summary


async def _run(smoke: bool) -> list[dict[str, Any]]:
    streams._pin(1)
    python = pipecat_python(install=not smoke)
    setups = os.environ.get("VOICECALL_BENCH_PIPECAT_SETUPS", "defaults,lean").split(",")
    ours_levels = _levels("VOICECALL_BENCH_OURS", "100,200,300")
    theirs_levels = _levels("VOICECALL_BENCH_PIPECAT", "10,20,30,40")
    window_s = float(os.environ.get("VOICECALL_BENCH_WINDOW", "10"))
    warmup_s = 3.0
    repeat = max(3, int(os.environ.get("VOICECALL_BENCH_REPEAT", "3")))
    if smoke:
        ours_levels, theirs_levels, window_s, warmup_s, repeat = [4], [4], 1.0, 1.0, 1
    sides = [(ours(), ours_levels)]
    if python is not None:
        sides += [(pipecat(python, setup.strip()), theirs_levels) for setup in setups]
    # The smoke run skips the one-stream baselines (MiB/stream "-"): they double its start-ups.
    idle = {side.name: None if smoke else await baseline_rss(side) for side, _ in sides}
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for side, n in _schedule(sides, repeat):
        try:
            result: dict[str, Any] | None = await measure(side, n, warmup_s, window_s)
        except (OSError, TimeoutError, ConnectionClosed, json.JSONDecodeError) as exc:
            # An overloaded server (or machine) that cannot even take the N sockets: a run
            # that did not hold, not the end of the bench. Its stderr: `server_log(side, n)`.
            result = None
            print(f"{side.name} {n}: failed: {exc!r}", file=sys.stderr, flush=True)
        else:
            print(f"{side.name} {n}: {json.dumps(result)}", file=sys.stderr, flush=True)
        runs.setdefault((side.name, n), []).append(result)
    rows = [
        _row(side, n, runs[side.name, n], idle[side.name]) for side, levels in sides for n in levels
    ]
    rows += _summary(rows)
    if python is None:
        rows.append(
            {"server": "pipecat: not run (no virtualenv: `python -m bench vs_pipecat` makes it)"}
        )
    return [{key: row.get(key, "") for key in COLUMNS} for row in rows]


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(_run(smoke))
