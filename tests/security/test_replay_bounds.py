"""The replay cache's bounds: a reserved key is a replay for exactly its TTL (600 s by default),
at most 10,000 keys are kept (the oldest forgotten first), and completing or releasing a key
changes only that key."""

from __future__ import annotations

from voice_call.security.replay import CachedResponse, ReplayCache

ANSWER = CachedResponse(200, "<Response/>", "text/xml")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


async def test_a_fresh_key_is_reserved_and_its_repeat_is_a_replay() -> None:
    cache = ReplayCache(now=Clock())
    assert await cache.reserve("a") == (False, None)
    assert await cache.reserve("a") == (True, None)  # reserved, not completed yet
    assert len(cache) == 1


async def test_a_reserved_key_is_a_replay_for_600_seconds_by_default() -> None:
    clock = Clock()
    cache = ReplayCache(now=clock)
    await cache.reserve("a")
    clock.t += 599.0
    assert await cache.reserve("a") == (True, None)
    clock.t += 1.0  # exactly the TTL: still within it (expiry is strictly after)
    assert await cache.reserve("a") == (True, None)
    clock.t += 0.001
    assert await cache.reserve("a") == (False, None)  # forgotten: reserved afresh


async def test_expiry_forgets_reserved_and_completed_keys_in_order() -> None:
    clock = Clock()
    cache = ReplayCache(ttl_s=10, now=clock)
    await cache.reserve("old")
    await cache.complete("old", ANSWER)
    clock.t += 5
    await cache.reserve("young")  # never completed: a reservation expires too
    clock.t += 5.5
    assert await cache.reserve("probe") == (False, None)
    assert len(cache) == 2  # "old" went; "young" and "probe" stay
    assert await cache.reserve("young") == (True, None)
    clock.t += 5
    assert await cache.reserve("young") == (False, None)


async def test_at_most_10000_keys_and_the_oldest_goes_first() -> None:
    cache = ReplayCache(now=Clock())
    for n in range(10_000):
        await cache.reserve(f"k{n}")
    assert len(cache) == 10_000
    assert await cache.reserve("k0") == (True, None)  # all 10,000 kept
    assert await cache.reserve("newest") == (False, None)
    assert len(cache) == 10_000
    assert await cache.reserve("newest") == (True, None)  # the key just reserved stays
    assert await cache.reserve("k9999") == (True, None)
    assert await cache.reserve("k0") == (False, None)  # the oldest was forgotten


async def test_a_small_cache_evicts_the_oldest_not_the_newest() -> None:
    cache = ReplayCache(max_entries=2, now=Clock())
    for key in ("a", "b", "c"):
        await cache.reserve(key)
    assert len(cache) == 2
    assert await cache.reserve("c") == (True, None)
    assert await cache.reserve("b") == (True, None)
    assert await cache.reserve("a") == (False, None)


async def test_a_completed_key_replays_its_first_answer_until_it_expires() -> None:
    clock = Clock()
    cache = ReplayCache(ttl_s=10, now=clock)
    await cache.reserve("a")
    await cache.complete("a", ANSWER)
    assert await cache.reserve("a") == (True, ANSWER)
    clock.t += 9  # completing did not restart the TTL from the reservation
    assert await cache.reserve("a") == (True, ANSWER)
    clock.t += 1.5
    assert await cache.reserve("a") == (False, None)


async def test_completing_an_unknown_key_records_nothing() -> None:
    cache = ReplayCache(now=Clock())
    await cache.complete("never-reserved", ANSWER)
    assert len(cache) == 0
    assert await cache.reserve("never-reserved") == (False, None)


async def test_a_released_key_is_processed_again_and_others_are_kept() -> None:
    cache = ReplayCache(now=Clock())
    await cache.reserve("a")
    await cache.reserve("b")
    await cache.release("a")
    await cache.release("unknown")  # no error
    assert len(cache) == 1
    assert await cache.reserve("a") == (False, None)
    assert await cache.reserve("b") == (True, None)


def test_a_replay_while_this_process_applies_the_first_is_acknowledged_not_retried() -> None:
    # the first delivery is processed in this very process: it ends (or is released) before
    # anyone could need the carrier to retry; the webhook answers such a replay with an empty 200
    assert ReplayCache(now=Clock()).retry_while_pending is False
