"""Channel: request/reply between two Cluster objects over a real redis-server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import RedisError

from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster import Cluster
from voice_call.cluster.channel import Unreachable
from voice_call.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    TimedOut,
    Unavailable,
    VoiceCallError,
)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Cluster, Cluster]]:
    """Two started instances of one deployment."""
    prefix = RedisServer.prefix()
    a, b = Cluster(redis_server.url, prefix), Cluster(redis_server.url, prefix)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def echo(payload: dict[str, Any]) -> Any:
    return {"got": payload, "list": [1, "two", None, True]}


async def test_a_request_reaches_the_other_instance_and_returns_its_result(
    pair: tuple[Cluster, Cluster],
) -> None:
    a, b = pair
    assert a.id == a.instance.id == a.channel.id != b.id
    b.channel.handle("echo", echo)
    result = await a.channel.request(b.id, "echo", {"x": 1, "s": "é"})
    assert result == {"got": {"x": 1, "s": "é"}, "list": [1, "two", None, True]}


async def test_a_request_to_itself_runs_the_handler_directly(
    redis_server: RedisServer,
) -> None:
    a = Cluster(redis_server.url, RedisServer.prefix())  # not even started: no Redis needed
    a.channel.handle("echo", echo)
    assert (await a.channel.request(a.id, "echo", {"x": 1}))["got"] == {"x": 1}
    with pytest.raises(NotFound):
        await a.channel.request(a.id, "nope", {})
    await a.stop()


@pytest.mark.parametrize("error", [NotFound, Conflict, InvalidInput, TimedOut, Unavailable])
async def test_a_remote_error_comes_back_as_the_same_class(
    pair: tuple[Cluster, Cluster], error: type[VoiceCallError]
) -> None:
    a, b = pair

    async def fail(payload: dict[str, Any]) -> Any:
        raise error(f"call {payload['c']} says no — fix it")

    b.channel.handle("fail", fail)
    with pytest.raises(error) as caught:
        await a.channel.request(b.id, "fail", {"c": "c1"})
    assert type(caught.value) is error
    assert caught.value.message == "call c1 says no — fix it"


async def test_a_remote_crash_is_unavailable_and_logged_there(
    pair: tuple[Cluster, Cluster], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair

    async def crash(payload: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    b.channel.handle("crash", crash)
    with pytest.raises(Unavailable, match=f"instance {b.id} failed: boom"):
        await a.channel.request(b.id, "crash", {})
    assert any(r.exc_info for r in caplog.records if r.name == "voice_call.cluster.channel")


async def test_an_unknown_op_is_not_found(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    with pytest.raises(NotFound, match="does not serve 'nope'"):
        await a.channel.request(b.id, "nope", {})


async def test_a_result_that_is_not_json_is_unavailable(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair

    async def odd(payload: dict[str, Any]) -> Any:
        return {1, 2}

    b.channel.handle("odd", odd)
    with pytest.raises(Unavailable, match=f"instance {b.id} failed"):
        await a.channel.request(b.id, "odd", {})


async def test_nobody_listening_is_unreachable_at_once(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    with pytest.raises(Unreachable, match="unreachable"):
        await a.channel.request("0123456789ab", "echo", {}, timeout_s=30)
    await b.stop()
    with pytest.raises(Unreachable):
        await a.channel.request(b.id, "echo", {}, timeout_s=30)


async def test_no_reply_in_time_is_timed_out_and_a_late_reply_is_ignored(
    pair: tuple[Cluster, Cluster],
) -> None:
    a, b = pair
    release = asyncio.Event()
    done = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> Any:
        await release.wait()
        done.set()
        return "late"

    b.channel.handle("slow", slow)
    b.channel.handle("echo", echo)
    with pytest.raises(TimedOut, match=f"instance {b.id} did not answer 'slow' within 0.2 s"):
        await a.channel.request(b.id, "slow", {}, timeout_s=0.2)
    release.set()
    await done.wait()
    assert (await a.channel.request(b.id, "echo", {"n": 2}))["got"] == {"n": 2}


async def test_a_long_handler_does_not_hold_up_other_requests(
    pair: tuple[Cluster, Cluster],
) -> None:
    a, b = pair
    release = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> Any:
        await release.wait()
        return "slow done"

    b.channel.handle("slow", slow)
    b.channel.handle("echo", echo)
    a.channel.handle("echo", echo)
    waiting = asyncio.create_task(a.channel.request(b.id, "slow", {}))
    assert (await a.channel.request(b.id, "echo", {"n": 1}))["got"] == {"n": 1}
    assert (await b.channel.request(a.id, "echo", {"n": 2}))["got"] == {"n": 2}
    assert not waiting.done()
    release.set()
    assert await waiting == "slow done"


async def test_many_requests_at_once_each_get_their_own_reply(
    pair: tuple[Cluster, Cluster],
) -> None:
    a, b = pair

    async def double(payload: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        return payload["n"] * 2

    b.channel.handle("double", double)
    results = await asyncio.gather(
        *(a.channel.request(b.id, "double", {"n": n}) for n in range(100))
    )
    assert results == [n * 2 for n in range(100)]


async def test_stop_fails_the_requests_waiting_for_a_reply(
    pair: tuple[Cluster, Cluster],
) -> None:
    a, b = pair
    started = asyncio.Event()

    async def forever(payload: dict[str, Any]) -> Any:
        started.set()
        await asyncio.Event().wait()

    b.channel.handle("forever", forever)
    waiting = asyncio.create_task(a.channel.request(b.id, "forever", {}))
    await started.wait()
    await a.channel.stop()
    with pytest.raises(Unavailable, match=f"instance {a.id} is stopping"):
        await waiting
    with pytest.raises(Unavailable, match="channel is stopped"):
        await a.channel.request(b.id, "forever", {})


async def test_a_stopping_instance_fails_the_requests_it_serves(
    pair: tuple[Cluster, Cluster],
) -> None:
    a, b = pair
    started = asyncio.Event()

    async def forever(payload: dict[str, Any]) -> Any:
        started.set()
        await asyncio.Event().wait()

    b.channel.handle("forever", forever)
    waiting = asyncio.create_task(a.channel.request(b.id, "forever", {}))
    await started.wait()
    await b.stop()
    with pytest.raises(Unavailable, match=f"instance {b.id} is stopping"):
        await waiting


async def test_the_channel_comes_back_after_redis_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    a, b = Cluster(server.url, "p"), Cluster(server.url, "p")
    b.channel.handle("echo", echo)
    try:
        await a.start()
        await b.start()
        with caplog.at_level(logging.WARNING, logger="voice_call.cluster"):
            server.stop()
            await wait_until(lambda: "channel connection lost" in caplog.text)
            server.start()

            async def answers() -> bool:
                try:
                    return bool(await a.channel.request(b.id, "echo", {}, timeout_s=1))
                except (Unavailable, RedisError):
                    return False

            await wait_until(answers, what="a request to work after the restart")
            assert "channel reconnected" in caplog.text
            await wait_until(
                lambda: a.instance.alive(b.id), what="b's heartbeat to restore its key"
            )
    finally:
        await a.stop()
        await b.stop()
        server.stop()


async def test_start_on_a_redis_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # never started: nothing listens on its port
    cluster = Cluster(f"redis://user:secret@127.0.0.1:{server.port}/0", "p")
    with pytest.raises(Unavailable, match="cannot join the cluster") as caught:
        await cluster.start()
    assert "secret" not in caught.value.message
    assert "fix store.url" in caught.value.message


async def test_an_instance_that_dies_holding_a_request_is_unreachable_not_a_timeout(
    pair: tuple[Cluster, Cluster],
) -> None:
    # kill -9 while a request is in its hands: the reply never comes, but its liveness key
    # goes, and the requester learns that within a poll instead of the whole timeout.
    a, b = pair
    a.channel.liveness_poll_s = 0.05
    release = asyncio.Event()

    async def hang(payload: dict[str, Any]) -> Any:
        await release.wait()
        return "never seen"

    b.channel.handle("hang", hang)
    request = asyncio.ensure_future(a.channel.request(b.id, "hang", {}, timeout_s=30))
    await asyncio.sleep(0.2)
    assert not request.done()  # alive and busy: the requester waits
    await a.redis.delete(f"{a.prefix}:inst:{b.id}")  # its key expired: it is dead
    async with asyncio.timeout(2):
        with pytest.raises(Unreachable, match=f"instance {b.id} died before answering 'hang'"):
            await request
    release.set()
