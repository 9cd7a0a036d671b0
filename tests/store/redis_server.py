"""A real `redis-server` for the tests: started on a free loopback port (and a unix socket) with
its own temp folder, no persistence (or an fsynced append-only file), stopped at the end.

Debian: `apt-get install redis-server` (`.ci/run` does it). Tests share one server per session
and keep apart by key prefix (`RedisServer.prefix()`), so no test flushes another's data.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import redis

from tests.support import free_port

START_TIMEOUT_S = 10.0


class RedisServer:
    def __init__(self, folder: Path, *, appendonly: bool = False) -> None:
        self.folder = folder
        self.appendonly = appendonly  # every write on disk before it is acknowledged
        self.port = free_port()
        self.socket = folder / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed — `sudo apt-get install redis-server` (Debian)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        args += ["--dir", str(self.folder), "--save", ""]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += ["--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.folder
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"redis-server exited at start: {err}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    @staticmethod
    def prefix() -> str:
        """A key prefix no other test uses."""
        return f"t{uuid.uuid4().hex[:12]}"

    def client(self) -> redis.Redis:
        """A plain (sync) client, for looking at the keys a store wrote."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
