"""`workers`: `voicecall serve --workers N` (N processes sharing one port with SO_REUSEPORT) on
one real `redis-server`, N = 1 and 2: signed Twilio status callbacks per second, which worker
served what, CPU per webhook, and nothing acknowledged lost when every worker is killed with -9.

The server runs as a user runs it: `voicecall serve --workers N`, Twilio provider, the Redis
store (each worker is a cluster instance), configured as the `cluster` benchmark configures an
instance (whose pieces this reuses, as it reuses the `webhooks` ones). With N = 1 that command
is one plain server process (no supervisor); with N > 1 it is a supervisor holding the port and
N worker processes.

1. Real calls first: `voicecall.initiate` over JSON-RPC (on the one port, so on whichever worker
   the kernel picked) places CALLS calls through the Twilio emulator; the callee lets them ring.
2. Each level sends status callbacks signed exactly as Twilio signs them, each for a call picked
   at random, each with a new SequenceNumber (a distinct verified request whose event is
   appended to that call's log), built before the clock starts, all to the ONE port over
   CONNECTIONS_PER_WORKER × N keep-alive connections: the kernel spreads the connections over the
   workers. Each connection comes from its own loopback address (127.0.0.2, .3, ...), as
   Twilio's webhooks come from many hosts, so the server's in-flight cap per client address
   (8 per worker) is not what limits it whatever the spread. A `GET /healthz` on each connection
   first says which worker took it, so the requests each worker answered are counted exactly.
   A callback for a call another worker owns is forwarded to the owner (cluster/).
3. Then the supervisor is stopped (SIGSTOP, so it restarts nobody), every worker killed with
   SIGKILL, the supervisor too, and the store's event log read back from Redis: the event of
   every request answered 2xx (our callbacks and the emulator's own `initiated` / `ringing`)
   must be there, by the dedupe key the server derives from the verified request.

CPU: each worker's, the supervisor's and Redis's utime + stime (/proc, and Redis's INFO) over
the level, per webhook answered or not.

Cores (`Layout`): this process (load generator and emulator) on the last core; Redis and the
supervisor on core 0; worker i on core i mod (all cores). On a 2-core machine worker 2 shares
core 1 with the load generator and worker 1 shares core 0 with Redis: the table measures what a
webhook costs with 1 and 2 workers and how the kernel spreads the connections, not a clean
doubling. `VOICECALL_BENCH_UNPINNED=1` leaves the workers, supervisor and Redis to the kernel's
scheduler (the load generator stays on the last core).

Knobs: `VOICECALL_BENCH_WORKERS="1,2"`, `VOICECALL_BENCH_RATES="200,max"` (offered loads per
second, open loop; `max` = closed loop), `VOICECALL_BENCH_SECONDS` (per level, default 10),
`VOICECALL_BENCH_CALLS` (default 100), `VOICECALL_BENCH_UNPINNED=1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from bench import machine
from bench.cluster import (
    PREFIX,
    Setup,
    SpreadCallbacks,
    instance_config,
    level_settings,
    requests_at,
)
from bench.http_load import HttpConnection, LoadResult, build_request, run_load
from bench.redis_process import RedisCounters, RedisProcess
from bench.server_process import ServerProcess, free_port, pin, process_cpu_seconds
from bench.twilio_bench import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    RecordingTwilio,
    expected_keys,
    place_calls,
    webhook_url,
)
from voice_call.client.rpc import RpcClient
from voice_call.security.rpc_token import read_rpc_token
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import SentWebhook
from voice_call.store.redis import RedisStore

WORKER_COUNTS = (1, 2)
LEVELS = ("200", "max")  # 200/s: a fixed rate one worker on Redis sustains (see `cluster`)
CONNECTIONS_PER_WORKER = 8
WARM_UP = 1000
FIND_WORKERS_S = 30.0


@dataclass(frozen=True)
class Settings:
    counts: list[int]
    levels: list[str]
    seconds: float
    calls: int
    smoke: bool

    @classmethod
    def read(cls, smoke: bool) -> Settings:
        if smoke:  # CI: one worker, a few requests
            return cls([1], ["100", "max"], 0.5, 4, smoke)
        spec = os.environ.get("VOICECALL_BENCH_WORKERS", ",".join(map(str, WORKER_COUNTS)))
        counts = [int(n) for n in spec.split(",") if n.strip()]
        if not counts or min(counts) < 1:
            raise ValueError("VOICECALL_BENCH_WORKERS: write worker counts such as 1,2")
        return cls(counts, *level_settings(LEVELS), smoke)

    def count(self, level: str) -> int:
        return requests_at(level, self.seconds, self.smoke)

    @property
    def warm_up(self) -> int:
        return 40 if self.smoke else WARM_UP


class Layout:
    """Which core each process gets (see the module docstring)."""

    def __init__(self, pinned: bool) -> None:
        self.cores = os.cpu_count() or 1
        self.pinned = pinned and self.cores > 1
        self.load_core = self.cores - 1 if self.cores > 1 else None

    @property
    def server_core(self) -> int | None:
        """Redis's and the supervisor's (the workers inherit it until placed)."""
        return 0 if self.pinned else None

    def worker_core(self, index: int) -> int | None:
        return index % self.cores if self.pinned else None

    def describe(self, count: int) -> str:
        if not self.pinned:
            return "any"
        return " / ".join(str(self.worker_core(i)) for i in range(count))


class CountingConnection(HttpConnection):
    """A keep-alive connection from its own loopback address that counts its answers and
    keeps the requests answered 2xx (for the check after kill -9)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.answered = 0
        self.acknowledged: list[bytes] = []

    @classmethod
    async def open_from(cls, source: str, port: int) -> CountingConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        status, body = await super().request(raw)
        self.answered += 1
        if 200 <= status < 300:
            self.acknowledged.append(raw)
        return status, body


