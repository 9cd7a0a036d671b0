"""Injectable time: the real event loop clock, and a fake one tests advance by hand.

Every timer in the service (max duration, notify hang-up, reaper, transcript wait, the mock
callee's delays) goes through a Clock, so a 5-minute timeout test runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (what records store)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run `callback` (a plain function) after `delay` seconds."""
        ...

    async def sleep(self, delay: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))


class _FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Time stands still until `advance` moves it; due callbacks then run in order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, _FakeTimer, Callable[[], object]]] = []

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        timer = _FakeTimer()
        heapq.heappush(self._heap, (self._now + max(0.0, delay), next(self._seq), timer, callback))
        return timer

    async def sleep(self, delay: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        self.call_later(delay, wake)
        await done

    @property
    def pending(self) -> int:
        return sum(1 for _, _, t, _ in self._heap if not t.cancelled)

    async def advance(self, seconds: float) -> None:
        """Move time forward, firing each due timer and letting the tasks it wakes run."""
        target = self._now + seconds
        await _settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._heap)
            self._now = max(self._now, when)
            if not timer.cancelled:
                callback()
                await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 50) -> None:
    """Let ready tasks run (they may chain a few awaits) without real time passing."""
    for _ in range(rounds):
        await asyncio.sleep(0)
