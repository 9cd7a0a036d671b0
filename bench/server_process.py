"""`voicecall serve` in a child process, as a user runs it: start, wait for ready, kill -9.

Used by the webhooks, load and chaos benchmarks (and tests/test_chaos.py), which need the server
in its own process: so the load generator does not share its core, and so it can be killed
without a chance to clean up. Readiness is the "serving" line `voicecall serve` prints once
the port is bound and the store restored, awaited on the child's stdout (no polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

READY_MARK = b" serving ("
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int) -> None:
    """Keep this process on one core when the machine has it (Linux only; else a no-op)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU process `pid` used so far, not its children's (Linux /proc; 0
    elsewhere or once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class ServerProcess:
    """One `voicecall serve` child with its own state folder and config file."""

    def __init__(
        self,
        home: Path,
        config: dict[str, Any],
        core: int | None = None,
        profile: Path | None = None,
        serve_args: Sequence[str] = (),
    ) -> None:
        self.home = home
        self.core = core
        self.serve_args = list(serve_args)  # after `serve`, e.g. ["--workers", "2"]
        self.profile = profile  # run under cProfile, writing here on a clean stop
        self.config_path = home / "config.json5"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._stderr: asyncio.Task[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    async def start(self) -> None:
        """Start and return once it serves; raise with its stderr when it does not."""
        env = {**os.environ, "VOICECALL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        core = self.core
        profiler = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *profiler,
            "-m",
            "voice_call.cli",
            "--config",
            str(self.config_path),
            "serve",
            *self.serve_args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=(lambda: pin(core)) if core is not None else None,
        )
        self.starts += 1
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._stderr = asyncio.create_task(self.proc.stderr.read())
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while READY_MARK not in (line := await self.proc.stdout.readline()):
                    if not line:  # exited before it was ready
                        await self.proc.wait()
                        raise RuntimeError(f"voicecall serve failed:\n{await self._errors()}")
        except TimeoutError:
            await self.kill9()
            raise RuntimeError(f"voicecall serve not ready in {START_TIMEOUT_S:g} s") from None
        # Keep draining stdout so a chatty server never blocks on a full pipe.
        asyncio.create_task(self._drain(self.proc.stdout))  # noqa: RUF006 - ends with the pipe

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def _errors(self) -> str:
        if self._stderr is None:
            return ""
        return (await self._stderr).decode(errors="replace")[-4000:]

    async def kill9(self) -> None:
        """SIGKILL: no shutdown handlers, no store close, no goodbye to anyone."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        if self._stderr is not None:
            await self._stderr

    async def stop(self) -> str:
        """SIGTERM and wait (a clean shutdown); returns what it wrote to stderr."""
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return await self._errors()

    def cpu_seconds(self) -> float:
        """User + system CPU the server used so far (Linux /proc; 0 elsewhere)."""
        return process_cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        """Resident memory now, in MiB (Linux /proc; 0 elsewhere)."""
        return self._status_kib("VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        """The most resident memory it has had, in MiB (Linux /proc; 0 elsewhere)."""
        return self._status_kib("VmHWM") / 1024

    def _status_kib(self, name: str) -> int:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        return 0