@dataclass(frozen=True)
class Worker:
    pid: int
    instance: str  # its cluster instance id, which /healthz names


class Deployment:
    """One `voicecall serve --workers N`, its workers, and load connections to its port."""

    def __init__(self, count: int, layout: Layout, root: Path) -> None:
        self.count = count
        self.layout = layout
        self.root = root
        self.port = free_port()
        self.server: ServerProcess | None = None
        self.workers: list[Worker] = []
        self.connections: list[CountingConnection] = []
        self.worker_of: list[int] = []  # connection index → worker index
        self.acknowledged: list[bytes] = []  # every callback answered 2xx, all levels

    async def start(self, emu: RecordingTwilio, calls: int, redis: RedisProcess) -> None:
        config = instance_config(
            Setup("redis", self.count), emu.url, self.port, self.port, calls, redis.url
        )
        self.server = ServerProcess(
            self.root / "home",
            config,
            core=self.layout.server_core,
            serve_args=["--workers", str(self.count)],
        )
        await self.server.start()
        self.workers = await find_workers(redis, self.server.pid, self.count)
        if self.count > 1:
            place(self.server.pid, self.layout.server_core)
        for index, worker in enumerate(self.workers):
            place(worker.pid, self.layout.worker_core(index))

    @property
    def supervisor(self) -> ServerProcess:
        assert self.server is not None, "not started"
        return self.server

    def rpc(self) -> RpcClient:
        token = read_rpc_token(self.supervisor.home)
        assert token is not None
        return RpcClient(f"http://127.0.0.1:{self.port}", token, timeout=60)

    async def connect(self) -> None:
        """Fresh keep-alive connections (the server closes idle ones after a few seconds),
        each asked which worker took it."""
        await self.disconnect()
        total = CONNECTIONS_PER_WORKER * self.count
        self.connections = [
            await CountingConnection.open_from(f"127.0.0.{2 + k}", self.port) for k in range(total)
        ]
        instances = [worker.instance for worker in self.workers]
        probe = build_request("GET", f"127.0.0.1:{self.port}", "/healthz", {})
        self.worker_of = []
        for conn in self.connections:
            status, body = await conn.request(probe)
            instance = json.loads(body).get("instance") if status == 200 else None
            if instance not in instances:
                raise RuntimeError(f"/healthz answered {status} {body[:200]!r}: not a worker")
            self.worker_of.append(instances.index(instance))
            conn.answered = 0
            conn.acknowledged = []

    def per_worker(self, values: Sequence[int]) -> list[int]:
        """Per-connection counts summed per worker."""
        out = [0] * self.count
        for index, value in zip(self.worker_of, values, strict=True):
            out[index] += value
        return out

    def cpu(self) -> tuple[list[float], float]:
        """(each worker's CPU seconds so far, the supervisor's: 0 with one worker, which is
        the server process itself)."""
        workers = [process_cpu_seconds(worker.pid) for worker in self.workers]
        alone = self.count == 1
        return workers, 0.0 if alone else self.supervisor.cpu_seconds()

    async def disconnect(self) -> None:
        for conn in self.connections:
            self.acknowledged += conn.acknowledged
            await conn.close()
        self.connections = []

    async def kill9(self) -> None:
        """Every worker and the supervisor, with SIGKILL: the supervisor stopped first, so it
        restarts nobody; nothing gets to shut down cleanly."""
        await self.disconnect()
        if self.server is None or self.server.proc is None:
            return
        if self.count > 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.server.pid, signal.SIGSTOP)
            for worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        await self.server.kill9()


