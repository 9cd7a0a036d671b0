"""`streams_workers`: N concurrent media streams into K server processes sharing one port and
one Redis, as `voicecall serve --workers K` runs them, K = 1 and 2.

Each worker is `bench/streams_server.py` (the `streams` benchmark's server: mock provider, fake
STT and TTS, every call talking the whole time) as a cluster instance on one real
`redis-server`, bound to the one port with SO_REUSEPORT; this process holds the port (bound,
not listening, as the `serve --workers` supervisor does) so nothing else takes it. Worker i
places every K-th of the N calls (it owns them). The carrier (`bench.streams.Carrier`, one
process, one 20 ms ticker) opens all N sockets to the one port and the kernel spreads them: a
stream is held by whichever worker accepted its socket, and a call may be owned by the other
one. Each call is driven by its owner, as a conversation's replies are: its `speak` reaches the
worker holding the socket over the cluster channel (Redis) when that is another worker.

Checked, not only timed: every stream live at the end of the window and every one speaking in
it (its holder sent speech, whoever drove it); the calls whose socket landed on a worker that
does not own the call are counted from the cluster's own records in Redis (`owner:` vs
`stream:` keys), so a row with 2 workers shows the routing was exercised (or says that the
kernel happened to put every socket on its call's owner).

Figures over a window after a warm-up, from each worker's `report`: outbound frame lateness
p50 / p99 / max over the workers' merged histograms, frames per second, the workers' CPU per
media frame (all workers' CPU ÷ all frames in and out) and each worker's share of its core,
the Redis commands per second (the cluster's traffic: heartbeats, sweeps, the routed speech
and its holder checks; the busiest commands per second go to stderr) and Redis's CPU share.

Cores: worker i on core i mod cores, Redis on core 0, the carrier on the last core. On a
2-core machine the carrier shares core 1 with worker 1 when K = 2 (and Redis shares core 0
with worker 0): the table measures what a stream costs with 1 and 2 workers and that the
routing works, not how streams scale with cores. `VOICECALL_BENCH_ONE_CORE=1` puts every worker
on core 0 instead (the carrier alone on the last): what splitting one core's streams over
processes costs, without a worker sharing the carrier's core.

Knobs: `VOICECALL_BENCH_STREAMS="100,200"` (levels), `VOICECALL_BENCH_WORKERS="1,2"`,
`VOICECALL_BENCH_WINDOW=10` (seconds), `VOICECALL_BENCH_REPEAT=1` (run each level that often
and keep the least disturbed run), `VOICECALL_BENCH_ONE_CORE=1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine
from bench.cluster import top_commands
from bench.redis_process import RedisCounters, RedisProcess
from bench.streams import ROOT, Carrier
from bench.streams_server import PREFIX
from voice_call.media.lateness import LatenessStats
from voice_call.server.serve import bind_socket

WORKER_COUNTS = (1, 2)
LEVELS = (100, 200)
READY_TIMEOUT_S = 120.0
STDERR_TAIL = 2000


@dataclass(frozen=True)
class Settings:
    counts: list[int]
    levels: list[int]
    window_s: float
    warmup_s: float
    repeat: int

    @classmethod
    def read(cls, smoke: bool) -> Settings:
        if smoke:
            return cls([1, 2], [4], 1.0, 0.5, 1)
        env = os.environ.get
        counts = _numbers(env("VOICECALL_BENCH_WORKERS", ""), WORKER_COUNTS)
        levels = _numbers(env("VOICECALL_BENCH_STREAMS", ""), LEVELS)
        if min(counts) < 1 or min(levels) < 1:
            raise ValueError("VOICECALL_BENCH_WORKERS / _STREAMS: write counts such as 1,2")
        window_s = float(env("VOICECALL_BENCH_WINDOW", "10"))
        repeat = max(1, int(env("VOICECALL_BENCH_REPEAT", "1")))
        return cls(counts, levels, window_s, 3.0, repeat)


def _numbers(text: str, default: Sequence[int]) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()] or list(default)


class Layout:
    """Which core each process gets (see the module docstring)."""

    def __init__(self, shared: bool) -> None:
        self.cores = os.cpu_count() or 1
        self.carrier_core = self.cores - 1 if self.cores > 1 else None
        self.shared = shared  # every worker on core 0

    def worker_core(self, index: int) -> int | None:
        if self.cores == 1:
            return None
        return 0 if self.shared else index % self.cores

    @property
    def redis_core(self) -> int | None:
        return 0 if self.cores > 1 else None

    def describe(self, count: int) -> str:
        workers = "/".join(str(self.worker_core(i)) for i in range(count))
        return f"{workers}, carrier {self.carrier_core}"


class Worker:
    """One `bench.streams_server` process: worker `index` of `count` on the shared port."""

    def __init__(self, index: int, count: int, stderr: Path) -> None:
        self.index = index
        self.count = count
        self.stderr = stderr
        self.proc: asyncio.subprocess.Process | None = None

    async def start(
        self, streams: int, port: int, redis: str, core: int | None, spread_s: float
    ) -> None:
        with self.stderr.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.streams_server",
                *["--streams", str(streams), "--port", str(port), "--reuse-port"],
                *["--redis", redis, "--worker", f"{self.index}/{self.count}"],
                *(["--core", str(core)] if core is not None else []),
                *["--spread", str(spread_s)],
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=1 << 24,
            )

    async def ready(self) -> list[list[str]]:
        """The calls it placed ([carrier call id, stream token] each), once it serves."""
        line = await asyncio.wait_for(self._stdout.readline(), READY_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"worker {self.index} exited at start: {self.tail()}")
        calls: list[list[str]] = json.loads(line)["calls"]
        return calls

    async def command(self, line: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        if line != "report":
            return {}
        reply: dict[str, Any] = json.loads(await self._stdout.readline())
        return reply

    @property
    def _stdout(self) -> asyncio.StreamReader:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr.read_text(errors="replace")[-STDERR_TAIL:]
        return ""

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.command("quit")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 20)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def routed_elsewhere(redis: RedisProcess) -> tuple[int, int]:
    """(calls whose stream another worker than their owner holds, calls with no holder), from
    the cluster's `owner:` and `stream:` records."""
    assert redis.client is not None
    elsewhere = missing = 0
    async for key in redis.client.scan_iter(f"{PREFIX}:owner:*"):
        call_id = key.rsplit(":", 1)[1]
        owner = await redis.client.get(key)
        holder = await redis.client.get(f"{PREFIX}:stream:{call_id}")
        missing += holder is None
        elsewhere += holder is not None and holder != owner
    return elsewhere, missing


