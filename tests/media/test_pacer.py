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
from voice_call.media.pacer import Handle, Pacer, SlotScheduler

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


# --------------------------------------------------------------------------- the shared ticker


class ManualLoop:
    """An event loop's clock and timers, run by hand: `run` fires what is due, in time order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers = 0
        self._heap: list[tuple[float, int, Callable[..., object], tuple[object, ...]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: object) -> None:
        self.timers += 1
        heapq.heappush(self._heap, (when, next(self._seq), callback, args))

    def run(self, until: float, late: float = 0.0) -> None:
        while self._heap and self._heap[0][0] <= until:
            when, _, callback, args = heapq.heappop(self._heap)
            self.now = max(self.now, when + late)
            callback(*args)
        self.now = max(self.now, until)


def test_the_ticker_runs_pacers_due_together_in_start_order_once_per_frame() -> None:
    loop = ManualLoop()
    scheduler = SlotScheduler(loop=loop)  # type: ignore[arg-type]
    fired: list[tuple[int, float]] = []  # (pacer, due)

    def ticker(n: int) -> Callable[[float], bool]:
        def tick(due: float) -> bool:
            fired.append((n, due))
            return True

        return tick

    pacers = [Pacer(ticker(n), scheduler=scheduler) for n in range(8)]
    for n, pacer in enumerate(pacers):
        loop.now = 1000.0002 + n * 0.00005  # all inside one millisecond: one slot
        pacer.start()
    loop.run(until=1000.0 + 50 * 0.020 - 0.0001)
    assert len(fired) == 8 * 50
    rounds = [fired[r * 8 : (r + 1) * 8] for r in range(50)]
    t0 = {n: 1000.0002 + n * 0.00005 for n in range(8)}
    for r, batch in enumerate(rounds):
        assert [n for n, _ in batch] == list(range(8))  # start order, every round
        assert all(abs(due - (t0[n] + r * 0.020)) < 1e-9 for n, due in batch)
    assert loop.timers == 51  # one loop timer per slot, shared by all eight (and the next one)


def test_a_pacer_stopped_or_restarted_mid_slot_fires_once_on_its_new_schedule() -> None:
    loop = ManualLoop()
    scheduler = SlotScheduler(loop=loop)  # type: ignore[arg-type]
    fired: list[tuple[str, float]] = []
    restarts = iter([True, False])

    def first(due: float) -> bool:
        fired.append(("a", loop.now))
        if len(fired) > 2 and next(restarts, False):
            b.stop()  # b is due in this same slot, after a: it must not run now...
            b.start()  # ...but from now on, frame 0 of a fresh schedule due at once
        return True

    def second(due: float) -> bool:
        fired.append(("b", loop.now))
        return True

    a, b = Pacer(first, scheduler=scheduler), Pacer(second, scheduler=scheduler)
    a.start()
    b.start()
    loop.run(until=loop.now + 0.0505)
    names = [name for name, _ in fired]
    assert names == ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b"][: len(names)]
    assert names.count("b") == names.count("a")  # never twice in one slot, never skipped
    assert b.running and b.frames >= 1


def test_a_late_ticker_catches_up_each_pacer_once_per_frame_then_resyncs_after_a_stall() -> None:
    loop = ManualLoop()
    scheduler = SlotScheduler(loop=loop)  # type: ignore[arg-type]
    dues: list[float] = []

    def tick(due: float) -> bool:
        dues.append(due)
        return True

    pacer = Pacer(tick, scheduler=scheduler)
    pacer.start()
    t0 = loop.now
    loop.run(until=t0 + 0.1, late=0.03)  # every wake-up 30 ms late: frames catch up, in order
    assert dues == sorted(dues) and len(set(dues)) == len(dues)
    assert all(abs(b - a - 0.020) < 1e-9 for a, b in itertools.pairwise(dues))
    loop.now += 0.5  # a stall past max_behind: re-anchored, not a burst of 25 frames
    count = len(dues)
    loop.run(until=loop.now + 0.001)
    assert len(dues) == count + 1 and pacer.resyncs == 1


def test_a_running_pacer_registers_with_the_ticker_once_not_once_per_frame() -> None:
    loop = ManualLoop()

    class Counting(SlotScheduler):
        registrations = 0

        def call_at(self, when: float, callback: Callable[[], object]) -> Handle:
            self.registrations += 1
            return super().call_at(when, callback)

        def repeat(self, when: float, callback: Callable[[float], float | None]) -> Handle:
            self.registrations += 1
            return super().repeat(when, callback)

    scheduler = Counting(loop=loop)  # type: ignore[arg-type]
    ticks: list[float] = []

    def tick(due: float) -> bool:
        ticks.append(due)
        return True

    pacer = Pacer(tick, scheduler=scheduler)
    pacer.start()
    loop.run(until=loop.now + 1.0)
    assert len(ticks) >= 50 and scheduler.registrations == 1
