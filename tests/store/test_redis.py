"""RedisStore against a real redis-server: what only Redis does (its keys, TTLs, the stream ids
behind the seq cursor, connecting). What every store does: test_contract.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.store.contract import entry, event, make_record
from tests.store.redis_server import RedisServer
from tests.support import free_port, wait_until
from voice_call.errors import Unavailable
from voice_call.models import CallState
from voice_call.store.base import CallStore, DuplicateEvent
from voice_call.store.redis import RedisStore


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_server.url, prefix=RedisServer.prefix())
    await s.open()
    yield s
    await s.close()


def contents(server: RedisServer, prefix: str) -> dict[str, Any]:
    """Every key under the prefix with what it holds, to compare before and after."""
    client = server.client()
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(f"{prefix}:*")):
        kind = client.type(key)
        if kind == "string":
            out[key] = client.get(key)
        elif kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "list":
            out[key] = client.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(client.smembers(key))
        elif kind == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = client.xrange(key)
    client.close()
    return out


async def test_satisfies_protocol_with_the_hiredis_parser(store: RedisStore) -> None:
    typed: CallStore = store
    assert typed is store
    client = store._live()
    connection = await client.connection_pool.get_connection()
    try:
        assert type(connection._parser).__name__ == "_AsyncHiredisParser"
    finally:
        await client.connection_pool.release(connection)


async def test_a_duplicate_key_leaves_every_redis_key_as_it_was(
    store: RedisStore, redis_server: RedisServer
) -> None:
    record = make_record("c-d", state=CallState.RINGING, transcript=[entry(0)])
    await store.save(record, event("c-d", "call.ringing", key="dup"))
    before = contents(redis_server, store.prefix)
    newer = make_record(
        "c-d",
        state=CallState.COMPLETED,
        ended_at=5.0,
        provider_call_id="CA1",
        transcript=[entry(0), entry(1)],
    )
    with pytest.raises(DuplicateEvent):
        await store.save(newer, event("other-call", "call.completed", key="dup"))
    assert contents(redis_server, store.prefix) == before


async def test_the_event_log_is_a_stream_with_seq_ids(
    store: RedisStore, redis_server: RedisServer
) -> None:
    for i in range(3):
        await store.save(make_record(f"s{i}"), event(f"s{i}", key=f"k{i}"))
    client = redis_server.client()
    try:
        ids = [entry_id for entry_id, _ in client.xrange(f"{store.prefix}:events")]
        assert ids == ["1-0", "2-0", "3-0"]
        assert client.get(f"{store.prefix}:seq") == "3"
    finally:
        client.close()


async def test_an_ended_calls_dedupe_keys_expire_and_a_live_calls_do_not(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url, prefix=RedisServer.prefix(), dedupe_ttl_s=0.3)
    await store.open()
    client = redis_server.client()
    try:
        live = make_record("live")
        await store.save(live, event("live", key="live:1"))
        await store.save(make_record("ends"), event("ends", key="ends:1"))
        assert client.pttl(f"{store.prefix}:dk:ends:1") == -1  # no TTL while the call lives
        ended = make_record("ends", state=CallState.COMPLETED, ended_at=9.0)
        await store.save(ended, event("ends", key="ends:2"))
        assert 0 < client.pttl(f"{store.prefix}:dk:ends:1") <= 300
        assert 0 < client.pttl(f"{store.prefix}:dk:ends:2") <= 300
        await store.save(ended, event("ends", key="ends:late"))  # a late webhook's key too
        assert 0 < client.pttl(f"{store.prefix}:dk:ends:late") <= 300

        async def forgotten() -> bool:
            return not await store.seen("ends:1") and not await store.seen("ends:late")

        await wait_until(forgotten, what="the ended call's keys to expire")
        assert await store.seen("live:1")
        assert client.pttl(f"{store.prefix}:dk:live:1") == -1
        # The call itself stays until pruned.
        assert await store.get("ends") == ended
    finally:
        client.close()
        await store.close()


async def test_without_a_ttl_keys_stay_until_pruned(store: RedisStore) -> None:
    ended = make_record("e", state=CallState.COMPLETED, ended_at=9.0)
    await store.save(ended, event("e", key="e:1"))
    assert await store.seen("e:1")
    assert await store.prune(10.0) == 1
    assert not await store.seen("e:1")


async def test_prune_leaves_no_key_of_the_pruned_calls(
    store: RedisStore, redis_server: RedisServer
) -> None:
    keep = make_record("keep", transcript=[entry(0)])
    await store.save(keep, event("keep", key="keep:k"))
    before = contents(redis_server, store.prefix)
    gone = make_record(
        "gone",
        state=CallState.COMPLETED,
        ended_at=5.0,
        provider_call_id="CA-gone",
        transcript=[entry(0), entry(1)],
    )
    await store.save(gone, event("gone", key="gone:k"))
    await store.save(gone, event("gone", "bot.note"))
    assert await store.prune(10.0) == 1
    after = contents(redis_server, store.prefix)
    seq_key, log_key = f"{store.prefix}:seq", f"{store.prefix}:events"
    assert after[seq_key] == "3"  # the counter keeps going
    # The log keeps its entries of live calls only; every other key is as before.
    assert [entry_id for entry_id, _ in after.pop(log_key)] == ["1-0"]
    before.pop(log_key)
    after.pop(seq_key)
    before.pop(seq_key)
    assert after == before


async def test_deployments_sharing_a_redis_keep_apart(redis_server: RedisServer) -> None:
    a = RedisStore(redis_server.url, prefix=RedisServer.prefix())
    b = RedisStore(redis_server.url, prefix=RedisServer.prefix())
    await a.open()
    await b.open()
    try:
        await a.save(make_record("same-id"), event("same-id", key="k"))
        assert await b.get("same-id") is None
        assert not await b.seen("k")
        assert await b.last_seq() == 0
        await b.save(make_record("same-id"), event("same-id", key="k"))  # no duplicate
    finally:
        await a.close()
        await b.close()


async def test_a_unix_socket_url(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.unix_url, prefix=RedisServer.prefix())
    await store.open()
    try:
        await store.save(make_record("u"))
        assert (await store.get("u")) == make_record("u")
    finally:
        await store.close()


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(Unavailable) as caught:
        await RedisStore(url).open()
    message = str(caught.value)
    assert message.startswith(
        f"cannot reach the Redis call store at redis://127.0.0.1:{url.rsplit(':', 1)[1]}: "
    )
    assert message.endswith(" — start Redis there or fix store.url")
    assert "hunter2" not in message


async def test_a_wrong_password_is_a_clear_error(redis_server: RedisServer) -> None:
    client = redis_server.client()
    user = f"u{RedisServer.prefix()}"
    client.acl_setuser(user, enabled=True, passwords=["+right-one"], commands=["+@all"], keys="*")
    client.close()
    host = f"127.0.0.1:{redis_server.port}"
    with pytest.raises(Unavailable, match="cannot reach the Redis call store at redis://127"):
        await RedisStore(f"redis://{user}:wrong@{host}/0").open()
    store = RedisStore(f"redis://{user}:right-one@{host}/0", prefix=RedisServer.prefix())
    await store.open()
    await store.close()


def test_the_fixture_server_is_real(redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        assert client.info("server")["tcp_port"] == redis_server.port
    finally:
        client.close()


async def test_redis_down_is_unavailable_and_a_restarted_redis_has_everything(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    store = RedisStore(server.url, prefix=RedisServer.prefix())
    try:
        await store.open()
        kept = make_record("kept", transcript=[entry(0)])
        logged = await store.save(kept, event("kept", key="k1"))
        server.stop()
        later = make_record("kept", transcript=[entry(0), entry(1)])
        for attempt in (store.save(later, event("kept", key="k2")), store.get("kept")):
            with pytest.raises(Unavailable) as caught:
                await attempt
            assert str(caught.value).startswith(
                f"the Redis call store at redis://127.0.0.1:{server.port}/0 failed: "
            )
            assert str(caught.value).endswith(" — check that it runs and accepts writes")

        server.start()  # same port, same folder: the append-only file is read back

        async def answers() -> bool:
            try:
                return await store.get("kept") == kept
            except Unavailable:
                return False  # a connection from before the restart, dropped now

        await wait_until(answers, what="the store to reconnect")
        assert await store.events() == [logged]
        with pytest.raises(DuplicateEvent):
            await store.save(later, event("kept", key="k1"))
        out = await store.save(later, event("kept", key="k2"))  # the retry lands once
        assert out is not None and out.seq == 2
    finally:
        await store.close()
        server.stop()