def place(pid: int, core: int | None) -> None:
    """Every thread of `pid` on `core`, or on any core with None (a child inherits this
    process's pin to the load generator's core, and threads keep the pin they started with)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = {core} if core is not None else set(range(os.cpu_count() or 1))
    with contextlib.suppress(OSError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(thread), cpus)


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


async def find_workers(redis: RedisProcess, server: int, count: int) -> list[Worker]:
    """The live cluster instances that are this server (one worker) or its children, from
    their `inst:` keys in Redis, by pid."""
    assert redis.client is not None
    deadline = time.monotonic() + FIND_WORKERS_S
    while True:
        found = []
        async for key in redis.client.scan_iter(f"{PREFIX}:inst:*"):
            raw = await redis.client.get(key)
            pid = int(json.loads(raw)["pid"]) if raw else 0
            ours = pid == server if count == 1 else parent_of(pid) == server
            if ours:
                found.append(Worker(pid, key.rsplit(":", 1)[1]))
        if len(found) == count:
            return sorted(found, key=lambda worker: worker.pid)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(found)} of {count} workers registered in Redis")
        await asyncio.sleep(0.05)


async def owned_calls(redis: RedisProcess, workers: Sequence[Worker]) -> list[int]:
    """How many calls each worker owns (their `owner:` keys)."""
    assert redis.client is not None
    instances = [worker.instance for worker in workers]
    owned = [0] * len(workers)
    async for key in redis.client.scan_iter(f"{PREFIX}:owner:*"):
        owner = await redis.client.get(key)
        if owner in instances:
            owned[instances.index(owner)] += 1
    return owned


async def stored_keys(redis: RedisProcess) -> set[str]:
    """The dedupe keys in the store's event log, read through the store as a server reads it."""
    store = RedisStore(redis.url, prefix=PREFIX)
    await store.open()
    try:
        keys: set[str] = set()
        since = 0
        while page := await store.events(since_seq=since, limit=1000):
            keys.update(event.dedupe_key for event in page if event.dedupe_key)
            since = page[-1].seq
        return keys
    finally:
        await store.close()