def merged(reports: Sequence[dict[str, Any]]) -> LatenessStats:
    """The workers' lateness histograms as one."""
    stats = LatenessStats()
    for report in reports:
        part = LatenessStats()
        histogram = report["histogram"]
        for index, count in histogram["bins"].items():
            part.counts[int(index)] = count
        part.count, part.total, part.max = histogram["count"], histogram["total"], histogram["max"]
        stats.merge(part)
    return stats


async def level(
    count: int, streams: int, settings: Settings, layout: Layout, redis: RedisProcess, tmp: Path
) -> dict[str, Any]:
    await redis.reset()
    spread_s = min(2.0, settings.warmup_s * 2 / 3)  # replies start at random moments
    # The port, held as the supervisor holds it: bound with SO_REUSEPORT, not listening.
    holder = bind_socket("127.0.0.1", 0, reuse_port=True, listen=False)
    port = int(holder.getsockname()[1])
    workers = [Worker(i, count, tmp / f"worker{i}.log") for i in range(count)]
    carrier: Carrier | None = None
    try:
        for worker in workers:
            await worker.start(streams, port, redis.url, layout.worker_core(worker.index), spread_s)
        calls = [call for worker in workers for call in await worker.ready()]
        carrier = Carrier(port, calls)
        await carrier.open()
        await asyncio.sleep(settings.warmup_s)
        redis_before = await redis.counters()
        for worker in workers:
            await worker.command("reset")
        client_cpu = time.process_time()
        await asyncio.sleep(settings.window_s)
        reports = [await worker.command("report") for worker in workers]
        client_cpu = time.process_time() - client_cpu
        redis_used = (await redis.counters()).since(redis_before)
        elsewhere, missing = await routed_elsewhere(redis)
        wall = max(report["wall_s"] for report in reports)
        print(
            f"{count} worker(s), {streams} streams: Redis commands/s: "
            f"{top_commands(redis_used, wall)}",
            file=sys.stderr,
        )
    except BaseException:
        for worker in workers:
            print(f"worker {worker.index} stderr: {worker.tail()}", file=sys.stderr)
        raise
    finally:
        if carrier is not None:
            await carrier.close()
        for worker in workers:
            await worker.stop()
        holder.close()
    return row(count, streams, layout, reports, (elsewhere, missing), redis_used, client_cpu)


