"""The event feed (cluster/feed.py): an instance's watchers (SSE, `voicecall tail`, the console)
see the events every instance logs, each once and in seq order, the ones logged here included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.cluster.stack import cluster_stack
from tests.store.contract import event, make_record
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster.feed import EventFeed
from voice_call.manager.bus import EventBus
from voice_call.store.base import LoggedEvent
from voice_call.store.redis import RedisStore


def drained(queue: asyncio.Queue[LoggedEvent | None]) -> list[LoggedEvent]:
    out = []
    while not queue.empty():
        got = queue.get_nowait()
        assert got is not None, "the subscriber was cut off"
        out.append(got)
    return out


class Shared:
    """Two instances' stores on one Redis, and a feed into the bus of the first ("here")."""

    def __init__(self, redis: RedisServer) -> None:
        prefix = RedisServer.prefix()
        self.here = RedisStore(redis.url, prefix=prefix)
        self.there = RedisStore(redis.url, prefix=prefix)
        self.client = Redis.from_url(redis.url, decode_responses=True)
        self.bus = EventBus()
        self.feed = EventFeed(self.client, prefix, self.bus, block_ms=200)

    async def log(self, store: RedisStore, n: int) -> LoggedEvent:
        logged = await store.save(make_record(f"call-{n % 3}"), event(f"call-{n % 3}", at=n))
        assert logged is not None
        if store is self.here:  # what the manager does with what it logged
            self.bus.publish(logged)
        return logged


@pytest.fixture
async def shared(redis_server: RedisServer) -> AsyncIterator[Shared]:
    both = Shared(redis_server)
    await both.here.open()
    await both.there.open()
    try:
        yield both
    finally:
        await both.feed.stop()
        await both.here.close()
        await both.there.close()
        await both.client.aclose()


async def test_events_logged_elsewhere_reach_the_bus_once_in_order_with_the_local_ones(
    shared: Shared,
) -> None:
    await shared.log(shared.there, 0)  # before the feed started: the backlog's, not the feed's
    await shared.feed.start()
    async with shared.bus.subscribe() as queue:
        for n in range(1, 40):
            await shared.log(shared.there if n % 3 else shared.here, n)
        await wait_until(lambda: queue.qsize() >= 39)
        await asyncio.sleep(0.3)  # a late copy from the feed would land by now (block_ms=200)
        got = drained(queue)
    assert [e.seq for e in got] == list(range(2, 41))
    assert [e.at for e in got] == [float(n) for n in range(1, 40)]


async def test_the_feed_resumes_where_it_stopped_after_redis_comes_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=True)
    redis.start()
    shared = Shared(redis)
    await shared.there.open()
    await shared.feed.start()
    try:
        async with shared.bus.subscribe() as queue:
            await shared.log(shared.there, 1)
            await wait_until(lambda: queue.qsize() >= 1)
            redis.stop()
            await asyncio.sleep(0.3)  # the feed's read fails while Redis is away
            redis.start()
            await shared.log(shared.there, 2)
            await shared.log(shared.there, 3)
            await wait_until(lambda: queue.qsize() >= 3)
            assert [e.seq for e in drained(queue)] == [1, 2, 3]
    finally:
        await shared.feed.stop()
        await shared.there.close()
        await shared.client.aclose()
        redis.stop()


async def test_sse_at_one_instance_shows_a_call_placed_at_another(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, 2, serve=True) as (a, b):
        token = b.runtime.rpc_token
        seen: list[str] = []

        async def watch() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with b.http.stream("GET", "/events", headers=headers) as response:
                async for line in response.aiter_lines():
                    if line.startswith("id: ") and line != "id: 0":
                        seen.append(line[4:])

        watcher = asyncio.create_task(watch())
        await wait_until(lambda: b.runtime.bus.subscribers > 0)
        call_id = await a.new_call()
        logged = await a.runtime.store.events(call_id=call_id)
        want = [str(e.seq) for e in logged]
        await wait_until(lambda: seen[: len(want)] == want, what="A's events on B's /events")
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        assert seen == sorted(set(seen), key=int)  # each once, in order
