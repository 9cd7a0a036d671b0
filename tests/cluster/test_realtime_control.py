"""A realtime bridge's actions on its call (realtime/control.py) in a cluster, against a real
redis-server: the bridge runs where the media stream is held (B here), but hanging up, the
apology's speech and the digits run at the call's owner (A), under its lock, so its timers are
disarmed and its end listeners (which release the call's owner key) run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cluster.stack import Member, cluster_stack
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.media.playback import PlaybackResult
from voice_call.media.tap import MediaTap
from voice_call.models import CallRecord, CallState
from voice_call.realtime.tools import ToolError


def _ledger(member: Member, op: str, pid: str) -> int:
    rows = member.mock.ledger.entries()
    return sum(1 for row in rows if row["op"] == op and row["providerCallId"] == pid)


class HeldStream:
    """The call's live stream at the instance holding it; only its closing matters here."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.closed = False
        self.tap: MediaTap | None = None

    def speak(self, text: str, *, interruptible: bool = True) -> asyncio.Future[PlaybackResult]:
        raise AssertionError("the apology is said in the carrier's voice, not on the stream")

    def play(self, ulaw: bytes, label: str) -> asyncio.Future[PlaybackResult]:
        raise AssertionError("nothing is played on a stream let go")

    def clear(self) -> None:
        return None

    async def finish_playback(self, timeout_s: float | None = None) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


async def _owner_gone(member: Member, call_id: str) -> bool:
    return await member.cluster.ownership.owner(call_id) is None


async def _holder_is(member: Member, call_id: str) -> bool:
    return await member.cluster.ownership.stream_holder(call_id) == member.id


async def _owned_by_a(a: Member, call_id: str) -> tuple[CallRecord, str]:
    """The call `a` placed, with its carrier id, once A owns it and its max duration is armed."""
    record = await a.record(call_id)
    assert record.provider_call_id is not None
    assert await a.cluster.ownership.owner(call_id) == a.id
    assert a.runtime.manager.timers.armed(call_id, "max-duration")
    return record, record.provider_call_id


async def test_end_call_at_the_stream_holder_hangs_up_at_the_owner(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, mock={"silent": True}) as (a, b):
        call_id = await a.new_call()
        _, pid = await _owned_by_a(a, call_id)

        await b.runtime.call_control.end_call(call_id, CallState.HANGUP_BOT)

        final = await a.record(call_id)
        assert final.state == CallState.HANGUP_BOT
        assert a.mock.callees[pid].hung_up  # A's carrier connection hung up
        assert pid not in b.mock.callees
        assert _ledger(a, "hangup", pid) == 1
        assert not a.runtime.manager.timers.armed(call_id, "max-duration")
        await wait_until(lambda: _owner_gone(a, call_id), what="the owner key released")
        ends = [e for e in await a.events(call_id) if e.type == "bot.hangup"]
        assert len(ends) == 1


async def test_an_apology_at_the_stream_holder_is_said_and_the_call_ended_at_the_owner(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, mock={"silent": True}) as (a, b):
        call_id = await a.new_call()
        _, pid = await _owned_by_a(a, call_id)

        stream = HeldStream(call_id)
        b.runtime.media.register(stream)  # the bridge runs where its stream is held: at B
        await wait_until(lambda: _holder_is(b, call_id), what="B recorded as the stream holder")

        control = b.runtime.call_control
        await control.end_with_apology(call_id, "Sorry.", "the voice model is gone for good")

        assert stream.closed and b.runtime.media.get(call_id) is None  # let go at B
        final = await a.record(call_id)
        assert final.state == CallState.ERROR
        assert final.metadata["error"] == "the voice model is gone for good"
        assert "Sorry." in a.mock.callees[pid].heard  # said by A's carrier connection
        assert _ledger(a, "hangup", pid) == 1
        assert not a.runtime.manager.timers.armed(call_id, "max-duration")
        await wait_until(lambda: _owner_gone(a, call_id), what="the owner key released")
        # B's end listeners never run for a call A owns: B forgets the let-go call itself
        assert call_id not in b.runtime.media._let_go


async def test_digits_from_the_stream_holder_are_sent_by_the_owner(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, mock={"silent": True}) as (a, b):
        call_id = await a.new_call()
        _, pid = await _owned_by_a(a, call_id)
        control = b.runtime.call_control

        await control.send_dtmf(call_id, "42#")

        assert a.mock.callees[pid].digits == ["42#"]
        assert pid not in b.mock.callees
        sent = [e.data for e in await a.events(call_id) if e.type == "bot.dtmf"]
        assert sent == [{"digits": "42#"}]
        # The owner's refusal comes back as the tool's error, worded as on one instance.
        with pytest.raises(ToolError, match=r"^digits may hold only 0-9"):
            await control.send_dtmf(call_id, "x")
        await a.runtime.manager.end(call_id)
        with pytest.raises(ToolError, match=r"^call is not active \(last state=hangup-bot"):
            await control.send_dtmf(call_id, "1")