def row(
    count: int,
    streams: int,
    layout: Layout,
    reports: Sequence[dict[str, Any]],
    routing: tuple[int, int],
    redis: RedisCounters,
    client_cpu: float,
) -> dict[str, Any]:
    wall = max(report["wall_s"] for report in reports)
    written = sum(report["written"] for report in reports)
    inbound = sum(report["inbound"] for report in reports)
    cpu = [report["cpu_s"] for report in reports]
    lateness = merged(reports)
    elsewhere, missing = routing
    crossed: str | int = elsewhere
    if count > 1 and streams >= 4 and elsewhere == 0:  # the kernel's hash, by chance
        crossed = "0 (every socket landed on its call's owner: no routing exercised)"
    return {
        "workers": count,
        "cores (workers, carrier)": layout.describe(count),
        "streams": streams,
        "live": sum(report["streams"] for report in reports),
        "speaking": sum(report["speaking"] for report in reports),
        "streams per worker": "/".join(str(report["streams"]) for report in reports),
        "held by non-owner": crossed,
        "no holder": missing,
        "frames out/s": round(written / wall),
        "frames in/s": round(inbound / wall),
        "lateness p50 ms": round(lateness.percentile(50) * 1000, 2),
        "p99 ms": round(lateness.percentile(99) * 1000, 2),
        "max ms": round(lateness.max * 1000, 1),
        "server µs/frame": round(sum(cpu) * 1e6 / max(1, written + inbound), 1),
        "CPU per worker (1 core)": " / ".join(f"{c / wall:.0%}" for c in cpu),
        "Redis commands/s": round(redis.commands / wall),
        "Redis CPU": f"{redis.cpu_s / wall:.0%}",
        "carrier CPU": f"{client_cpu / wall:.0%}",
        "resyncs": sum(report["resyncs"] for report in reports),
        "load 1m": f"{os.getloadavg()[0]:.1f}",
    }


async def measure(smoke: bool) -> list[dict[str, Any]]:
    settings = Settings.read(smoke)
    layout = Layout(os.environ.get("VOICECALL_BENCH_ONE_CORE") == "1")
    if layout.carrier_core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {layout.carrier_core})
    print(f"machine: {machine.describe()}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="voicecall-bench-streams-workers-") as tmp:
        root = Path(tmp)
        redis = RedisProcess(root / "redis", core=layout.redis_core)
        await redis.start()
        try:
            for streams in settings.levels:
                for count in settings.counts:
                    runs = [
                        await level(count, streams, settings, layout, redis, root)
                        for _ in range(settings.repeat)
                    ]
                    # A neighbour on a shared machine only ever makes a run worse.
                    best = min(runs, key=lambda r: (r["p99 ms"], r["lateness p50 ms"]))
                    rows.append({**best, "runs": settings.repeat} if settings.repeat > 1 else best)
        finally:
            await redis.stop()
    return rows


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(measure(smoke))
