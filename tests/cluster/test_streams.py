"""Live media streams in a cluster, against a real redis-server: a stream held by one instance
is driven from another (speak, play, clear, finish, close) over the real channel; a holder that
died fails speech cleanly and gets its call ended with the reason on the record.

The holder's stream is a real MediaSession (fake STT and TTS, its frames in a recording outbox:
tests/media/stack.py), registered in the holder's real MediaSessions; a carrier stand-in acks
its marks, as Twilio does once the audio played.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.cluster.stack import SECRET, cluster_stack
from tests.cluster.test_instance import freeze
from tests.media.stack import FakeSpeech, SessionHarness
from tests.server.console.stack import logged_in
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.clock import FakeClock
from voice_call.cluster import Cluster
from voice_call.cluster.streams import (
    ClusterStreams,
    RemoteSession,
    end_if_stream_lost,
)
from voice_call.config import parse_config
from voice_call.media.playback import PlaybackStatus, SessionClosed
from voice_call.media.registry import MediaSessions
from voice_call.media.stream_protocols import MarkAck
from voice_call.models import CallEvent, CallRecord, CallState, Direction, Mode
from voice_call.providers.base import ProviderError
from voice_call.providers.streamed_speech import StreamedSpeech
from voice_call.security.stream_tokens import ANSWER

CALL = "call-1"  # SessionHarness's call
LONG = " ".join(["This sentence keeps the line busy for a good while."] * 12)


@dataclass
class Node:
    """One instance: its cluster membership and its media registry."""

    cluster: Cluster
    media: MediaSessions
    clock: FakeClock
    ended: list[tuple[str, CallState]] = field(default_factory=list)

    def speech(self, *, replaces: bool = False) -> StreamedSpeech:
        """What a provider at this instance speaks through."""
        helper = StreamedSpeech(self.media.config, native_replaces_stream=replaces)
        helper.attach(self.media)
        return helper

    async def holder(self, call_id: str = CALL) -> str | None:
        return await self.cluster.ownership.stream_holder(call_id)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    """Two started instances on one fresh prefix, each with its own MediaSessions."""
    config = parse_config(
        {
            "provider": "twilio",
            "fromNumber": "+15550001234",
            "twilio": {"accountSid": "AC1", "authToken": "t"},
            "streaming": {"enabled": True, "tokenSecret": SECRET},
        },
        env={},
    )
    prefix = RedisServer.prefix()
    nodes: list[Node] = []
    try:
        for _ in range(2):
            cluster = Cluster(redis_server.url, prefix)
            await cluster.start()
            clock = FakeClock()
            node = Node(cluster, None, clock)  # type: ignore[arg-type]

            async def sink(event: CallEvent) -> None:
                return None

            async def end(call_id: str, reason: CallState, node: Node = node) -> None:
                node.ended.append((call_id, reason))

            node.media = MediaSessions(
                config,
                sink=sink,
                end_call=end,
                clock=clock,
                speech=FakeSpeech(),
                shared=ClusterStreams(cluster),
            )
            nodes.append(node)
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            await node.media.close()
            with contextlib.suppress(Exception):
                await node.cluster.stop()


@pytest.fixture
async def held(pair: tuple[Node, Node]) -> AsyncIterator[tuple[Node, Node, SessionHarness]]:
    """`pair` with CALL's stream live at the second instance (its holder), marks acked."""
    a, b = pair
    stream = SessionHarness()
    b.media.register(stream.session)
    await wait_until(lambda: b.holder(), what="the stream to be recorded as held")
    acks = asyncio.create_task(_carrier_acks(stream))
    try:
        yield a, b, stream
    finally:
        acks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acks
        await stream.close()


async def _carrier_acks(stream: SessionHarness) -> None:
    """The carrier's side: every mark comes back once its audio played."""
    acked: set[str] = set()
    while True:
        for mark in stream.wire.of("mark"):
            name = mark["mark"]["name"]
            if name not in acked:
                acked.add(name)
                stream.session.handle(MarkAck(name))
        stream.wire.changed.clear()
        await stream.wire.changed.wait()


def call(call_id: str = CALL) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="twilio",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        **{"from": "+15550001000", "to": "+15550002000"},
        started_at=0.0,
    )


