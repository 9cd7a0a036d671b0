"""Taking over the calls of a dead instance (cluster/adoption.py, the router, CallManager.adopt):
exactly one live instance adopts each orphan, restores it once and re-arms its timers, so they
fire once across the cluster; calls a live instance owns are never touched by another."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cluster.stack import Member, cluster_stack
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster.adoption import AdoptionSweep
from voice_call.models import CallEvent, CallRecord, CallState, Direction, EventType, Mode
from voice_call.runtime import Runtime
from voice_call.store.base import LoggedEvent


def _of(events: list[LoggedEvent], kind: str) -> list[LoggedEvent]:
    return [event for event in events if event.type == kind]


def _ledger(member: Member, op: str, pid: str) -> int:
    rows = member.mock.ledger.entries()
    return sum(1 for row in rows if row["op"] == op and row["providerCallId"] == pid)


async def test_a_dead_owner_s_call_is_adopted_once_and_its_max_duration_fires_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(
        tmp_path, redis_server, 3, maxDurationSeconds=12, mock={"silent": True}
    ) as (a, b, c):
        call_id = await a.new_call()
        pid = (await a.record(call_id)).provider_call_id
        assert pid is not None
        await a.kill(carrier_to=b)

        # B's and C's sweeps both look; one claims it once A's key has expired.
        await wait_until(lambda: _restored(b, call_id), 15, what="the call's adoption")
        owner = await b.cluster.ownership.owner(call_id)
        assert owner in (b.id, c.id)
        adopter, other = (b, c) if owner == b.id else (c, b)
        assert call_id in adopter.router.owned and call_id not in other.router.owned
        assert adopter.runtime.manager.timers.armed(call_id, "max-duration")
        assert not other.runtime.manager.timers.armed(call_id, "max-duration")

        # The max duration, re-armed from answered_at by the adopter alone, ends it once.
        record = await b.wait_record(call_id, lambda r: r.terminal, timeout=15)
        assert record.state == CallState.TIMEOUT
        for member in (b, c):  # another round of sweeps finds nothing to take
            assert await AdoptionSweep(member.router).sweep() == []
        events = await b.events(call_id)
        assert len(_of(events, "call.restored")) == 1
        assert [e.data["outcome"] for e in _of(events, "call.restored")] == ["kept"]
        assert len(_of(events, "bot.hangup")) == 1
        assert _ledger(b, "hangup", pid) == 1
        assert _ledger(b, "dial", pid) == 1
        await wait_until(lambda: _no_owner(b, call_id), what="the owner key released")


async def _restored(member: Member, call_id: str) -> bool:
    return bool(_of(await member.events(call_id), "call.restored"))


async def _no_owner(member: Member, call_id: str) -> bool:
    return await member.cluster.ownership.owner(call_id) is None


async def test_an_event_for_a_dead_owner_s_call_waits_for_it_then_is_applied_here(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, 3, mock={"silent": True}) as (a, b, c):
        call_id = await a.new_call()
        await a.kill()
        digits = [
            CallEvent(type=EventType.DTMF, call_id=call_id, digits=str(n), dedupe_key=f"d{n}")
            for n in range(4)
        ]
        # Events at B and C at once: each waits for A's key to expire, then one adopts.
        outcomes = await asyncio.gather(
            *(
                member.runtime.handle_event(event)
                for member, event in zip((b, c, b, c), digits, strict=True)
            )
        )
        assert outcomes == ["applied"] * 4
        events = await b.events(call_id)
        assert len(_of(events, "call.restored")) == 1
        assert sorted(e.data["digits"] for e in _of(events, "call.dtmf")) == ["0", "1", "2", "3"]
        owner = await b.cluster.ownership.owner(call_id)
        assert owner in (b.id, c.id)
        # A command for it now goes to the adopter, wherever it lands.
        for member in (b, c):
            await member.runtime.dispatch("voicecall.speak", {"callId": call_id, "message": "Hi"})
        adopter = b if owner == b.id else c
        pid = (await b.record(call_id)).provider_call_id
        assert adopter.mock.callees[str(pid)].heard == ["Hi", "Hi"]


async def test_a_graceful_stop_hands_its_calls_to_the_others_at_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, 2, mock={"silent": True}) as (a, b):
        call_id = await a.new_call()
        await a.runtime.stop()  # a rolling deploy: its key goes now, not after the TTL
        b.router.new_call_grace_s = 0  # the call is a few ms old: no wait for its creator
        sweep = AdoptionSweep(b.router)
        assert await sweep.sweep() == [call_id]
        assert await sweep.sweep() == []
        assert await b.cluster.ownership.owner(call_id) == b.id


async def test_a_call_saved_moments_ago_is_left_to_its_creator(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Its owner key is written right after its first save: no sweep takes it in between."""
    async with cluster_stack(tmp_path, redis_server, 2) as (_, b):
        now = b.runtime.clock.now()
        fresh, old = _ringing(now), _ringing(now - 60)
        for record in (fresh, old):
            await b.runtime.store.save(record)
        assert await AdoptionSweep(b.router).sweep() == [old.call_id]
        assert await b.cluster.ownership.owner(fresh.call_id) is None


