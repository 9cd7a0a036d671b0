"""EventBus: a watcher that falls behind is cut off with a marker; close ends every watcher."""

from __future__ import annotations

import asyncio

from voice_call.manager.bus import EventBus
from voice_call.store.base import LoggedEvent


def event(seq: int) -> LoggedEvent:
    return LoggedEvent(seq=seq, call_id="c1", type="call.speech", at=float(seq))


def next_seq(queue: asyncio.Queue[LoggedEvent | None]) -> int:
    got = queue.get_nowait()
    assert got is not None
    return got.seq


async def test_each_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    async with bus.subscribe() as first, bus.subscribe() as second:
        assert bus.subscribers == 2
        for seq in (1, 2):
            bus.publish(event(seq))
        assert [next_seq(first), next_seq(first)] == [1, 2]
        assert second.qsize() == 2
    assert bus.subscribers == 0


async def test_a_subscriber_that_falls_behind_is_dropped_with_an_end_marker() -> None:
    bus = EventBus(queue_size=2)
    async with bus.subscribe() as slow, bus.subscribe() as fast:
        bus.publish(event(1))
        bus.publish(event(2))
        fast.get_nowait()
        fast.get_nowait()
        bus.publish(event(3))  # slow's queue is full: it is cut off, fast keeps going
        assert bus.subscribers == 1
        # the oldest it held made room for the marker that tells the reader it was cut off
        assert next_seq(slow) == 2
        assert slow.get_nowait() is None
        assert slow.empty()
        bus.publish(event(4))
        assert slow.empty()  # no longer subscribed
        assert [next_seq(fast), next_seq(fast)] == [3, 4]


async def test_close_ends_every_watcher_even_a_full_one() -> None:
    bus = EventBus(queue_size=1)
    async with bus.subscribe() as idle, bus.subscribe() as full:
        bus.publish(event(1))
        idle.get_nowait()
        bus.close()
        assert bus.subscribers == 0
        assert idle.get_nowait() is None
        assert next_seq(full) == 1  # no room for a marker, and no error
    bus.publish(event(2))  # nobody left: nothing to do, no error


async def test_following_a_shared_log_an_event_logged_here_waits_for_earlier_ones() -> None:
    bus = EventBus()
    bus.follow(10)
    async with bus.subscribe() as queue:
        bus.publish(event(12))  # logged here; 11, logged by another instance, not seen yet
        assert queue.empty()
        bus.deliver(event(11))  # the feed: 11, then the held 12
        bus.deliver(event(12))  # the feed's copy of 12: handed out already
        bus.publish(event(13))  # next in line: out at once
        bus.deliver(event(13))
        assert [next_seq(queue) for _ in range(3)] == [11, 12, 13]
        assert queue.empty()


async def test_following_a_shared_log_the_feed_may_come_first() -> None:
    bus = EventBus()
    bus.follow(0)
    async with bus.subscribe() as queue:
        bus.deliver(event(1))
        bus.deliver(event(2))
        bus.publish(event(1))  # the manager's publish of what the feed already handed out
        bus.deliver(event(5))  # 3 and 4 are gone from the log (pruned): not waited for
        bus.publish(event(4))
        assert [next_seq(queue) for _ in range(3)] == [1, 2, 5]
        assert queue.empty()


async def test_held_events_go_out_in_order_when_the_feed_stops_or_falls_far_behind() -> None:
    bus = EventBus(max_held=2)
    bus.follow(0)
    async with bus.subscribe() as queue:
        bus.publish(event(3))
        bus.publish(event(2))
        assert queue.empty()
        bus.publish(event(5))  # a third held: the feed is stuck, they go out
        assert [next_seq(queue) for _ in range(3)] == [2, 3, 5]
        bus.deliver(event(4))  # too late: it would break the order
        bus.publish(event(7))
        assert queue.empty()
        bus.unfollow()
        assert next_seq(queue) == 7
        bus.publish(event(6))  # alone again: published as logged
        assert next_seq(queue) == 6
