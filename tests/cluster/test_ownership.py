"""Ownership: one owner per call, adoption of a dead owner's calls (exactly once), and who holds
a call's media stream — against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from tests.cluster.test_instance import BEAT_S, TTL_S, freeze
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster.instance import Instance
from voice_call.cluster.ownership import Claim, Ownership

Node = tuple[Instance, Ownership]
Spawn = Callable[[], Awaitable[Node]]


@pytest.fixture
async def spawn(redis_server: RedisServer) -> AsyncIterator[Spawn]:
    """`await spawn()` → a started instance and its Ownership, all on one fresh prefix."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    prefix = RedisServer.prefix()
    instances: list[Instance] = []

    async def make() -> Node:
        instance = Instance(client, prefix, ttl_s=TTL_S, beat_s=BEAT_S)
        await instance.start()
        instances.append(instance)
        return instance, Ownership(client, prefix, instance)

    yield make
    for instance in instances:
        await instance.stop()
    await client.aclose()


async def dead(instance: Instance, watcher: Instance) -> None:
    """Kill `instance` without stop() and wait until its key has expired."""
    await freeze(instance)

    async def gone() -> bool:
        return not await watcher.alive(instance.id)

    await wait_until(gone, what=f"instance {instance.id} to expire")


async def test_a_new_call_is_mine(spawn: Spawn) -> None:
    (me, mine), (_, other) = await spawn(), await spawn()
    await mine.take_new("c1")
    assert await mine.owner("c1") == me.id
    assert await mine.claim("c1") == Claim(mine=True, owner=me.id, adopted=False, previous=None)
    assert await other.claim("c1") == Claim(mine=False, owner=me.id, adopted=False, previous=None)
    assert await other.owner("c1") == me.id


async def test_a_call_without_owner_is_adopted(spawn: Spawn) -> None:
    me, mine = await spawn()
    assert await mine.owner("c1") is None
    assert await mine.claim("c1") == Claim(mine=True, owner=me.id, adopted=True, previous=None)
    assert await mine.claim("c1") == Claim(mine=True, owner=me.id, adopted=False, previous=None)


async def test_a_stopped_owners_call_is_adopted_at_once(spawn: Spawn) -> None:
    (first, owning), (second, other) = await spawn(), await spawn()
    await owning.take_new("c1")
    await first.stop()
    claim = await other.claim("c1")
    assert claim == Claim(mine=True, owner=second.id, adopted=True, previous=first.id)
    assert await other.owner("c1") == second.id


async def test_a_dead_owners_call_is_adopted_after_its_ttl(spawn: Spawn) -> None:
    (first, owning), (second, other) = await spawn(), await spawn()
    await owning.take_new("c1")
    await freeze(first)
    assert not (await other.claim("c1")).mine  # not yet: its key has not expired
    await dead(first, second)
    claim = await other.claim("c1")
    assert claim == Claim(mine=True, owner=second.id, adopted=True, previous=first.id)


async def test_concurrent_claims_adopt_each_orphan_exactly_once(spawn: Spawn) -> None:
    nodes = [await spawn() for _ in range(4)]
    (first, owning), rest = nodes[0], nodes[1:]
    calls = [f"c{i}" for i in range(30)]
    for call in calls:
        await owning.take_new(call)
    await dead(first, rest[0][0])
    for call in calls:
        claims = await asyncio.gather(*(o.claim(call) for _, o in rest for _ in range(3)))
        adopted = [c for c in claims if c.adopted]
        assert len(adopted) == 1 and adopted[0].previous == first.id
        winner = adopted[0].owner
        assert {c.owner for c in claims} == {winner}
        assert sum(c.mine for c in claims) == 3  # the winner's three claims
        assert await owning.owner(call) == winner


async def test_release_forgets_only_my_own_call(spawn: Spawn) -> None:
    (me, mine), (_, other) = await spawn(), await spawn()
    await mine.take_new("c1")
    await other.release("c1")
    assert await mine.owner("c1") == me.id
    await mine.release("c1")
    assert await mine.owner("c1") is None


async def test_orphans_are_the_calls_with_a_missing_or_dead_owner(spawn: Spawn) -> None:
    (live, living), (gone, dying) = await spawn(), await spawn()
    await living.take_new("alive")
    await dying.take_new("dead")
    await dying.take_new("stopped")
    await gone.stop()
    assert await living.orphans(["alive", "dead", "none", "stopped"]) == [
        "dead",
        "none",
        "stopped",
    ]
    assert await living.orphans([]) == []
    assert await living.orphans(["alive"]) == []
    assert live.id != gone.id


async def test_the_stream_holder_while_alive_and_after_it_died(spawn: Spawn) -> None:
    (holder, holding), (watcher, watching) = await spawn(), await spawn()
    assert await watching.stream_holder("c1") is None
    assert await watching.dead_stream_holder("c1") is None
    await holding.hold_stream("c1")
    assert await watching.stream_holder("c1") == holder.id
    assert await watching.dead_stream_holder("c1") is None
    await dead(holder, watcher)
    assert await watching.stream_holder("c1") is None
    assert await watching.dead_stream_holder("c1") == holder.id


async def test_only_the_holder_drops_its_stream(spawn: Spawn) -> None:
    (holder, holding), (_, other) = await spawn(), await spawn()
    await holding.hold_stream("c1")
    await other.drop_stream("c1")
    assert await other.stream_holder("c1") == holder.id
    await holding.drop_stream("c1")
    assert await other.stream_holder("c1") is None
    assert await other.dead_stream_holder("c1") is None


async def test_the_stream_holder_may_differ_from_the_owner(spawn: Spawn) -> None:
    (owner, owning), (holder, holding) = await spawn(), await spawn()
    await owning.take_new("c1")
    await holding.hold_stream("c1")
    assert await holding.owner("c1") == owner.id
    assert await owning.stream_holder("c1") == holder.id
