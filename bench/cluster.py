"""`cluster`: signed Twilio status callbacks per second into 1, 2 and 3 `voicecall serve`
instances on one Redis, against 1 instance on SQLite: same machine, same load generator.

Each setup runs as a user runs it (`voicecall serve`, Twilio provider; SQLite in WAL mode on a
real file, or `store: {backend: "redis"}` on a real `redis-server` this benchmark starts). As in
`webhooks` (whose pieces this reuses), real calls are placed first over JSON-RPC through the
Twilio emulator (round-robin over the instances, so each owns a share of them), then status
callbacks signed exactly as Twilio signs them are sent, each for a call picked at random, each
with a new SequenceNumber: a distinct verified request whose event is appended to that call's log.

Spreading: no balancer process. The load generator itself sends request i to instance
i mod N (strict round-robin, as nginx's default), over CONNECTIONS keep-alive connections per
instance. Every request carries the same bytes whatever instance gets it: `publicUrl` (what the
signature covers) is the same on every instance, as behind a balancer; it names instance 0's
port, which stands in for the balancer's address for the emulator's own webhooks. A call's
owner is random relative to the instance a callback lands on: 1/N land on the owner.

Cores: the server side gets every core but the last: the instances round-robin over them and
`redis-server` on the first (SQLite works inside the instance's own process, so the server side
has the same cores with either store); the load generator and the Twilio emulator get the last
core. On a 2-core machine that puts every instance and Redis on core 0: the table then shows
what a webhook costs in a cluster (CPU per webhook on the instances and in Redis, Redis round
trips) rather than more throughput from more cores. `VOICECALL_BENCH_SPREAD=1` pins instance i
to core i mod (all cores) instead (sharing the last core with the load generator).

Redis is read through its own counters, reset before each setup: `total_reads_processed`
deltas are round trips (one read event per command or per pipeline sent in one write),
`total_commands_processed` and `INFO commandstats` the commands (MULTI and EXEC count as
commands), `used_cpu_*` Redis's CPU. Background traffic (heartbeats, adoption sweeps, each
owner watching its calls' streams: it grows with live calls, not webhooks) is measured in 4 idle
seconds before the levels and shown on stderr; the Redis round trips, commands and CPU per
webhook are net of it, the instances' CPU is not. `--smoke` skips it (figures are gross).
Last, every Redis command of one callback landing on its call's owner, and (N > 1) of one
landing elsewhere and forwarded, is printed to stderr (MONITOR): where the round trips go.

Knobs: `VOICECALL_BENCH_SETUPS="sqlite:1,redis:1,redis:2,redis:3"`,
`VOICECALL_BENCH_RATES="200,max"` (offered loads per second; `max` = closed loop),
`VOICECALL_BENCH_SECONDS` (per level, default 10), `VOICECALL_BENCH_CALLS` (default 100),
`VOICECALL_BENCH_SPREAD=1`, `VOICECALL_BENCH_REDIS_CORE=N` (Redis on core N instead),
`VOICECALL_BENCH_PROFILE=1` (instance 0 under cProfile: its own time per package and top
functions to stderr after each setup; its figures are then not the ones to record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.http_load import HttpConnection, LoadResult, build_request, run_load
from bench.redis_process import RedisCounters, RedisProcess
from bench.server_process import ServerProcess, free_port, pin
from bench.twilio_bench import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    RecordingTwilio,
    place_calls,
    server_config,
    signed_headers,
    status_callback,
    webhook_url,
)
from bench.webhooks import print_profile
from voice_call.client.rpc import RpcClient
from voice_call.security.rpc_token import read_rpc_token
from voice_call.sim.callee import CalleeScript

SETUPS = ("sqlite:1", "redis:1", "redis:2", "redis:3")
SMOKE_SETUPS = ("sqlite:1", "redis:2")  # CI: the SQLite path and a two-instance cluster
LEVELS = ("200", "max")  # 200/s: a fixed rate every setup here sustains, for p99
CONNECTIONS = 8  # per instance: the server admits 8 in flight per client address
MAX_REQUESTS = 10_000  # the closed-loop level sends this many (scaled with the level time)
TOKEN_SECRET = "bench-cluster-stream-token-secret-0123456789"
PREFIX = "bench"
TOP_COMMANDS = 6
TRACE_WIDTH = 110
TRACE_QUIET_S = 0.3
IDLE_S = 4.0  # two adoption sweeps (every 2 s) and four heartbeats
PROFILING = bool(os.environ.get("VOICECALL_BENCH_PROFILE"))
MONITOR_LINE = re.compile(r"^(\d+\.\d+) \[\d+ ([^\]]*)\] (.*)$", re.S)
MONITOR_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Setup:
    backend: str  # "sqlite" or "redis"
    instances: int

    @classmethod
    def parse(cls, text: str) -> Setup:
        backend, _, count = text.strip().partition(":")
        if backend not in ("sqlite", "redis") or not count.isdigit() or int(count) < 1:
            raise ValueError(f"bad setup {text!r}: write sqlite:1 or redis:N")
        if backend == "sqlite" and int(count) != 1:
            raise ValueError("SQLite serves one instance only: write sqlite:1")
        return cls(backend, int(count))

    @property
    def label(self) -> str:
        return f"{'SQLite' if self.backend == 'sqlite' else 'Redis'} ×{self.instances}"


@dataclass(frozen=True)
class Settings:
    setups: list[Setup]
    levels: list[str]
    seconds: float
    calls: int
    smoke: bool

    @classmethod
    def read(cls, smoke: bool) -> Settings:
        if smoke:
            setups = [Setup.parse(s) for s in SMOKE_SETUPS]
            return cls(setups, ["100", "max"], 0.5, 4, smoke)
        spec = os.environ.get("VOICECALL_BENCH_SETUPS", ",".join(SETUPS))
        setups = [Setup.parse(s) for s in spec.split(",")]
        return cls(setups, *level_settings(LEVELS), smoke)

    def count(self, level: str) -> int:
        return requests_at(level, self.seconds, self.smoke)


def level_settings(default: Sequence[str]) -> tuple[list[str], float, int]:
    """The levels, seconds per level and calls a webhook-load bench runs, from
    `VOICECALL_BENCH_RATES`, `VOICECALL_BENCH_SECONDS` and `VOICECALL_BENCH_CALLS`."""
    env = os.environ.get
    levels = [r.strip() for r in env("VOICECALL_BENCH_RATES", ",".join(default)).split(",")]
    seconds = float(env("VOICECALL_BENCH_SECONDS", "10"))
    calls = int(env("VOICECALL_BENCH_CALLS", "100"))
    return [level for level in levels if level], seconds, calls


def requests_at(level: str, seconds: float, smoke: bool) -> int:
    """How many requests a level sends: its rate × seconds, or (`max`, closed loop) enough
    to keep the connections busy for about that long."""
    if level != "max":
        return int(float(level) * seconds)
    return 200 if smoke else int(MAX_REQUESTS * min(1.0, seconds / 10))


class Layout:
    """Which core each process gets (see the module docstring)."""

    def __init__(self, spread: bool) -> None:
        self.cores = os.cpu_count() or 1
        self.spread = spread
        self.load_core = self.cores - 1 if self.cores > 1 else None
        chosen = os.environ.get("VOICECALL_BENCH_REDIS_CORE")
        self.redis_core = int(chosen) if chosen else self.instance_core(0)

    def instance_core(self, index: int) -> int | None:
        if self.cores == 1:
            return None
        return index % (self.cores if self.spread else self.cores - 1)

    def describe(self, instances: int, redis: bool) -> str:
        cores = (self.instance_core(i) for i in range(instances))
        used = sorted({core for core in cores if core is not None})
        if not used:
            return "1 (all share it)"
        text = f"{len(used)} ({', '.join(map(str, used))})"
        if instances > len(used):
            text += f", {instances} instances share"
        if self.load_core in used:
            text += ", load gen too"
        if redis and self.redis_core in used:
            text += ", Redis too"
        return text


class SpreadCallbacks:
    """Signed status callbacks, each for a call picked at random, built before any clock."""

    def __init__(self, public_port: int, calls: list[tuple[str, str]], seed: int = 17) -> None:
        self.host = f"127.0.0.1:{public_port}"
        self.calls = calls  # (status callback URL, CallSid)
        self.sequence = 10  # the emulator used 0 and 1 for initiated and ringing
        self.random = random.Random(seed)

    def build(self, count: int) -> list[bytes]:
        return [self.one()[1] for _ in range(count)]

    def one(self) -> tuple[str, bytes]:
        """(our call id, the request) for one callback."""
        url, sid = self.random.choice(self.calls)
        self.sequence += 1
        signature, body = status_callback(url, sid, "ringing", self.sequence)
        path = url.split(self.host, 1)[1]
        call_id = parse_qs(urlsplit(url).query)["callId"][0]
        return call_id, build_request("POST", self.host, path, signed_headers(signature), body)


async def spread_load(
    groups: Sequence[Sequence[HttpConnection]], requests: Sequence[bytes], rate: float | None
) -> LoadResult:
    """Request i to instance i mod N (each instance's connections in `groups`), together at
    `rate` per second (each instance gets rate / N, open loop), or flat out with None."""
    n = len(groups)
    shards = [requests[k::n] for k in range(n)]
    share = rate / n if rate else None
    parts = await asyncio.gather(
        *(run_load(group, shard, share) for group, shard in zip(groups, shards, strict=True))
    )
    merged = LoadResult(wall_s=max(part.wall_s for part in parts))
    for part in parts:
        merged.sent += part.sent
        merged.failures += part.failures
        merged.latencies_s += part.latencies_s
        for code, n_code in part.statuses.items():
            merged.statuses[code] = merged.statuses.get(code, 0) + n_code
    return merged


def instance_config(
    setup: Setup, emulator_url: str, port: int, public_port: int, calls: int, redis_url: str
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "maxConcurrentCalls": calls,
        "ringTimeoutMs": 600_000,  # the callee lets it ring; nothing ends it meanwhile
        "outbound": {"defaultMode": "conversation"},
        "publicUrl": webhook_url(public_port),  # the same on every instance
    }
    if setup.backend == "redis":
        extra["store"] = {"backend": "redis", "url": redis_url, "prefix": PREFIX}
        extra["streaming"] = {"tokenSecret": TOKEN_SECRET}
    return server_config(emulator_url, port, **extra)


def top_commands(counters: RedisCounters, webhooks: int, top: int | None = TOP_COMMANDS) -> str:
    ranked = sorted(counters.per_command.items(), key=lambda item: -item[1])[:top]
    return " · ".join(f"{name} {calls / webhooks:.2f}" for name, calls in ranked)


def row(
    setup: Setup,
    cores: str,
    level: str,
    result: LoadResult,
    cpu_s: float,
    redis: RedisCounters | None,
) -> dict[str, Any]:
    sent = max(result.sent, 1)
    return {
        "setup": setup.label,
        "server cores": cores,
        "offered /s": level,
        "sent": result.sent,
        "2xx /s": round(result.throughput),
        "p50 ms": round(result.percentile_ms(50), 2),
        "p99 ms": round(result.percentile_ms(99), 2),
        "max ms": round(result.percentile_ms(100), 1),
        "non-2xx": result.sent - result.ok + result.failures,
        "load 1m": f"{os.getloadavg()[0]:.1f}",
        "instances CPU µs/webhook": round(cpu_s / sent * 1e6),
        "Redis CPU µs/webhook": round(redis.cpu_s / sent * 1e6) if redis else "-",
        "Redis round trips/webhook": f"{redis.reads / sent:.2f}" if redis else "-",
        "Redis commands/webhook": f"{redis.commands / sent:.2f}" if redis else "-",
        "top commands/webhook": top_commands(redis, sent) if redis else "-",
    }


class Cluster:
    """The instances of one setup, their RPC clients and load connections."""

    def __init__(self, setup: Setup, layout: Layout, root: Path) -> None:
        self.setup = setup
        self.layout = layout
        self.root = root
        self.servers: list[ServerProcess] = []
        self.ports: list[int] = []
        self.groups: list[list[HttpConnection]] = []

    async def start(self, emu: RecordingTwilio, calls: int, redis_url: str) -> None:
        self.ports = [free_port() for _ in range(self.setup.instances)]
        for index, port in enumerate(self.ports):
            config = instance_config(self.setup, emu.url, port, self.ports[0], calls, redis_url)
            home = self.root / f"instance-{index}"
            profile = home / "server.prof" if index == 0 and PROFILING else None
            core = self.layout.instance_core(index)
            server = ServerProcess(home, config, core=core, profile=profile)
            await server.start()
            self.servers.append(server)

    def rpcs(self) -> list[RpcClient]:
        out = []
        for server, port in zip(self.servers, self.ports, strict=True):
            token = read_rpc_token(server.home)
            assert token is not None
            out.append(RpcClient(f"http://127.0.0.1:{port}", token, timeout=60))
        return out

    async def connect(self) -> None:
        """Fresh keep-alive connections: the server closes idle ones after a few seconds, and
        building (signing) a level's requests on a busy machine can take that long."""
        await self.disconnect()
        self.groups = [
            [await HttpConnection.open("127.0.0.1", port) for _ in range(CONNECTIONS)]
            for port in self.ports
        ]

    def health(self) -> str:
        """Which instances are still running (a failed level names the ones that died)."""
        codes = [s.proc.returncode if s.proc else "stopped" for s in self.servers]
        return ", ".join(
            f"instance {i}: {'running' if code is None else f'exited ({code})'}"
            for i, code in enumerate(codes)
        )

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    async def disconnect(self) -> None:
        for group in self.groups:
            for conn in group:
                await conn.close()
        self.groups = []

    async def stop(self) -> None:
        await self.disconnect()
        for server in self.servers:
            if server.profile is None:
                await server.kill9()
            else:  # a clean stop writes the profile
                await server.stop()
                print(f"{self.setup.label}, instance 0 under cProfile:", file=sys.stderr)
                print_profile(server.profile)


async def measure_setup(
    setup: Setup,
    settings: Settings,
    layout: Layout,
    redis: RedisProcess | None,
    root: Path,
) -> list[dict[str, Any]]:
    if redis is not None:
        await redis.reset()
    emu = RecordingTwilio(
        ACCOUNT_SID, AUTH_TOKEN, script=CalleeScript(outcome="no-answer"), time_scale=1.0
    )
    cluster = Cluster(setup, layout, root)
    cores = layout.describe(setup.instances, setup.backend == "redis")
    rows = []
    async with emu:
        try:
            await cluster.start(emu, settings.calls, redis.url if redis else "")
            await place_calls(emu, cluster.rpcs(), settings.calls)
            placed = [(d.request.status_callback or "", d.sid) for d in emu.dialed]
            callbacks = SpreadCallbacks(cluster.ports[0], placed)
            await cluster.connect()
            warm = await spread_load(
                cluster.groups, callbacks.build(40 if settings.smoke else 2000), None
            )
            if warm.failures or warm.ok != warm.sent:
                raise RuntimeError(
                    f"{setup.label}: warm-up answered {warm.statuses}, {warm.failures} connections"
                    f" failed; {cluster.health()}"
                )
            background = None
            if redis is not None and not settings.smoke:
                background = await measure_idle(setup, cluster, redis)
            for level in settings.levels:
                requests = callbacks.build(settings.count(level))
                await cluster.connect()
                cpu = cluster.cpu_seconds()
                before = await redis.counters() if redis else None
                result = await spread_load(
                    cluster.groups, requests, None if level == "max" else float(level)
                )
                spent = cluster.cpu_seconds() - cpu
                used = (await redis.counters()).since(before) if redis and before else None
                if used is not None and background is not None:
                    used = used.less(background, result.wall_s / IDLE_S)
                if result.failures:
                    raise RuntimeError(
                        f"{setup.label}: {result.failures} connections failed; {cluster.health()}"
                    )
                rows.append(row(setup, cores, level, result, spent, used))
                if used is not None:
                    print(
                        f"{setup.label} at {level}, Redis commands per webhook:"
                        f" {top_commands(used, max(result.sent, 1), None)}",
                        file=sys.stderr,
                    )
            if redis is not None:
                await cluster.connect()
                await trace_both(setup, redis, cluster, callbacks)
        finally:
            await cluster.stop()
    return rows


async def measure_idle(setup: Setup, cluster: Cluster, redis: RedisProcess) -> RedisCounters:
    """What the instances do with no traffic (heartbeats, adoption sweeps, watching their
    calls' streams): it grows with live calls, not webhooks, so the levels' Redis figures are
    given net of it. Printed to stderr with the instances' CPU meanwhile."""
    cpu = cluster.cpu_seconds()
    before = await redis.counters()
    await asyncio.sleep(IDLE_S)
    idle = (await redis.counters()).since(before)
    spent = cluster.cpu_seconds() - cpu
    print(
        f"{setup.label} idle, per second: {idle.commands / IDLE_S:.0f} Redis commands,"
        f" {idle.reads / IDLE_S:.0f} round trips, instances CPU {spent / IDLE_S:.0%} of a core"
        f" ({', '.join(f'{k} {v / IDLE_S:g}' for k, v in sorted(idle.per_command.items()))})",
        file=sys.stderr,
    )
    return idle


async def trace_both(
    setup: Setup, redis: RedisProcess, cluster: Cluster, callbacks: SpreadCallbacks
) -> None:
    """Trace a callback landing on its call's owner and, with several instances, one landing
    on another instance (forwarded to the owner)."""
    call_id, request = callbacks.one()
    owner = await owner_index(redis, cluster, call_id)
    if owner is None:
        print(f"{setup.label}: call {call_id} has no live owner in Redis", file=sys.stderr)
        owner = 0
    where = f"{setup.label}, on the owner"
    await trace_one(where, redis, cluster.groups[owner][0], call_id, request)
    if setup.instances > 1:
        call_id, request = callbacks.one()
        other = ((await owner_index(redis, cluster, call_id) or 0) + 1) % setup.instances
        where = f"{setup.label}, on another instance than the owner"
        await trace_one(where, redis, cluster.groups[other][0], call_id, request)


async def owner_index(redis: RedisProcess, cluster: Cluster, call_id: str) -> int | None:
    """Which of `cluster.servers` owns the call, by the owner record and instance key's pid."""
    assert redis.client is not None
    owner = await redis.client.get(f"{PREFIX}:owner:{call_id}")  # a str: decode_responses
    about = await redis.client.get(f"{PREFIX}:inst:{owner!s}") if owner else None
    pid = json.loads(about).get("pid") if about else None
    pids = [server.pid for server in cluster.servers]
    return pids.index(pid) if pid in pids else None


async def trace_one(
    where: str, redis: RedisProcess, conn: HttpConnection, call_id: str, request: bytes
) -> None:
    """The Redis commands one webhook causes (MONITOR), to stderr: where the round trips go.
    Kept: commands naming the call or the replay cache, the commands a Lua script they ran
    ran (`lua`), and the MULTI / EXEC around them; other traffic (heartbeats, sweeps over
    every call) is left out. A MULTI ... EXEC batch shows whole at EXEC."""
    assert redis.client is not None
    seen: list[MonitorLine] = []
    async with redis.client.monitor() as monitor:
        assert monitor.connection is not None
        connection = monitor.connection

        async def collect() -> None:
            while True:
                raw = await connection.read_response()
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                if line := MonitorLine.parse(text):
                    seen.append(line)

        task = asyncio.create_task(collect())
        status, _ = await conn.request(request)
        await asyncio.sleep(TRACE_QUIET_S)  # let the owner's writes (if forwarded) land
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [
        f"  {line.at:.4f} {line.client:<16} {line.command[:TRACE_WIDTH]}"
        for line in webhook_commands(seen, call_id)
    ]
    print(f"{where}: one webhook (HTTP {status}) in Redis:", *lines, sep="\n", file=sys.stderr)


@dataclass(frozen=True)
class MonitorLine:
    """One line of MONITOR: `1796629526.6332 [0 127.0.0.1:45552] "SET" "key" ...`."""

    at: float
    client: str  # "127.0.0.1:45552", or "lua" for a command a script ran
    command: str

    @classmethod
    def parse(cls, text: str) -> MonitorLine | None:
        match = MONITOR_LINE.match(text)
        if match is None:
            return None
        words = [word.replace('\\"', '"') for word in MONITOR_WORD.findall(match[3])]
        return cls(float(match[1]), match[2], " ".join(words))


def webhook_commands(seen: list[MonitorLine], call_id: str) -> list[MonitorLine]:
    """The MONITOR lines of one webhook (see `trace_one`)."""
    kept = [call_id in line.command or ":replay:" in line.command for line in seen]
    parent = False
    for index, line in enumerate(seen):
        if line.client == "lua":
            kept[index] = parent
        else:
            parent = kept[index]
    for index, line in enumerate(seen):
        word = line.command.split(" ", 1)[0].upper()
        same = [j for j, e in enumerate(seen) if e.client == line.client and j != index]
        if word == "MULTI":
            after = [j for j in same if j > index]
            kept[index] = bool(after) and kept[after[0]]
        elif word == "EXEC":
            before = [j for j in same if j < index]
            kept[index] = bool(before) and kept[before[-1]]
    return [entry for entry, keep in zip(seen, kept, strict=True) if keep]


async def measure(smoke: bool) -> list[dict[str, Any]]:
    settings = Settings.read(smoke)
    layout = Layout(bool(os.environ.get("VOICECALL_BENCH_SPREAD")))
    if layout.load_core is not None:
        pin(layout.load_core)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="voicecall-bench-cluster-") as tmp:
        root = Path(tmp)
        redis: RedisProcess | None = None
        if any(setup.backend == "redis" for setup in settings.setups):
            redis = RedisProcess(root / "redis", core=layout.redis_core)
            await redis.start()
        try:
            for index, setup in enumerate(settings.setups):
                folder = root / f"setup-{index}"
                use = redis if setup.backend == "redis" else None
                try:
                    rows += await measure_setup(setup, settings, layout, use, folder)
                except (RuntimeError, TimeoutError) as exc:  # the other setups still count
                    print(f"{setup.label} FAILED: {exc!r}", file=sys.stderr)
        finally:
            if redis is not None:
                await redis.stop()
    if not rows:
        raise RuntimeError("every setup failed (see above)")
    return rows


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(measure(smoke))
