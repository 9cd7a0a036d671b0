"""A drift-free real-time pacer: frame n is due at t0 + n·20 ms on one absolute clock.

Sleeping 20 ms after each send drifts (every wake-up is a little late and the errors add up, so
a 10 s reply plays back over 10.3 s and the carrier's jitter buffer runs dry). Here each wake-up
is scheduled for its absolute due time, so a late tick makes the next one come sooner. If the
loop stalled so long that we are more than `max_behind` behind, the schedule is re-anchored
instead of bursting all the missed frames at once (a carrier would drop or garble a burst).

The pacer drives a plain callback through `call_at` rather than a task that sleeps: at hundreds of
streams a timer callback per frame is much cheaper than resuming a coroutine per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from voice_call.audio.g711 import FRAME_MS
from voice_call.media.lateness import LatenessStats

FRAME_S = FRAME_MS / 1000
MAX_BEHIND_S = 0.2


class Handle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the pacer needs from an event loop (a fake one in unit tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Handle: ...


class Pacer:
    """Calls `tick(due)` once per frame; `tick` returns False to stop the pacer."""

    def __init__(
        self,
        tick: Callable[[float], bool],
        *,
        interval: float = FRAME_S,
        scheduler: Scheduler | None = None,
        max_behind: float = MAX_BEHIND_S,
        stats: LatenessStats | None = None,
    ) -> None:
        self._tick = tick
        self.interval = interval
        self._scheduler = scheduler
        self.max_behind = max_behind
        self.stats = stats
        self._t0 = 0.0
        self._n = 0
        self._handle: Handle | None = None
        self.resyncs = 0  # times the schedule was re-anchored after a stall

    @property
    def running(self) -> bool:
        return self._handle is not None

    @property
    def frames(self) -> int:
        """Ticks run since the last start."""
        return self._n

    def _clock(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop()
        return self._scheduler

    def start(self) -> None:
        """Start ticking now (frame 0 is due immediately); a running pacer keeps its schedule."""
        if self._handle is not None:
            return
        clock = self._clock()
        self._t0 = clock.time()
        self._n = 0
        self._handle = clock.call_at(self._t0, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        clock = self._clock()
        now = clock.time()
        due = self._t0 + self._n * self.interval
        late = now - due
        if self.stats is not None:
            self.stats.add(late)
        if late > self.max_behind:
            self._t0 = now - self._n * self.interval
            self.resyncs += 1
            due = now
        self._n += 1
        if not self._tick(due):
            self._handle = None
            return
        if self._handle is not None:  # `tick` may have stopped us
            self._handle = clock.call_at(self._t0 + self._n * self.interval, self._fire)


class _Entry:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SlotScheduler:
    """Many pacers, few timers: callbacks due within the same `resolution` share one loop timer.

    Every stream's pacer wants a wake-up every 20 ms; at 500 streams that is 25,000 loop timers
    a second, each a heap push and pop. Rounding each due time up to the next millisecond lets
    the ~25 pacers due in the same millisecond share one timer (at most 1,000 a second), for at
    most `resolution` of added lateness — about what the loop's own timer granularity costs.
    """

    def __init__(self, resolution: float = 0.001, loop: asyncio.AbstractEventLoop | None = None):
        self.resolution = resolution
        self._loop = loop
        self._buckets: dict[int, list[_Entry]] = {}

    def time(self) -> float:
        return self._get_loop().time()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def call_at(self, when: float, callback: Callable[[], object]) -> Handle:
        key = -int(-when // self.resolution)  # ceil: never before it is due
        entry = _Entry(callback)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [entry]
            self._get_loop().call_at(key * self.resolution, self._run, key)
        else:
            bucket.append(entry)
        return entry

    def _run(self, key: int) -> None:
        for entry in self._buckets.pop(key, ()):
            if not entry.cancelled:
                entry.callback()
