"""`webhooks`: signed Twilio status callbacks per second into one `voicecall serve` process.

The server runs as a user runs it (`voicecall serve`, Twilio provider, the SQLite store in WAL
mode on a real file) in its own process, pinned to core 0. This process, pinned to core 1,
hosts the Twilio emulator the provider dials through and is the load generator.

1. Real calls first: `voicecall.initiate` over JSON-RPC places CALLS calls through the
   emulator (the callee lets them ring, so they stay live without further traffic).
2. Each level sends status callbacks signed exactly as Twilio signs them (X-Twilio-Signature
   over the URL the provider handed Twilio, with its `callId`), round-robin over the calls,
   each with a new SequenceNumber: so each is a distinct verified request whose event is
   appended to that call's log. Offered loads are open loop (see `http_load.py`) over
   CONNECTIONS keep-alive connections (the server admits 8 in flight per client address);
   `max` is closed loop: as fast as the server answers.
3. Last, one `completed` callback per call: a state change that ends it.
4. Then the server is killed with SIGKILL and the store read: every callback that got a 2xx
   must have its event there ("durable" means that).

Environment knobs: `VOICECALL_BENCH_RATES="250,500,1000,2000,max"`, `VOICECALL_BENCH_SECONDS`
(per level, default 10), `VOICECALL_BENCH_CALLS` (default 100), `VOICECALL_BENCH_PROFILE=1`
(run the server under cProfile; the top functions and own time per package go to stderr, and
with `VOICECALL_BENCH_PROFILE_OUT=FILE` the raw profile is kept there; its figures are then not
the ones to record).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import machine
from bench.http_load import HttpConnection, LoadResult, build_request, run_load
from bench.server_process import ServerProcess, free_port, pin
from bench.twilio_bench import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    RecordingTwilio,
    place_calls,
    server_config,
    signed_headers,
    status_callback,
)
from voice_call.client.rpc import RpcClient
from voice_call.security.rpc_token import read_rpc_token
from voice_call.sim.callee import CalleeScript

LEVELS = ("250", "500", "1000", "2000", "max")
CONNECTIONS = 8
MAX_REQUESTS = 30_000  # the closed-loop level sends this many (scaled with the level time)


def _settings(smoke: bool) -> tuple[list[str], float, int]:
    if smoke:
        return ["200", "max"], 1.0, 5
    rates = os.environ.get("VOICECALL_BENCH_RATES", ",".join(LEVELS)).split(",")
    seconds = float(os.environ.get("VOICECALL_BENCH_SECONDS", "10"))
    calls = int(os.environ.get("VOICECALL_BENCH_CALLS", "100"))
    return [r.strip() for r in rates if r.strip()], seconds, calls


def _closed_loop_count(smoke: bool, seconds: float) -> int:
    return 500 if smoke else int(MAX_REQUESTS * min(1.0, seconds / 10))


class Callbacks:
    """Signed status callbacks for the placed calls, built before any clock starts."""

    def __init__(self, port: int, calls: list[tuple[str, str]]) -> None:
        self.host = f"127.0.0.1:{port}"
        self.calls = calls  # (status callback URL, CallSid)
        self.sequence = 10  # the emulator used 0 and 1 for initiated and ringing

    def build(self, count: int, status: str = "ringing") -> list[bytes]:
        out = []
        for index in range(count):
            url, sid = self.calls[index % len(self.calls)]
            self.sequence += 1
            signature, body = status_callback(url, sid, status, self.sequence)
            path = url.split(self.host, 1)[1]
            out.append(build_request("POST", self.host, path, signed_headers(signature), body))
        return out

    def completions(self) -> list[bytes]:
        return self.build(len(self.calls), "completed")


class WalWatch:
    """The largest the store's WAL file gets while the block runs (sampled every 20 ms)."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + "-wal")
        self.largest = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WalWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample()

    async def _watch(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(0.02)

    def _sample(self) -> None:
        with contextlib.suppress(OSError):
            self.largest = max(self.largest, self.path.stat().st_size)


def _row(
    what: str, result: LoadResult, cpu_s: float, wal_bytes: int, steal: float
) -> dict[str, Any]:
    bad = result.sent - result.ok
    return {
        "offered /s": what,
        "sent": result.sent,
        "2xx /s": round(result.throughput),
        "p50 ms": round(result.percentile_ms(50), 2),
        "p99 ms": round(result.percentile_ms(99), 2),
        "max ms": round(result.percentile_ms(100), 1),
        "non-2xx": bad,
        "server CPU (1 core)": f"{cpu_s / result.wall_s:.0%}" if result.wall_s else "-",
        "server CPU µs/webhook": round(cpu_s / result.sent * 1e6) if result.sent else "-",
        "WAL max MiB": round(wal_bytes / 2**20, 1),
        "host steal ms": round(steal * 1000),
    }


def _count(db: Path, status: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        sql = "SELECT COUNT(*) FROM events WHERE type = ? AND dedupe_key LIKE 'twilio:%'"
        kind = "call.ended" if status == "completed" else "call.ringing"
        return int(conn.execute(sql, (kind,)).fetchone()[0])
    finally:
        conn.close()


async def _measure(smoke: bool) -> list[dict[str, Any]]:
    levels, seconds, calls = _settings(smoke)
    pin(1)
    with tempfile.TemporaryDirectory(prefix="voicecall-bench-") as tmp:
        home = Path(tmp) / "home"
        emu = RecordingTwilio(
            ACCOUNT_SID, AUTH_TOKEN, script=CalleeScript(outcome="no-answer"), time_scale=1.0
        )
        async with emu:
            port = free_port()
            config = server_config(
                emu.url,
                port,
                maxConcurrentCalls=calls,
                ringTimeoutMs=600_000,  # the callee lets it ring; nothing ends it meanwhile
                outbound={"defaultMode": "conversation"},
            )
            profiling = bool(os.environ.get("VOICECALL_BENCH_PROFILE"))
            profile = Path(tmp) / "server.prof" if profiling else None
            server = ServerProcess(home, config, core=0, profile=profile)
            await server.start()
            try:
                token = read_rpc_token(home)
                assert token is not None
                rpc = RpcClient(f"http://127.0.0.1:{port}", token, timeout=60)
                await place_calls(emu, [rpc], calls)
                placed = [(d.request.status_callback or "", d.sid) for d in emu.dialed]
                callbacks = Callbacks(port, placed)
                conns = [await HttpConnection.open("127.0.0.1", port) for _ in range(CONNECTIONS)]
                warm = await run_load(conns, callbacks.build(200 if smoke else 2000), None)
                rows, ok = [], warm.ok
                for level in levels:
                    rate = None if level == "max" else float(level)
                    count = int(rate * seconds) if rate else _closed_loop_count(smoke, seconds)
                    requests = callbacks.build(count)
                    cpu, steal = server.cpu_seconds(), machine.steal_s()
                    async with WalWatch(home / "calls.db") as wal:
                        result = await run_load(conns, requests, rate)
                    cpu, steal = server.cpu_seconds() - cpu, machine.steal_s() - steal
                    rows.append(_row(level, result, cpu, wal.largest, steal))
                    ok += result.ok
                cpu, steal = server.cpu_seconds(), machine.steal_s()
                async with WalWatch(home / "calls.db") as wal:
                    ended = await run_load(conns, callbacks.completions(), None)
                cpu, steal = server.cpu_seconds() - cpu, machine.steal_s() - steal
                rows.append(_row("completed (ends call)", ended, cpu, wal.largest, steal))
                for conn in conns:
                    await conn.close()
            finally:
                if profile is None:
                    await server.kill9()
                else:
                    await server.stop()
                    print_profile(profile)
            db = home / "calls.db"
            stored, stored_end = _count(db, "ringing"), _count(db, "completed")
            # the emulator's own `ringing` per call, then every 2xx of the warm-up and levels
            expected = calls + ok
            if stored != expected or stored_end != ended.ok:
                raise AssertionError(
                    f"after kill -9 the store holds {stored} ringing / {stored_end} ended events;"
                    f" {expected} / {ended.ok} were answered 2xx"
                )
            print(
                f"after kill -9: all {stored + stored_end} acknowledged callbacks are in the store",
                file=sys.stderr,
            )
    return rows


def print_profile(path: Path) -> None:
    import pstats
    import shutil

    from bench.streams_server import by_package

    keep = os.environ.get("VOICECALL_BENCH_PROFILE_OUT")
    if keep:
        shutil.copy(path, keep)
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    print(by_package(stats), file=sys.stderr)


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(_measure(smoke))
