"""`voicecall serve --workers N` (server/workers.py): N processes share the port (SO_REUSEPORT),
each a cluster instance on the Redis store; a worker killed with -9 comes back; SIGTERM stops
them all gracefully; SQLite, or N out of range, is refused with a clear error before anything
starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.stack import Cli, base_env, write_config
from tests.store.redis_server import RedisServer
from tests.support import free_port, wait_until

SECRET = "a-shared-secret-of-32-characters"


def config(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "mock",
        "toNumber": "+15555550123",
        "serve": {"port": port},
        "outbound": {"defaultMode": "conversation"},
        "mock": {"answerDelayMs": 50, "replyDelayMs": 50, "replies": ["only one line"]},
        "streaming": {"tokenSecret": SECRET},
        **extra,
    }


class Workers:
    """`voicecall serve --workers 2` as a user runs it, and what Redis says of its instances."""

    def __init__(self, tmp_path: Path, redis: RedisServer) -> None:
        self.port = free_port()
        self.prefix = RedisServer.prefix()
        store = {"backend": "redis", "url": redis.url, "prefix": self.prefix}
        path = write_config(tmp_path / "config.json5", config(self.port, store=store))
        self.env = base_env(tmp_path)
        for name in ("LC_ALL", "LC_MESSAGES"):
            self.env.pop(name, None)
        self.env["LANG"] = "zh_TW.UTF-8"  # the workers are started in the language chosen here
        self.home = Path(self.env["VOICECALL_HOME"])
        self.cli = Cli(self.env, path)
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis = redis.client()
        self.stderr = tmp_path / "serve.err"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                self.cli.argv("serve", "--workers", "2"),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def worker_pids(self) -> set[int]:
        """Pids of the live instances registered in Redis that are this server's children."""
        pids = set()
        for key in self.redis.scan_iter(f"{self.prefix}:inst:*"):
            raw = self.redis.get(key)
            if raw is not None:
                pids.add(int(json.loads(raw)["pid"]))
        return {pid for pid in pids if parent_of(pid) == self.proc.pid}

    def rpc(self, method: str, params: dict[str, Any]) -> Any:
        token = (self.home / "rpc-token").read_text().strip()
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        reply = httpx.post(f"{self.url}/rpc", json=request, headers=headers, timeout=10).json()
        assert "result" in reply, reply
        return reply["result"]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def answering_instance(url: str) -> str | None:
    """The instance behind one fresh connection (a new one each time, as the kernel spreads
    new connections over the workers)."""
    try:
        body = httpx.get(f"{url}/healthz", headers={"Connection": "close"}, timeout=2).json()
    except httpx.TransportError:
        return None
    instance: str | None = body.get("instance")
    return instance


def alive(pid: int) -> bool:
    return parent_of(pid) is not None


async def test_two_workers_share_the_port_serve_a_call_and_one_killed_comes_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    workers = Workers(tmp_path, redis_server)
    try:
        await wait_until(lambda: len(workers.worker_pids()) == 2, 60, what="two workers")
        seen: set[str] = set()

        def both_answer() -> bool:
            if (instance := answering_instance(workers.url)) is not None:
                seen.add(instance)
            return len(seen) == 2

        await wait_until(both_answer, 30, what="both workers answering on the one port")
        server = json.loads((workers.home / "server.json").read_text())
        assert server == {"url": workers.url, "pid": workers.proc.pid}  # clients find it

        call_id = workers.rpc("voicecall.initiate", {"message": "Hello there"})["callId"]

        def heard_reply() -> bool:
            call = workers.rpc("voicecall.status", {"callId": call_id, "full": True})["call"]
            return any(e["speaker"] == "user" for e in call["transcript"])

        await wait_until(heard_reply, 20, what="the callee's reply, through either worker")
        assert workers.rpc("voicecall.end", {"callId": call_id}) == {"success": True}
        assert workers.rpc("voicecall.status", {})["calls"] == []

        victim = min(workers.worker_pids())
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            pids = workers.worker_pids()
            return len(pids) == 2 and victim not in pids and all(map(alive, pids))

        await wait_until(replaced, 60, what="the killed worker started again")
        assert f"exited with status {-signal.SIGKILL}; starting it again" in workers.log()
        final = workers.worker_pids()
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(30) == 0, workers.log()
        assert not any(map(alive, final))
        assert not (workers.home / "server.json").exists()
        left = [
            workers.redis.get(key) for key in workers.redis.scan_iter(f"{workers.prefix}:inst:*")
        ]
        # a worker stopped gracefully leaves the cluster at once (its key deleted)
        assert not {json.loads(raw)["pid"] for raw in left if raw} & final
    finally:
        if workers.proc.poll() is None:
            workers.proc.kill()
            workers.proc.wait(10)
        workers.redis.close()


def test_workers_with_the_sqlite_store_are_refused_with_the_fix(tmp_path: Path) -> None:
    cli = Cli(base_env(tmp_path), write_config(tmp_path / "c.json5", config(free_port())))
    done = cli.run("serve", "--workers", "2")
    assert done.returncode == 2, done.stderr
    assert "--workers needs the Redis call store" in done.stderr
    assert 'set store.backend to "redis" and store.url in the config' in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("count", ["0", "65", "two"])
def test_a_worker_count_out_of_range_is_refused(tmp_path: Path, count: str) -> None:
    cli = Cli(base_env(tmp_path), write_config(tmp_path / "c.json5", config(free_port())))
    done = cli.run("serve", "--workers", count)
    assert done.returncode == 2
    assert "--workers" in done.stderr and "Traceback" not in done.stderr
    if count != "two":
        assert "must be between 1 and 64" in done.stderr
