"""The webhook replay cache shared in Redis (cluster/replay.py): a carrier's retry that reaches
another instance than the first delivery is a replay there too, answered as the first was; a
replay cache that cannot be reached is a 503 with nothing applied."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.cluster.stack import Member, cluster_stack
from tests.server.stack import TEST_LIMITS, server_config
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster.replay import RedisReplayCache
from voice_call.errors import Unavailable
from voice_call.runtime import Runtime
from voice_call.security.replay import CachedResponse
from voice_call.server.app import build_app
from voice_call.server.serve import start_background

HOOK = "/voice/webhook"
ANSWER = CachedResponse(200, "<Response/>", "text/xml")


@pytest.fixture
async def pair(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Member]]:
    async with cluster_stack(tmp_path, redis_server, 2, serve=True) as members:
        yield members


def same_url(member: Member) -> dict[str, str]:
    """The Host of `member`'s URL: a balancer forwards one URL (the one signed) to either."""
    assert member.server is not None
    return {"Host": f"127.0.0.1:{member.server.port}"}


async def test_a_replay_at_another_instance_gets_the_first_answer_and_changes_nothing(
    pair: list[Member],
) -> None:
    a, b = pair
    call_id = await a.new_call()
    body = json.dumps({"event": {"type": "call.dtmf", "callId": call_id, "digits": "5"}})
    first = await a.http.post(HOOK, content=body)
    assert first.json() == {"results": ["applied"]}
    for _ in range(2):
        again = await b.http.post(HOOK, content=body, headers=same_url(a))
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert again.headers["content-type"] == first.headers["content-type"]
    logged = await b.runtime.store.events(call_id=call_id)
    assert [e.type for e in logged].count("call.dtmf") == 1  # applied once, at A


async def test_a_replay_at_b_while_a_still_applies_it_is_a_503_then_the_first_answer(
    pair: list[Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    call_id = await a.new_call()
    entered, release = asyncio.Event(), asyncio.Event()
    real = a.runtime.handle_event

    async def slow(event: Any) -> str:
        entered.set()
        await release.wait()
        return await real(event)

    monkeypatch.setattr(a.runtime, "handle_event", slow)
    body = json.dumps({"event": {"type": "call.dtmf", "callId": call_id, "digits": "7"}})
    first = asyncio.create_task(a.http.post(HOOK, content=body))
    async with asyncio.timeout(10):
        await entered.wait()
    busy = await b.http.post(HOOK, content=body, headers=same_url(a))
    assert busy.status_code == 503  # A may yet fail or die: the carrier should come back
    assert busy.json()["error"] == "the first delivery is still being processed; retry later"
    release.set()
    assert (await first).json() == {"results": ["applied"]}
    again = await b.http.post(HOOK, content=body, headers=same_url(a))
    assert again.json() == {"results": ["applied"]}


async def test_a_replay_while_another_instance_applies_it_is_asked_to_retry(
    redis_server: RedisServer,
) -> None:
    prefix = RedisServer.prefix()
    a = RedisReplayCache(Redis.from_url(redis_server.url, decode_responses=True), prefix)
    b = RedisReplayCache(Redis.from_url(redis_server.url, decode_responses=True), prefix)
    assert b.retry_while_pending
    assert await a.reserve("k") == (False, None)
    assert await b.reserve("k") == (True, None)  # pending: the webhook answers 503
    await a.complete("k", ANSWER)
    assert await b.reserve("k") == (True, ANSWER)
    await b.release("k")
    assert await a.reserve("k") == (False, None)  # released: processed afresh


async def test_a_reservation_whose_instance_died_expires_and_the_retry_is_processed(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    prefix = RedisServer.prefix()
    dead = RedisReplayCache(client, prefix, pending_s=0.2)
    assert await dead.reserve("k") == (False, None)  # ...and never completes
    other = RedisReplayCache(client, prefix)

    async def processed_afresh() -> bool:
        return await other.reserve("k") == (False, None)

    await wait_until(processed_afresh, what="the pending reservation to expire")
    await other.complete("k", ANSWER)  # the answer is kept for the full TTL, not the lease
    ttl = await client.pttl(f"{prefix}:replay:k")
    assert 590_000 < ttl <= 600_000
    await client.aclose()


async def test_a_replay_cache_that_is_down_is_a_503_and_nothing_is_applied(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    client = Redis.from_url(redis.url, decode_responses=True)
    runtime = Runtime(server_config(), tmp_path / "home")
    runtime.replay = RedisReplayCache(client, RedisServer.prefix())
    server = await start_background(runtime, app=build_app(runtime, limits=TEST_LIMITS))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            call = await runtime.manager.initiate(to="+15555550123", message="hi")
            body = json.dumps({"event": {"type": "call.dtmf", "callId": call.call_id}})
            redis.stop()
            refused = await http.post(HOOK, content=body)
            assert refused.status_code == 503
            assert refused.json()["error"] == "could not check for a replay now; retry later"
            logged = await runtime.store.events(call_id=call.call_id)
            assert "call.dtmf" not in [e.type for e in logged]
            with pytest.raises(Unavailable, match="the Redis replay cache failed"):
                await runtime.replay.release("k")
    finally:
        await server.stop()
        await client.aclose()
        redis.stop()
