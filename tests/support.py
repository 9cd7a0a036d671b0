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
