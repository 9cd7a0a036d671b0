"""A call that ends at its owner (A) also ends at the other instances, against a real
redis-server: what B holds for the call (STT warmed where the carrier's answer landed, a stream
let go) goes as soon as B's event feed brings the end, not when its own timer fires; a call that
ends at B itself is cleaned up once; a failing listener does not stop B's feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.cluster.stack import Member, cluster_stack
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster.feed import EventFeed
from voice_call.speech.stt.fake import FakeStt

TOKEN_TTL_S = 600  # what warms unused lives this long: far past every wait below


@asynccontextmanager
async def streaming_pair(root: Path, redis: RedisServer) -> AsyncIterator[tuple[Member, Member]]:
    """Two instances with streamed calls on offline speech (fake STT and TTS)."""
    streaming = {"enabled": True, "provider": "fake", "tokenTtlSeconds": TOKEN_TTL_S}
    async with cluster_stack(
        root, redis, streaming=streaming, tts={"provider": "fake"}, mock={"silent": True}
    ) as (a, b):
        yield a, b


async def warm_at(member: Member, call_id: str) -> FakeStt:
    """The call's answer stream handed out at `member`, as on the carrier's answered webhook:
    its STT connects there now (the registry's own session, to watch it close)."""
    media = member.runtime.media
    media.answer_stream(member.runtime.webhook_url(), call_id, await member.record(call_id))
    stt = media._prewarmed[call_id][0]
    assert isinstance(stt, FakeStt)
    await wait_until(lambda: stt.connected, what=f"STT warmed for {call_id}")
    return stt


def feed_of(member: Member) -> EventFeed:
    feed = member.runtime.feed
    assert feed is not None
    return feed


async def test_a_call_ended_at_its_owner_closes_what_another_instance_warmed_for_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with streaming_pair(tmp_path, redis_server) as (a, b):
        call_id = await a.new_call()
        assert await a.cluster.ownership.owner(call_id) == a.id
        stt = await warm_at(b, call_id)
        b.runtime.media.let_go(call_id)  # as a bridge at B does before the carrier takes over

        await a.runtime.manager.end(call_id)

        await wait_until(lambda: stt.closed, timeout=5, what="B closed the STT it warmed")
        assert call_id not in b.runtime.media._prewarmed
        assert call_id not in b.runtime.media._let_go


async def test_a_call_ended_here_is_cleaned_up_once_though_the_feed_brings_its_end_again(
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with streaming_pair(tmp_path, redis_server) as (_, b):
        call_id = await b.new_call()
        stt = await warm_at(b, call_id)
        closes: list[str] = []
        close = stt.close

        async def counted() -> None:
            closes.append(call_id)
            await close()

        monkeypatch.setattr(stt, "close", counted)
        heard: list[str] = []
        feed_of(b).end_listeners.append(heard.append)  # after the registry's own listener

        await b.runtime.manager.end(call_id)

        await wait_until(lambda: call_id in heard, what="B's feed brought the end back")
        await wait_until(lambda: stt.closed, what="the warmed STT closed")
        assert closes == [call_id]
        failed = ("end listener failed", "background task failed")
        assert not [r for r in caplog.records if any(f in r.getMessage() for f in failed)]


async def test_a_failing_end_listener_neither_stops_the_feed_nor_the_other_listeners(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with streaming_pair(tmp_path, redis_server) as (a, b):

        def broken(call_id: str) -> None:
            raise RuntimeError("a listener's bug")

        feed_of(b).end_listeners.insert(0, broken)
        never_seen_at_b = await a.new_call()  # its end at B: nothing to clean, no error
        first, second = await a.new_call(), await a.new_call()
        warm = [await warm_at(b, first), await warm_at(b, second)]

        await a.runtime.manager.end(never_seen_at_b)
        await a.runtime.manager.end(first)
        await wait_until(lambda: warm[0].closed, timeout=5, what="the first STT closed")
        await a.runtime.manager.end(second)  # the feed still reads
        await wait_until(lambda: warm[1].closed, timeout=5, what="the second STT closed")

        failures = [r for r in caplog.records if "end listener failed" in r.getMessage()]
        assert {never_seen_at_b, first, second} <= {r.getMessage().split()[-1] for r in failures}