async def test_the_reaper_reaps_only_the_calls_of_its_own_instance(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, 2, staleCallReaperSeconds=30) as (a, b):
        stale = _ringing(a.runtime.clock.now() - 120)
        await a.runtime.store.save(stale)
        await a.cluster.ownership.take_new(stale.call_id)
        assert await b.runtime.manager.reap_stale() == 0
        assert not (await b.record(stale.call_id)).terminal
        assert await a.runtime.manager.reap_stale() == 1
        assert (await a.record(stale.call_id)).state == CallState.TIMEOUT


async def test_a_streamed_call_whose_stream_holder_died_is_ended_by_its_adopter(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, 2, mock={"silent": True}) as (a, b):
        call_id = await a.new_call()
        redis = a.cluster.redis
        await redis.set(f"{a.cluster.prefix}:stream:{call_id}", a.id)  # its socket was at A
        await a.kill()
        await redis_server_del(b, a.id)  # A's key gone: it died a TTL ago
        b.router.new_call_grace_s = 0
        assert await AdoptionSweep(b.router).sweep() == [call_id]
        record = await b.wait_record(call_id, lambda r: r.terminal)
        assert record.state == CallState.ERROR
        assert a.id in str(record.metadata.get("error"))


async def redis_server_del(member: Member, instance_id: str) -> None:
    await member.cluster.redis.delete(f"{member.cluster.prefix}:inst:{instance_id}")


async def test_a_restarted_instance_restores_only_orphans_at_start(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, 2, mock={"silent": True}) as (a, b):
        kept = await a.new_call()
        orphan = await b.new_call()
        await b.kill()
        await redis_server_del(a, b.id)
        # A restart in the same deployment: a new instance id, on the same store.
        again = Runtime(a.runtime.config, a.runtime.home)
        assert again.router is not None
        again.router.new_call_grace_s = 0
        await again.start()
        try:
            assert again.restored == {"kept": 1}
            assert again.cluster is not None
            assert await again.cluster.ownership.owner(orphan) == again.cluster.id
            assert await again.cluster.ownership.owner(kept) == a.id
        finally:
            await again.stop()


def _ringing(started: float) -> CallRecord:
    return CallRecord(
        provider="mock",
        provider_call_id=None,
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550000000",
        to_number="+15555550123",
        state=CallState.RINGING,
        started_at=started,
    )


async def test_an_adopted_notify_call_already_said_gets_its_hang_up_armed_again(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    overrides = {"outbound": {"notifyHangupDelaySec": 30}, "mock": {"silent": True}}
    async with cluster_stack(tmp_path, redis_server, 2, **overrides) as (a, b):
        call_id = await a.new_call(Mode.NOTIFY)
        await a.wait_record(call_id, lambda r: r.metadata.get("greeted") is True)
        assert a.runtime.manager.timers.armed(call_id, "notify-hangup")
        await a.kill()
        await redis_server_del(b, a.id)
        b.router.new_call_grace_s = 0
        assert await AdoptionSweep(b.router).sweep() == [call_id]
        assert b.runtime.manager.timers.armed(call_id, "notify-hangup")


async def test_a_call_whose_owner_died_mid_greeting_is_greeted_and_listened_to_by_its_adopter(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # The owner logged `bot.speaking` for the greeting and died before marking it said: the
    # adopter must not leave the call speaking forever (nobody would listen to the callee).
    async with cluster_stack(tmp_path, redis_server, 2, mock={"silent": True}) as (a, b):
        call_id = await a.new_call(Mode.CONVERSATION)
        said = await a.wait_record(call_id, lambda r: r.metadata.get("greeted") is True)
        await a.kill()
        await redis_server_del(b, a.id)
        died = said.model_copy(deep=True)  # the record as it was mid-greeting
        died.state = CallState.SPEAKING
        died.metadata.pop("greeted")
        died.metadata["initialMessage"] = "Hello there"
        await b.runtime.store.save(died)
        b.router.new_call_grace_s = 0
        assert await AdoptionSweep(b.router).sweep() == [call_id]
        after = await b.wait_record(
            call_id,
            lambda r: r.metadata.get("greeted") is True and r.state == CallState.LISTENING,
            what="the greeting said again and the callee listened to",
        )
        # said again by the adopter (the transcript is append-only: the first line stays)
        assert [e.text for e in after.transcript] == ["Hello there", "Hello there"]
        kinds = [e.type for e in await b.events(call_id)]
        assert kinds.count("bot.greeted") == 2 and kinds[-1] == "bot.listening", kinds
