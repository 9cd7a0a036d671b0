"""The absolute-clock pacer: steady 20 ms cadence, no drift, few shared timers."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable

from tests.support import StolenTime
from voice_call.media.lateness import LatenessStats
from voice_call.media.pacer import Pacer, SlotScheduler

# --------------------------------------------------------------------------- pacer, fake time


class JitteryClock:
    """A scheduler whose callbacks run late by a random 0..`jitter` (a busy loop), never early."""

    def __init__(self, jitter: float, seed: int = 7) -> None:
        self.now = 1000.0
        self.jitter = jitter
        self.random = random.Random(seed)
        self._heap: list[tuple[float, int, Callable[[], object], list[bool]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> JitteryClock.Handle:
        cancelled = [False]
        heapq.heappush(self._heap, (when, next(self._seq), callback, cancelled))
        return JitteryClock.Handle(cancelled)

    class Handle:
        def __init__(self, flag: list[bool]) -> None:
            self.flag = flag

        def cancel(self) -> None:
            self.flag[0] = True

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            when, _, callback, cancelled = heapq.heappop(self._heap)
            if cancelled[0]:
                continue
            self.now = max(self.now, when + self.random.uniform(0, self.jitter))
            callback()


def test_due_times_stay_on_the_absolute_grid_despite_late_wakeups() -> None:
    clock = JitteryClock(jitter=0.008)
    ticks: list[tuple[float, float]] = []  # (due, fired at)

    def tick(due: float) -> bool:
        ticks.append((due, clock.now))
        return len(ticks) < 500

    pacer = Pacer(tick, scheduler=clock)
    pacer.start()
    t0 = clock.now
    clock.run(until=t0 + 20)
    assert len(ticks) == 500 and not pacer.running
    for n, (due, fired) in enumerate(ticks):
        assert abs(due - (t0 + n * 0.020)) < 1e-9  # no drift, however late each wake-up was
        assert 0 <= fired - due <= 0.008 + 1e-9
    assert pacer.resyncs == 0


def test_a_long_stall_reanchors_instead_of_bursting() -> None:
    clock = JitteryClock(jitter=0.0)
    fired: list[float] = []

    def tick(due: float) -> bool:
        fired.append(clock.now)
        if len(fired) == 10:
            clock.now += 0.5  # the loop was blocked for half a second
        return len(fired) < 20

    pacer = Pacer(tick, scheduler=clock)
    pacer.start()
    clock.run(until=clock.now + 5)
    gaps = [b - a for a, b in itertools.pairwise(fired)]
    assert pacer.resyncs == 1
    assert all(abs(gap - 0.020) < 1e-9 for gap in gaps[10:])  # steady again, no burst
    assert gaps[9] > 0.4


def test_stop_from_inside_the_tick_and_restart() -> None:
    clock = JitteryClock(jitter=0.0)
    seen: list[float] = []
    pacer: Pacer

    def tick(due: float) -> bool:
        seen.append(due)
        if len(seen) == 3:
            pacer.stop()
        return True

    pacer = Pacer(tick, scheduler=clock)
    pacer.start()
    clock.run(until=clock.now + 1)
    assert len(seen) == 3 and not pacer.running
    pacer.start()
    clock.run(until=clock.now + 0.05)
    assert len(seen) == 3 + 3  # restarted on a fresh grid: frames at 0, 20 and 40 ms


# --------------------------------------------------------------------------- pacer, real time


async def test_real_time_cadence_is_20ms_and_drift_free_over_500_frames() -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    fired: list[float] = []
    stats = LatenessStats()

    def tick(due: float) -> bool:
        fired.append(loop.time())
        if len(fired) % 50 == 25:
            time.sleep(0.008)  # a busy moment on the loop: the next frame must catch up
        if len(fired) == 500:
            done.set()
            return False
        return True

    pacer = Pacer(tick, stats=stats)
    with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
        pacer.start()
        await asyncio.wait_for(done.wait(), 15)
    # Each stretch the machine took from us upsets a gap or two per 20 ms it lasted (the
    # late frame, then the catch-up); the per-frame average of it widens the averages.
    upset = 2 * math.ceil(stolen.ms / 20)
    per_frame_ms = stolen.ms / 500
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(fired)]
    outside = sum(not 15 <= gap <= 25 for gap in gaps_ms)
    assert outside <= 0.02 * len(gaps_ms) + upset, (sorted(gaps_ms)[-10:], stolen.ms)
    assert abs(statistics.mean(gaps_ms) - 20) < 0.2 + per_frame_ms, stolen.ms
    drift_ms = (fired[-1] - fired[0] - 499 * 0.020) * 1000
    assert abs(drift_ms) < 5 + per_frame_ms, (drift_ms, stolen.ms)
    assert stats.count == 500 and stats.percentile(50) < 0.005 + per_frame_ms / 1000


# --------------------------------------------------------------------------- shared clock


class CountingLoop:
    """The running loop, counting the timers asked of it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timers = 0

    def time(self) -> float:
        return self.loop.time()

    def call_at(self, when: float, callback: Callable[..., object], *args: object) -> object:
        self.timers += 1
        return self.loop.call_at(when, callback, *args)


async def test_many_pacers_share_few_timers_and_keep_their_cadence() -> None:
    loop = CountingLoop(asyncio.get_running_loop())
    scheduler = SlotScheduler(loop=loop)  # type: ignore[arg-type]
    fired: dict[int, list[tuple[float, float]]] = {n: [] for n in range(100)}
    done = asyncio.Event()

    def ticker(n: int) -> Callable[[float], bool]:
        def tick(due: float) -> bool:
            fired[n].append((due, loop.time()))
            if all(len(f) >= 25 for f in fired.values()):
                done.set()
            return len(fired[n]) < 25

        return tick

    pacers = [Pacer(ticker(n), scheduler=scheduler) for n in range(100)]
    with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
        for pacer in pacers:
            pacer.start()
        await asyncio.wait_for(done.wait(), 5)
    assert loop.timers < 100 * 25 / 3  # 2,500 wake-ups, far fewer loop timers
    for ticks in fired.values():
        for n, (due, at) in enumerate(ticks):
            assert abs(due - (ticks[0][0] + n * 0.020)) < 1e-9
            assert at >= due - 1e-6  # never early
    late = sorted(at - due for ticks in fired.values() for due, at in ticks)
    # the median lateness, widened by the machine's measured delay per 20 ms round (25 rounds)
    assert late[len(late) // 2] < 0.004 + stolen.ms / 25 / 1000, (late[len(late) // 2], stolen.ms)


async def test_a_cancelled_slot_entry_does_not_fire() -> None:
    scheduler = SlotScheduler()
    ran: list[str] = []
    loop = asyncio.get_running_loop()
    keep = scheduler.call_at(loop.time() + 0.005, lambda: ran.append("keep"))
    drop = scheduler.call_at(loop.time() + 0.005, lambda: ran.append("drop"))
    drop.cancel()
    await asyncio.sleep(0.03)
    assert ran == ["keep"] and keep is not drop
