"""A real `redis-server` for the cluster benchmark, started the way tests/store/redis_server.py
starts the tests' one: a free loopback port, its own temp folder, no persistence; here also
pinned to a core, so the benchmark can say where Redis ran.

Its counters are how the benchmark sees what the instances asked of it: `INFO commandstats`
(calls per command), `INFO stats` (`total_commands_processed`, and `total_reads_processed`:
one read event per request the server took off a socket — one command, or one pipeline / MULTI
... EXEC batch sent in one write — so its delta is the number of round trips), `INFO cpu`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from bench.server_process import free_port, pin

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RedisCounters:
    """One `INFO stats commandstats cpu` reading."""

    commands: int
    reads: int
    cpu_s: float
    per_command: dict[str, int] = field(default_factory=dict)

    def since(self, before: RedisCounters) -> RedisCounters:
        """What happened between `before` and this reading, less the INFO call that took it."""
        names = set(self.per_command) | set(before.per_command)
        per_command = {
            name: self.per_command.get(name, 0) - before.per_command.get(name, 0)
            for name in names
            if name != "info"
        }
        return RedisCounters(
            commands=self.commands - before.commands - 1,
            reads=self.reads - before.reads - 1,
            cpu_s=self.cpu_s - before.cpu_s,
            per_command={name: n for name, n in per_command.items() if n},
        )

    def less(self, background: RedisCounters, times: float) -> RedisCounters:
        """These counters less `times` × `background` (the idle traffic over as long)."""
        names = set(self.per_command) | set(background.per_command)
        per_command = {
            name: round(self.per_command.get(name, 0) - background.per_command.get(name, 0) * times)
            for name in names
        }
        return RedisCounters(
            commands=round(self.commands - background.commands * times),
            reads=round(self.reads - background.reads * times),
            cpu_s=self.cpu_s - background.cpu_s * times,
            per_command={name: n for name, n in per_command.items() if n > 0},
        )


class RedisProcess:
    """`redis-server` in a child process, pinned to `core`, and a client to read its counters."""

    def __init__(self, folder: Path, core: int | None = None) -> None:
        self.folder = folder
        self.core = core
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.client: aioredis.Redis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed — `sudo apt-get install redis-server` (Debian)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
        core = self.core
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.folder,
            preexec_fn=(lambda: pin(core)) if core is not None else None,
        )
        self.client = aioredis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError("redis-server exited at start")
                with contextlib.suppress(ConnectionError, OSError, aioredis.ConnectionError):
                    if await self.client.ping():
                        return
                await asyncio.sleep(0.02)

    async def reset(self) -> None:
        """No keys and zeroed command counters: each configuration starts from the same Redis."""
        assert self.client is not None
        await self.client.flushall()
        await self.client.config_resetstat()

    async def counters(self) -> RedisCounters:
        assert self.client is not None
        info = await self.client.info("stats", "commandstats", "cpu")
        per_command = {
            name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in info.items()
            if name.startswith("cmdstat_")
        }
        return RedisCounters(
            commands=int(info["total_commands_processed"]),
            reads=int(info["total_reads_processed"]),
            cpu_s=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            per_command=per_command,
        )

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()
