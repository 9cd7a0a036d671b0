"""The injectable clocks: RealClock's sleep and FakeClock's sleep, pending count and advance."""

from __future__ import annotations

import asyncio

from voice_call.clock import FakeClock, RealClock


async def test_real_clock_sleep_treats_a_negative_delay_as_zero() -> None:
    clock = RealClock()
    await asyncio.wait_for(clock.sleep(-5.0), timeout=5)  # returns, not an error or a hang
    fired = asyncio.Event()
    clock.call_later(-1.0, fired.set)
    await asyncio.wait_for(fired.wait(), timeout=5)


async def test_fake_clock_sleep_wakes_only_when_time_is_advanced_past_it() -> None:
    clock = FakeClock(start=100.0)
    sleeper = asyncio.create_task(clock.sleep(2.0))
    await asyncio.sleep(0)
    assert clock.pending == 1
    await clock.advance(1.5)
    assert not sleeper.done()
    await clock.advance(0.5)
    await asyncio.wait_for(sleeper, timeout=5)
    assert clock.now() == 102.0
    assert clock.pending == 0


async def test_pending_counts_only_timers_not_cancelled() -> None:
    clock = FakeClock()
    fired: list[str] = []
    keep = clock.call_later(1.0, lambda: fired.append("keep"))
    drop = clock.call_later(1.0, lambda: fired.append("drop"))
    assert clock.pending == 2
    drop.cancel()
    assert clock.pending == 1
    await clock.advance(1.0)
    assert fired == ["keep"]
    keep.cancel()  # after it fired: harmless
    assert clock.pending == 0


async def test_a_cancelled_fake_sleep_is_not_woken_twice() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)
    await clock.advance(1.0)  # the timer fires into a finished future: no InvalidStateError
    assert sleeper.cancelled()
