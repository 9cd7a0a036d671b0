"""Instance: a key with a short TTL that the heartbeat renews, against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster.instance import HEARTBEAT_S, INSTANCE_TTL_S, Instance

TTL_S = 0.3
BEAT_S = 0.05


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    yield redis
    await redis.aclose()


async def started(client: Redis, prefix: str) -> Instance:
    instance = Instance(client, prefix, ttl_s=TTL_S, beat_s=BEAT_S)
    await instance.start()
    return instance


async def freeze(instance: Instance) -> None:
    """The process died or hung without stop(): nothing renews its key any more."""
    beat = instance._beat
    assert beat is not None
    beat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beat


def test_defaults_leave_room_for_missed_beats() -> None:
    assert HEARTBEAT_S * 3 < INSTANCE_TTL_S


async def test_start_registers_the_instance_with_a_ttl(client: Redis) -> None:
    prefix = RedisServer.prefix()
    instance = await started(client, prefix)
    try:
        info = json.loads(await client.get(f"{prefix}:inst:{instance.id}") or "")
        assert info["pid"] == os.getpid() and info["host"] and info["started"] > 0
        assert 0 < await client.pttl(f"{prefix}:inst:{instance.id}") <= TTL_S * 1000
        assert await instance.alive(instance.id)
        assert await instance.live_instances() == [instance.id]
    finally:
        await instance.stop()


async def test_ids_are_new_for_every_instance(client: Redis) -> None:
    ids = {Instance(client, "x").id for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 12 for i in ids)


async def test_the_heartbeat_keeps_it_alive_past_its_ttl(client: Redis) -> None:
    prefix = RedisServer.prefix()
    instance = await started(client, prefix)
    try:
        await asyncio.sleep(TTL_S * 2)  # the time span is the behaviour under test
        assert await instance.alive(instance.id)
    finally:
        await instance.stop()


async def test_stop_deletes_the_key_at_once(client: Redis) -> None:
    prefix = RedisServer.prefix()
    instance = await started(client, prefix)
    other = await started(client, prefix)
    await instance.stop()
    assert not await other.alive(instance.id)
    assert await other.live_instances() == [other.id]
    await other.stop()
    await other.stop()  # idempotent


async def test_a_dead_instance_expires_after_its_ttl(client: Redis) -> None:
    prefix = RedisServer.prefix()
    dead, watcher = await started(client, prefix), await started(client, prefix)
    try:
        await freeze(dead)
        assert await watcher.alive(dead.id)
        await wait_until(lambda: _not(watcher, dead.id), what="the dead instance's key to expire")
        assert await watcher.live_instances() == [watcher.id]
    finally:
        await watcher.stop()


async def _not(watcher: Instance, instance_id: str) -> bool:
    return not await watcher.alive(instance_id)


async def test_a_lost_key_comes_back_on_the_next_beat(client: Redis) -> None:
    prefix = RedisServer.prefix()
    instance = await started(client, prefix)
    try:
        await client.delete(f"{prefix}:inst:{instance.id}")  # as after a Redis restart
        await wait_until(lambda: instance.alive(instance.id))
    finally:
        await instance.stop()


async def test_the_heartbeat_survives_redis_going_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    redis = Redis.from_url(server.url, decode_responses=True)
    instance = Instance(redis, "p", ttl_s=TTL_S, beat_s=BEAT_S)
    try:
        await instance.start()
        server.stop()
        with caplog.at_level(logging.WARNING, logger="voice_call.cluster"):
            await wait_until(lambda: "heartbeat failed" in caplog.text)
        server.start()  # empty: it kept nothing on disk
        await wait_until(lambda: _alive_after_restart(instance))
    finally:
        await instance.stop()
        await redis.aclose()
        server.stop()


async def _alive_after_restart(instance: Instance) -> bool:
    try:
        return await instance.alive(instance.id)
    except RedisError:
        return False


async def test_live_instances_reads_the_prefix_as_plain_text(client: Redis) -> None:
    prefix = RedisServer.prefix()
    star = await started(client, f"{prefix}*")
    plain = await started(client, f"{prefix}x")
    try:
        assert await star.live_instances() == [star.id]
    finally:
        await star.stop()
        await plain.stop()


def test_a_heartbeat_slower_than_the_ttl_is_refused(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="shorter than the TTL"):
        Instance(Redis.from_url(redis_server.url), "p", ttl_s=1.0, beat_s=1.0)


async def test_fresh_only_while_the_key_surely_lives_and_a_lapse_is_counted(
    client: Redis,
) -> None:
    # The router serves calls it owns without asking Redis only while `fresh()`; a key that
    # expired between two renewals (a stalled loop) is a lapse: others may have taken its calls.
    instance = await started(client, RedisServer.prefix())
    try:
        assert instance.fresh() and instance.lapses == 0
        await freeze(instance)
        await asyncio.sleep(TTL_S / 2 + 0.05)
        assert not instance.fresh()  # half the lifetime gone: no longer sure
        await asyncio.sleep(TTL_S)  # the key expired
        assert not await instance.alive(instance.id)
        instance._beat = asyncio.create_task(instance._heartbeat())  # the loop wakes up again
        await wait_until(instance.fresh, 2, what="a renewal after the stall")
        assert instance.lapses == 1
    finally:
        await instance.stop()


async def test_stop_waits_for_a_beat_in_flight_so_its_set_cannot_outlive_the_del(
    client: Redis,
) -> None:
    # A SET already on the wire is not undone by cancelling the task that sent it (modelled by
    # a shielded, delayed SET): stop() must let the beat finish before it deletes the key, or
    # the late SET brings a stopped instance back to life for a whole TTL.
    prefix = RedisServer.prefix()
    instance = Instance(client, prefix, ttl_s=5.0, beat_s=0.05)
    sending = asyncio.Event()
    set_key = instance._set_key

    async def on_the_wire() -> None:
        await asyncio.sleep(0.2)
        await set_key()

    async def slow_set() -> None:
        sending.set()
        await asyncio.shield(on_the_wire())

    await instance.start()
    instance._set_key = slow_set  # type: ignore[method-assign]
    await asyncio.wait_for(sending.wait(), 2)
    await instance.stop()
    await asyncio.sleep(0.3)  # anything still in flight has landed by now
    assert not await instance.alive(instance.id)