def request_keys(raw: bytes, port: int) -> list[str]:
    """The dedupe keys the server derives from one of our raw callbacks."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {name: value.strip() for name, _, value in (h.partition(":") for h in lines[1:])}
    hook = SentWebhook(f"http://127.0.0.1:{port}{path}", dict(parse_qsl(body.decode())), headers)
    return expected_keys(hook, webhook_url(port))


def acknowledged_keys(deployment: Deployment, emu: RecordingTwilio) -> set[str]:
    """Every event key the server acknowledged: our callbacks and the emulator's own webhooks
    (the calls' `initiated` and `ringing`) that got a 2xx."""
    public = webhook_url(deployment.port)
    keys = {k for raw in deployment.acknowledged for k in request_keys(raw, deployment.port)}
    for hook in emu.webhooks:
        if hook.status_code is not None and 200 <= hook.status_code < 300:
            keys.update(expected_keys(hook, public))
    return keys


def emulator_answers(emu: RecordingTwilio) -> str:
    """How the server answered the emulator's own webhooks, e.g. `status 200 ×200`."""
    seen = Counter(f"{hook.kind or '?'} {hook.status_code}" for hook in emu.webhooks)
    return ", ".join(f"{what} ×{n}" for what, n in sorted(seen.items()))


def split(values: Sequence[float], text: str = "{}") -> str:
    return " / ".join(text.format(value) for value in values)


@dataclass
class Spent:
    """What one level cost: CPU seconds of each worker, the supervisor and Redis."""

    workers: list[float]
    supervisor: float
    redis: RedisCounters


def row(
    deployment: Deployment, level: str, result: LoadResult, spent: Spent, owned: list[int]
) -> dict[str, Any]:
    sent = max(result.sent, 1)
    wall = max(result.wall_s, 1e-9)
    served = deployment.per_worker([conn.answered for conn in deployment.connections])
    count = deployment.count
    return {
        "workers": count,
        "worker cores": deployment.layout.describe(count),
        "offered /s": level,
        "sent": result.sent,
        "2xx /s": round(result.throughput),
        "p50 ms": round(result.percentile_ms(50), 2),
        "p99 ms": round(result.percentile_ms(99), 2),
        "max ms": round(result.percentile_ms(100), 1),
        "non-2xx": result.sent - result.ok + result.failures,
        "connections per worker": split(deployment.per_worker([1] * len(deployment.worker_of))),
        "requests per worker": split(served),
        "calls owned per worker": split(owned),
        "workers CPU µs/webhook": round(sum(spent.workers) / sent * 1e6),
        "CPU per worker (1 core)": split([s / wall for s in spent.workers], "{:.0%}"),
        "supervisor CPU µs/webhook": round(spent.supervisor / sent * 1e6) if count > 1 else "-",
        "Redis CPU µs/webhook": round(spent.redis.cpu_s / sent * 1e6),
        "load 1m": f"{os.getloadavg()[0]:.1f}",
    }


async def run_level(
    deployment: Deployment, redis: RedisProcess, requests: Sequence[bytes], rate: float | None
) -> tuple[LoadResult, Spent]:
    await deployment.connect()
    workers, supervisor = deployment.cpu()
    before = await redis.counters()
    result = await run_load(deployment.connections, requests, rate)
    used = (await redis.counters()).since(before)
    workers_after, supervisor_after = deployment.cpu()
    spent = [after - was for after, was in zip(workers_after, workers, strict=True)]
    return result, Spent(spent, supervisor_after - supervisor, used)


async def measure_count(
    count: int, settings: Settings, layout: Layout, redis: RedisProcess, root: Path
) -> list[dict[str, Any]]:
    await redis.reset()
    emu = RecordingTwilio(
        ACCOUNT_SID, AUTH_TOKEN, script=CalleeScript(outcome="no-answer"), time_scale=1.0
    )
    deployment = Deployment(count, layout, root)
    rows: list[dict[str, Any]] = []
    async with emu:
        try:
            await deployment.start(emu, settings.calls, redis)
            pids = split([worker.pid for worker in deployment.workers])
            print(f"{count} worker(s): pids {pids}", file=sys.stderr)
            await place_calls(emu, [deployment.rpc()], settings.calls)
            owned = await owned_calls(redis, deployment.workers)
            placed = [(d.request.status_callback or "", d.sid) for d in emu.dialed]
            callbacks = SpreadCallbacks(deployment.port, placed)
            warm, _ = await run_level(deployment, redis, callbacks.build(settings.warm_up), None)
            if warm.failures or warm.ok != warm.sent:
                raise RuntimeError(f"{count} workers: warm-up answered {warm.statuses}")
            for level in settings.levels:
                requests = callbacks.build(settings.count(level))
                rate = None if level == "max" else float(level)
                result, spent = await run_level(deployment, redis, requests, rate)
                if result.failures:
                    raise RuntimeError(f"{count} workers: {result.failures} connections failed")
                rows.append(row(deployment, level, result, spent, owned))
        finally:
            await deployment.kill9()
        expected = acknowledged_keys(deployment, emu)
        print(
            f"{count} worker(s): the emulator's webhooks: {emulator_answers(emu)}", file=sys.stderr
        )
    lost = expected - await stored_keys(redis)
    if lost:
        raise AssertionError(
            f"{count} workers, after kill -9: {len(lost)} of {len(expected)} events answered 2xx"
            " are not in the store"
        )
    print(
        f"{count} worker(s), after kill -9 of every worker: all {len(expected)} events answered"
        f" 2xx are in Redis ({len(deployment.acknowledged)} of them our callbacks)",
        file=sys.stderr,
    )
    for line in rows:
        line["2xx'd in store after kill -9"] = f"{len(expected)}/{len(expected)}"
    return rows


async def measure(smoke: bool) -> list[dict[str, Any]]:
    settings = Settings.read(smoke)
    layout = Layout(not os.environ.get("VOICECALL_BENCH_UNPINNED"))
    if layout.load_core is not None:
        pin(layout.load_core)
    print(f"machine: {machine.describe()}", file=sys.stderr)
    where = (
        "Redis and supervisor on core 0, worker i on core i mod cores"
        if layout.pinned
        else "workers, supervisor and Redis unpinned"
    )
    print(f"cores: load generator + emulator on {layout.load_core}; {where}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="voicecall-bench-workers-") as tmp:
        root = Path(tmp)
        redis = RedisProcess(root / "redis", core=layout.server_core)
        await redis.start()
        assert redis.proc is not None
        place(redis.proc.pid, layout.server_core)
        try:
            for count in settings.counts:
                rows += await measure_count(count, settings, layout, redis, root / f"n{count}")
        finally:
            await redis.stop()
    return rows


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(measure(smoke))
