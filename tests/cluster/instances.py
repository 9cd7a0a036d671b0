"""N `voicecall serve` processes on one Redis, as a user runs them behind a load balancer.

Each instance is a real child process (`python -m voice_call.cli serve`) with its own state
folder and port and the same config otherwise (the caller's dict, plus `serve.port`). They
share the RPC bearer token: the `rpc-token` file is written into every state folder before the
first start, as an operator would deploy one secret to every instance. Each child's stderr goes
to `serve.log` in its state folder (a pipe nobody reads would fill and stall the server);
`log_tail()` shows it when a test fails.

Starting waits for `/healthz` without blocking the event loop, because the carrier emulator
and the balancer run in the test's loop and must keep serving while an instance restarts.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.cli.stack import base_env
from tests.support import free_port, merge

START_TIMEOUT_S = 30.0


class ServeProcess:
    def __init__(self, home: Path, port: int, config: dict[str, Any], token: str) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path = home / "config.json5"
        self.config_path.write_text(json.dumps(merge(config, {"serve": {"port": port}})))
        token_file = home / "rpc-token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        self.log_path = home / "serve.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        env = {**base_env(self.home), "VOICECALL_HOME": str(self.home)}
        command = [sys.executable, "-m", "voice_call.cli", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            log.write(f"--- start at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    async def healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=0.5, trust_env=False) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve on {self.port} exited:\n{self.log_tail()}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"serve on {self.port} not healthy:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def start(self) -> None:
        self.spawn()
        await self.healthy()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL after 10 s."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Instances:
    """`count` serve processes with one config; `ports` are picked before anything starts, so
    the balancer (and publicUrl, which names the balancer) can be set up first."""

    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.ports = [free_port() for _ in range(count)]
        self.token = secrets.token_urlsafe(32)
        self.procs: list[ServeProcess] = []

    def configure(self, config: dict[str, Any]) -> None:
        self.procs = [
            ServeProcess(self.root / f"instance-{n}", port, config, self.token)
            for n, port in enumerate(self.ports)
        ]

    def __iter__(self) -> Iterator[ServeProcess]:
        return iter(self.procs)

    def __getitem__(self, index: int) -> ServeProcess:
        return self.procs[index]

    async def start(self) -> None:
        for proc in self.procs:
            proc.spawn()  # all start at once; then wait for each
        await asyncio.gather(*(proc.healthy() for proc in self.procs))

    async def stop(self) -> None:
        await asyncio.gather(*(proc.stop() for proc in self.procs))

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"== instance {p.port}:\n{p.log_tail(lines)}" for p in self.procs)