class Native:
    """The carrier's own voice, as a provider hands it to StreamedSpeech."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, text: str) -> Callable[[], Awaitable[None]]:
        async def say() -> None:
            self.said.append(text)

        return say


async def hang(node: Node) -> None:
    """The instance hangs for good: no heartbeat, its key gone (as once its TTL ran out); its
    channel still takes requests but what it is playing never ends in time to answer."""
    await freeze(node.cluster.instance)
    await node.cluster.redis.delete(node.cluster.instance.key(node.cluster.id))


# ---------------------------------------------------------------------- driving a remote stream


async def test_speech_at_one_instance_plays_on_the_stream_another_holds(
    held: tuple[Node, Node, SessionHarness],
) -> None:
    a, b, stream = held
    assert a.media.get(CALL) is None  # not live here...
    remote = await a.media.find(CALL)
    assert isinstance(remote, RemoteSession) and remote.holder == b.cluster.id  # ...but there
    native = Native()
    heard = await asyncio.wait_for(a.speech().say(call(), "Hello there.", native("Hi")), 10)
    assert heard is None and native.said == []  # heard whole, over the stream
    assert stream.session.audio_frames > 0 and stream.wire.of("media")
    assert await a.speech().live(CALL)
    result = await asyncio.wait_for(remote.speak("Second one."), 10)
    assert (result.status, result.heard_text) == (PlaybackStatus.PLAYED, "Second one.")
    assert result.audio_ms > 0 and result.heard_ms == result.audio_ms


async def test_digits_sent_at_one_instance_play_into_the_stream_another_holds(
    held: tuple[Node, Node, SessionHarness],
) -> None:
    a, _, stream = held
    assert await asyncio.wait_for(a.speech().send_digits(call(), "12#"), 10)
    assert stream.session.audio_frames > 0
    assert not stream.events  # tones are never reported as something the bot said


async def test_clear_finish_and_close_reach_the_holder(
    held: tuple[Node, Node, SessionHarness],
) -> None:
    a, _, stream = held
    remote = await a.media.find(CALL)
    assert remote is not None
    long = remote.speak(LONG)
    await wait_until(lambda: stream.wire.of("media"), what="the long reply to start playing")
    remote.clear()
    cut = await asyncio.wait_for(long, 10)
    assert cut.status == PlaybackStatus.INTERRUPTED and len(cut.heard_text) < len(LONG)
    assert stream.wire.of("clear")  # the carrier was told to drop what it buffered

    short = remote.speak("Goodbye.")
    await asyncio.wait_for(remote.finish_playback(10), 15)  # returns once it was heard
    assert short.done() and short.result().status == PlaybackStatus.PLAYED

    await remote.close()
    assert stream.session.closed and remote.closed
    with pytest.raises(SessionClosed):
        remote.speak("Anyone there?")


async def test_a_stream_is_recorded_while_held_and_forgotten_when_it_ends(
    held: tuple[Node, Node, SessionHarness],
) -> None:
    a, b, stream = held
    assert await a.holder() == b.cluster.id
    b.media.stream_ended(stream.session, CallState.HANGUP_USER)

    async def forgotten() -> bool:
        return await a.holder() is None

    await wait_until(forgotten)
    assert await a.media.find(CALL) is None
    assert not await a.speech().live(CALL)


async def test_a_wait_at_one_instance_sees_the_stream_start_at_another(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    waiting = asyncio.create_task(a.media.wait_for(CALL, 5))
    stream = SessionHarness()
    try:
        await wait_until(lambda: CALL in a.media._waiters, what="a to wait for the stream")
        b.media.register(stream.session)  # the carrier's socket reached the other instance
        session = await asyncio.wait_for(waiting, 5)
        assert isinstance(session, RemoteSession) and session.holder == b.cluster.id
    finally:
        await stream.close()


async def test_a_stream_back_at_another_instance_within_the_grace_keeps_the_call(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    first, second = SessionHarness(), SessionHarness()
    try:
        b.media.register(first.session)
        await wait_until(lambda: b.holder(), what="b to hold the stream")
        a.media.register(second.session)  # the carrier reconnected, through the balancer to a

        async def at_a() -> bool:
            return await b.holder() == a.cluster.id

        await wait_until(at_a)
        b.media.stream_ended(first.session, CallState.HANGUP_USER)
        await b.clock.advance(b.media.config.streaming.drop_grace_ms / 1000 + 1)
        await wait_until(lambda: not b.media._tasks, what="b's grace to run out")
        assert b.ended == []  # the stream lives on at a: the call goes on
        assert await b.holder() == a.cluster.id  # and b did not drop a's record
    finally:
        await first.close()
        await second.close()


async def test_a_stream_token_minted_at_one_instance_opens_at_another(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    token = a.media.token(CALL)
    hook = "https://voice.example.com/voice/webhook"
    _, answer_a = a.media.answer_stream(hook, CALL)
    for minted in (token, answer_a):
        check = b.media.tokens.check(minted, CALL)
        assert check.ok and check.call_id == CALL
    # A retried answer at the other instance: its token differs, but both are the call's one
    # answer stream (the same grant, spent once in the shared store: media/registry.py `spend`).
    _, answer_b = b.media.answer_stream(hook, CALL)
    grants = {node.media.tokens.check(t).grant for node in pair for t in (answer_a, answer_b)}
    assert grants == {ANSWER}


# ---------------------------------------------------------------------- a holder that died


async def test_speech_for_a_crashed_holder_falls_back_to_the_carriers_voice(
    held: tuple[Node, Node, SessionHarness],
) -> None:
    a, b, _ = held
    remote = await a.media.find(CALL)
    assert isinstance(remote, RemoteSession)
    await b.cluster.channel.stop()  # crashed: its key lives on a few seconds, nobody listens
    native = Native()
    heard = await asyncio.wait_for(
        a.speech(replaces=True).say(call(), "Are you there?", native("Are you there?")), 10
    )
    assert heard is None and native.said == ["Are you there?"]  # nothing went out: one path
    queued = remote.speak("Hello?")
    result = await asyncio.wait_for(queued, 10)
    assert result.status == PlaybackStatus.FAILED and not result.audio_sent
    assert remote.closed and "stopped (instance " + b.cluster.id in str(result.error)


async def test_a_holder_that_dies_mid_playback_fails_the_speech_cleanly(
    held: tuple[Node, Node, SessionHarness],
) -> None:
    a, b, stream = held
    saying = asyncio.create_task(a.speech().say(call(), LONG, Native()("unused")))
    await wait_until(lambda: stream.wire.of("media"), what="the reply to start playing")
    await hang(b)  # no answer comes: only its heartbeat (gone) tells
    with pytest.raises(ProviderError, match=f"stopped \\(instance {b.cluster.id}\\)"):
        await asyncio.wait_for(saying, 10)
    remote = await a.media.find(CALL)
    assert remote is None  # a dead holder's stream is not offered any more


async def test_a_call_whose_stream_holder_died_is_ended_with_the_reason(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server) as (a, b):
        cluster, manager = a.cluster, a.runtime.manager
        lost, alive = await a.new_call(), await a.new_call()
        await cluster.redis.set(f"{cluster.prefix}:stream:{lost}", "deadbeef0000")
        await b.cluster.ownership.hold_stream(alive)

        assert await end_if_stream_lost(cluster, manager, lost)
        record = await a.record(lost)
        assert record.state == CallState.ERROR
        assert record.metadata["error"] == (
            "the instance holding this call's media stream stopped (instance deadbeef0000)"
        )
        assert await cluster.redis.get(f"{cluster.prefix}:stream:{lost}") is None

        assert not await end_if_stream_lost(cluster, manager, alive)  # its holder lives
        assert not (await a.record(alive)).terminal


async def test_listen_in_on_a_stream_held_by_another_instance_is_refused_with_the_reason(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, serve=True) as (a, b):
        assert a.server is not None
        call_id = await a.new_call()
        await b.cluster.ownership.hold_stream(call_id)
        async with httpx.AsyncClient(base_url=a.server.url, timeout=10) as http:
            csrf = await logged_in(http, a.runtime)
            path = f"/console/api/calls/{call_id}/listen"
            response = await http.post(path, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 409
        message = response.json()["error"]
        assert f"held by instance {b.id}" in message
        assert "only on the instance holding the stream" in message
