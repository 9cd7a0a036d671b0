"""Small helpers the test suites share."""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voice_call.client.rpc import RpcClient
from voice_call.models import CallRecord
from voice_call.runtime import Runtime

POLL_INTERVAL_S = 0.02


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a server whose URL must be known up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` deep-merged over a copy of `base` (config overrides in tests)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


async def wait_until(check: Callable[[], object], timeout: float = 10.0, *, what: str = "") -> None:
    """Poll `check` (a plain or an async function) until its answer is truthy.

    The one way tests wait for state that has no event of its own to await. After `timeout`
    seconds the test fails with an AssertionError naming `what` (or the check's name).
    """
    try:
        async with asyncio.timeout(timeout) as limit:
            while True:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(POLL_INTERVAL_S)
    except TimeoutError:
        if not limit.expired():
            raise  # the check's own timeout, not ours
        waited_for = what or _name(check)
        raise AssertionError(f"timed out after {timeout} s waiting for {waited_for}") from None


def _name(check: Callable[..., object]) -> str:
    name = getattr(check, "__qualname__", repr(check))
    return str(name).replace("<locals>.", "")


class StolenTime:
    """How long this thread waited for a CPU while a timing test measured (other processes had
    it): the allowance a latency bound gets on a loaded machine, measured, not guessed.

    Linux's scheduler statistics count it (`run_delay` in `/proc/…/schedstat`): time ready to
    run but not running. Time this process spends on its own work is not in it, so a slow event
    loop of ours is not excused. On an idle machine it is about 0, and a bound plus it is as
    strict as before; where the statistics are missing it stays 0.
    `with StolenTime() as stolen: …` then `stolen.ms`; `StolenTime(pid)` follows a child.
    """

    def __init__(self, pid: int | None = None) -> None:
        self._path = Path(f"/proc/{pid}/schedstat" if pid else "/proc/thread-self/schedstat")
        self._start_ns = self._last_ns = self._read()

    def _read(self) -> int:
        try:
            return int(self._path.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0  # no statistics here, or the process has ended: keep the last reading

    def sample(self) -> None:
        """Take a reading now (a child's statistics go with it when it exits)."""
        self._last_ns = max(self._last_ns, self._read())

    @property
    def ms(self) -> float:
        return max(0, self._last_ns - self._start_ns) / 1e6

    def __enter__(self) -> StolenTime:
        self._start_ns = self._last_ns = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()


class CallStackMixin:
    """What the provider harnesses share: RPC calls and waiting on a call's stored record."""

    runtime: Runtime
    rpc: RpcClient

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.rpc.call(method, params)

    async def record(self, call_id: str) -> CallRecord:
        found = await self.runtime.store.get(call_id)
        assert found is not None, call_id
        return found

    async def wait_record(
        self, call_id: str, check: Callable[[CallRecord], bool], timeout: float = 10.0
    ) -> CallRecord:
        async def ok() -> bool:
            found = await self.runtime.store.get(call_id)
            return found is not None and check(found)

        await wait_until(ok, timeout)
        return await self.record(call_id)

    async def wait_ended(self, call_id: str, timeout: float = 10.0) -> CallRecord:
        return await self.wait_record(call_id, lambda r: r.terminal, timeout)


HELPERS = Path(__file__).parent / "helpers"
SRC = Path(__file__).resolve().parents[1] / "src"


def run_helper(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `tests/helpers/<script>` in a child Python that imports this checkout's source."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, str(HELPERS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
