"""A drift-free real-time pacer: frame n is due at t0 + n·20 ms on one absolute clock.

Sleeping 20 ms after each send drifts (every wake-up is a little late and the errors add up, so
a 10 s reply plays back over 10.3 s and the carrier's jitter buffer runs dry). Here each wake-up
is scheduled for its absolute due time, so a late tick makes the next one come sooner. If the
loop stalled so long that we are more than `max_behind` behind, the schedule is re-anchored
instead of bursting all the missed frames at once (a carrier would drop or garble a burst).

The pacer drives a plain callback rather than a task that sleeps: at hundreds of streams a
callback per frame is much cheaper than resuming a coroutine per frame. On the shared ticker
(`SlotScheduler`, what every stream uses) it registers once and returns each next due time; on
any other clock (tests' fakes, a bare loop) it asks `call_at` once per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

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
        if isinstance(clock, SlotScheduler):  # the shared ticker: no timer per frame
            self._handle = clock.repeat(self._t0, self._beat)
        else:
            self._handle = clock.call_at(self._t0, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        clock = self._clock()
        when = self._beat(clock.time())
        if when is not None:
            self._handle = clock.call_at(when, self._fire)

    def _beat(self, now: float) -> float | None:
        """One frame at `now`; when the next one is due, or None once stopped."""
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
            return None
        if self._handle is None:  # `tick` stopped us
            return None
        return self._t0 + self._n * self.interval


class _Entry:
    __slots__ = ("callback", "cancelled", "repeats")

    def __init__(self, callback: Callable[..., Any], repeats: bool) -> None:
        self.callback = callback
        self.cancelled = False
        self.repeats = repeats

    def cancel(self) -> None:
        self.cancelled = True


class SlotScheduler:
    """Many pacers, one ticker: callbacks due within the same `resolution` share one loop timer.

    Every stream's pacer wants a wake-up every 20 ms; at 1,000 streams that is 50,000 loop
    timers a second, each a heap push and pop. Rounding each due time up to the next
    millisecond lets the ~50 pacers due in the same millisecond share one timer (at most 1,000 a
    second), for at most `resolution` of added lateness — about what the loop's own timer
    granularity costs. A pacer registers once (`repeat`) and hands back its next due time from
    each call, so a frame costs no timer, handle or callback object of its own. Callbacks due in
    the same slot run in the order they were (re)scheduled: each once per slot, none skipped.
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
        """Run `callback()` once, at `when` or up to `resolution` after."""
        entry = _Entry(callback, repeats=False)
        self._add(when, entry)
        return entry

    def repeat(self, when: float, callback: Callable[[float], float | None]) -> Handle:
        """Run `callback(now)` at `when`, then at each time it returns, until it returns None or
        the handle is cancelled; `now` is when this slot's run began."""
        entry = _Entry(callback, repeats=True)
        self._add(when, entry)
        return entry

    def _add(self, when: float, entry: _Entry) -> None:
        key = -int(-when // self.resolution)  # ceil: never before it is due
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [entry]
            self._get_loop().call_at(key * self.resolution, self._run, key)
        else:
            bucket.append(entry)

    def _run(self, key: int) -> None:
        bucket = self._buckets.pop(key, ())
        if not bucket:
            return
        now = self._get_loop().time()
        resolution, buckets = self.resolution, self._buckets
        for entry in bucket:
            if entry.cancelled:
                continue
            if not entry.repeats:
                entry.callback()
                continue
            when = entry.callback(now)
            if when is None or entry.cancelled:
                continue
            # _add, inline: this line runs once per frame of every stream
            later = -int(-when // resolution)
            again = buckets.get(later)
            if again is None:
                buckets[later] = [entry]
                self._get_loop().call_at(later * resolution, self._run, later)
            else:
                again.append(entry)
