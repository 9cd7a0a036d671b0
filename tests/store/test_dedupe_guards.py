"""Event dedupe, both guards: the store refuses a stored key (`seen`, and a unique key that
writes nothing), and the manager remembers the last 10,000 keys it applied, so a carrier's
late duplicate is refused even once the store has pruned the call (it would otherwise ring
in as a new inbound call)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.manager.stack import Harness, harness
from voice_call.manager.manager import CallManager
from voice_call.models import CallEvent, CallRecord, CallState, Direction, EventType, Mode
from voice_call.providers.base import ProviderError
from voice_call.store.base import DuplicateEvent, LoggedEvent
from voice_call.store.sqlite import SqliteStore

OPEN: dict[str, Any] = {"inboundPolicy": "open", "mock": {"silent": True}}
FAR_FUTURE = 1e12


def _inbound(pid: str = "CA1", key: str = "inbound-CA1") -> CallEvent:
    return CallEvent(
        type=EventType.INITIATED,
        provider_call_id=pid,
        direction=Direction.INBOUND,
        dedupe_key=key,
        **{"from": "+15555550100", "to": "+15555550999"},
    )


def _restarted(h: Harness) -> CallManager:
    """A new manager on the same store: what a restart leaves (no keys in memory)."""
    return CallManager(h.config, h.store, h.provider, clock=h.clock)


def _answers(h: Harness) -> list[str]:
    calls: list[str] = []
    original = h.provider.answer

    async def answer(record: CallRecord) -> None:
        calls.append(record.call_id)
        await original(record)

    h.provider.answer = answer
    return calls


async def _pruned(h: Harness, pid: str = "CA1") -> None:
    """End the inbound call `pid` and let the store forget it (its events and keys too)."""
    found = await h.store.find_by_provider_call_id("mock", pid)
    assert found is not None
    await h.manager.end(found.call_id)
    assert await h.store.prune(FAR_FUTURE) == 1
    assert await h.store.list_recent() == []


async def test_a_duplicate_inbound_webhook_after_the_call_was_pruned_is_no_new_call(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, OPEN) as h:
        answered = _answers(h)
        assert await h.manager.handle_event(_inbound()) == "accepted"
        await _pruned(h)
        assert not await h.store.seen("inbound-CA1")
        assert await h.manager.handle_event(_inbound()) == "duplicate"
        assert await h.store.list_recent() == []
        assert len(answered) == 1


async def test_a_duplicate_inbound_webhook_while_the_first_is_being_written(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, OPEN) as h:
        answered = _answers(h)
        writing, release = asyncio.Event(), asyncio.Event()
        save = h.store.save

        async def slow_save(record: CallRecord, event: LoggedEvent | None = None) -> Any:
            if event is not None and event.dedupe_key == "inbound-CA1" and not writing.is_set():
                writing.set()
                await release.wait()
            return await save(record, event)

        h.store.save = slow_save  # type: ignore[method-assign]
        first = asyncio.create_task(h.manager.handle_event(_inbound()))
        await writing.wait()
        second = asyncio.create_task(h.manager.handle_event(_inbound()))
        await asyncio.sleep(0)
        release.set()
        assert sorted(await asyncio.gather(first, second)) == ["accepted", "duplicate"]
        assert len(await h.store.list_recent()) == 1
        assert len(answered) == 1


async def test_a_stored_key_is_a_duplicate_even_for_a_call_nobody_knows(tmp_path: Path) -> None:
    async with harness(tmp_path, OPEN) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        speech = CallEvent(
            type=EventType.SPEECH, call_id=call.call_id, transcript="yes", dedupe_key="k1"
        )
        assert await h.manager.handle_event(speech) == "applied"
        seq = await h.store.last_seq()
        for manager in (h.manager, _restarted(h)):
            for stray in (
                speech.model_copy(update={"call_id": "no-such-call"}),
                speech.model_copy(update={"call_id": None, "provider_call_id": "unknown"}),
                _inbound("CA9", key="k1"),
            ):
                assert await manager.handle_event(stray) == "duplicate"
        assert await h.store.last_seq() == seq
        assert await h.store.find_by_provider_call_id("mock", "CA9") is None


async def test_an_unknown_call_with_a_fresh_key_is_unknown(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        event = CallEvent(type=EventType.ANSWERED, call_id="nobody", dedupe_key="fresh")
        assert await h.manager.handle_event(event) == "unknown-call"
        assert await h.manager.handle_event(event) == "unknown-call"  # its key was not burnt
        assert not await h.store.seen("fresh")


async def test_after_a_restart_a_known_calls_duplicate_is_refused_by_the_store(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, OPEN) as h:
        answered = _answers(h)
        assert await h.manager.handle_event(_inbound()) == "accepted"
        before = await h.store.list_recent()
        restarted = _restarted(h)
        assert await restarted.handle_event(_inbound()) == "duplicate"
        answered_event = CallEvent(type=EventType.ANSWERED, provider_call_id="CA1", dedupe_key="a")
        assert await h.manager.handle_event(answered_event) == "applied"
        assert await restarted.handle_event(answered_event) == "duplicate"
        # Each key logged once: the duplicates wrote nothing. (The answered call's own entries,
        # e.g. its greeting, may land meanwhile: a save lets other tasks run.)
        keyed = [e.dedupe_key for e in await h.store.events() if e.dedupe_key is not None]
        assert keyed == ["inbound-CA1", "a"]
        assert len(answered) == 1
        assert [c.call_id for c in await h.store.list_recent()] == [before[0].call_id]


async def test_the_manager_remembers_the_last_10000_keys(tmp_path: Path) -> None:
    async with harness(tmp_path, OPEN) as h:
        assert await h.manager.handle_event(_inbound("CA1", "first")) == "accepted"
        found = await h.store.find_by_provider_call_id("mock", "CA1")
        assert found is not None
        for n in range(1, 10_000):
            dtmf = CallEvent(
                type=EventType.DTMF, call_id=found.call_id, digits="1", dedupe_key=f"d{n}"
            )
            assert await h.manager.handle_event(dtmf) == "applied"
        await _pruned(h)
        # 10,000 keys remembered ("first" and d1 … d9999): all still refused.
        assert await h.manager.handle_event(_inbound("CA1", "first")) == "duplicate"
        probe = CallEvent(type=EventType.DTMF, call_id=found.call_id, dedupe_key="d9999")
        assert await h.manager.handle_event(probe) == "duplicate"
        # One more: the oldest ("first") is forgotten, the newest kept.
        assert await h.manager.handle_event(_inbound("CA2", "newest")) == "accepted"
        assert await h.manager.handle_event(_inbound("CA2", "newest")) == "duplicate"
        assert await h.manager.handle_event(probe) == "duplicate"
        await _pruned(h, "CA2")
        assert await h.manager.handle_event(_inbound("CA1", "first")) == "accepted"


async def _store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "calls.db")
    await store.open()
    return store


def _call(state: CallState = CallState.RINGING) -> CallRecord:
    return CallRecord(
        call_id="c1",
        provider="mock",
        direction=Direction.INBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15555550100",
        to_number="+15555550999",
        state=state,
        started_at=1.0,
    )


def _event(key: str | None, state: str | None = None) -> LoggedEvent:
    return LoggedEvent(call_id="c1", type="call.initiated", at=1.0, dedupe_key=key, state=state)


async def test_a_stored_key_is_seen_and_refused_writing_nothing(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        assert not await store.seen("k1")
        logged = await store.save(_call(), _event("k1"))
        assert logged is not None and logged.state == "ringing" and logged.seq == 1
        assert await store.seen("k1") and not await store.seen("k2")
        with pytest.raises(DuplicateEvent):
            await store.save(_call(CallState.ANSWERED), _event("k1"))
        stored = await store.get("c1")
        assert stored is not None and stored.state == CallState.RINGING
        assert await store.last_seq() == 1
        # Events without a key never collide; an event's own state wins over the record's.
        await store.save(_call(), _event(None))
        kept = await store.save(_call(), _event(None, state="call.custom"))
        assert kept is not None and kept.state == "call.custom" and kept.seq == 3
    finally:
        await store.close()


async def test_another_integrity_error_is_not_taken_for_a_duplicate(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        await store.save(_call(), _event("k1"))
        broken = LoggedEvent.model_construct(
            seq=0, call_id=None, type="call.initiated", at=1.0, dedupe_key="k2", state=None, data={}
        )
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            await store.save(_call(), broken)
        assert not await store.seen("k2")
    finally:
        await store.close()


def _hangups(h: Harness, fail: bool = False) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    async def hangup(record: CallRecord, reason: str) -> None:
        calls.append((record.call_id, reason))
        if fail:
            raise ProviderError("carrier down")

    h.provider.hangup = hangup
    return calls


async def test_a_refused_inbound_call_is_recorded_hung_up_once(tmp_path: Path) -> None:
    async with harness(tmp_path, {"inboundPolicy": "disabled"}) as h:
        hangups = _hangups(h, fail=True)  # a carrier error on the reject is only logged
        answered = _answers(h)
        reason = "inbound calls are disabled (inboundPolicy)"
        assert await h.manager.handle_event(_inbound()) == f"rejected: {reason}"
        (rec,) = await h.store.list_recent()
        assert rec.metadata["rejectionReason"] == "inbound-policy"
        assert rec.end_reason == CallState.HANGUP_BOT and "initialMessage" not in rec.metadata
        (logged,) = await h.store.events(call_id=rec.call_id)
        assert logged.data["outcome"] == reason and logged.dedupe_key == "inbound-CA1"
        assert hangups == [(rec.call_id, "inbound-policy")] and answered == []
        assert await h.manager.handle_event(_inbound()) == "duplicate"
        assert len(hangups) == 1


async def test_an_inbound_call_over_capacity_is_refused_as_such(tmp_path: Path) -> None:
    async with harness(tmp_path, {**OPEN, "maxConcurrentCalls": 1}) as h:
        hangups = _hangups(h)
        assert await h.manager.handle_event(_inbound("CA1", "in-1")) == "accepted"
        accepted = await h.store.find_by_provider_call_id("mock", "CA1")
        assert accepted is not None and accepted.metadata["initialMessage"]
        (logged,) = await h.store.events(call_id=accepted.call_id)
        assert logged.data["outcome"] == "accepted"
        outcome = await h.manager.handle_event(_inbound("CA2", "in-2"))
        assert outcome == "rejected: maximum concurrent calls (1) reached"
        refused = await h.store.find_by_provider_call_id("mock", "CA2")
        assert refused is not None and refused.metadata["rejectionReason"] == "max-concurrent-calls"
        assert hangups == [(refused.call_id, "inbound-policy")]


async def test_an_event_for_no_known_call_is_not_taken_for_an_inbound_call(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, OPEN) as h:
        answered = CallEvent(type=EventType.ANSWERED, provider_call_id="later", dedupe_key="a1")
        assert await h.manager.handle_event(answered) == "unknown-call"
        nameless = _inbound().model_copy(update={"provider_call_id": None, "dedupe_key": "n1"})
        assert await h.manager.handle_event(nameless) == "unknown-call"
        assert await h.store.list_recent() == []
        assert h.manager._locks == {}  # no lock kept for an id a webhook merely named
        named = CallEvent(type=EventType.ANSWERED, call_id="nobody", dedupe_key="n2")
        assert await h.manager.handle_event(named) == "unknown-call"
        assert h.manager._locks == {}


async def test_a_retryable_carrier_error_changes_nothing_and_burns_no_key(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, OPEN) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        before = await h.store.get(call.call_id)
        error = CallEvent(
            type=EventType.ERROR, call_id=call.call_id, retryable=True, dedupe_key="e1"
        )
        assert await h.manager.handle_event(error) == "retryable-error"
        assert await h.manager.handle_event(error) == "retryable-error"
        assert await h.store.get(call.call_id) == before and not await h.store.seen("e1")
        retried = CallEvent(type=EventType.DTMF, call_id=call.call_id, retryable=True, digits="1")
        assert await h.manager.handle_event(retried) == "applied"


async def test_an_applied_event_is_published_once(tmp_path: Path) -> None:
    async with harness(tmp_path, OPEN) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        speech = CallEvent(
            type=EventType.SPEECH, call_id=call.call_id, transcript="yes", dedupe_key="k1"
        )
        async with h.manager.bus.subscribe() as queue:
            assert await h.manager.handle_event(speech) == "applied"
            assert await h.manager.handle_event(speech) == "duplicate"
            published = [queue.get_nowait() for _ in range(queue.qsize())]
        assert [e.dedupe_key for e in published if e and e.dedupe_key] == ["k1"]


async def test_a_carrier_error_on_answering_still_accepts_the_call(tmp_path: Path) -> None:
    async with harness(tmp_path, OPEN) as h:

        async def answer(record: CallRecord) -> None:
            raise ProviderError("carrier down")

        h.provider.answer = answer
        assert await h.manager.handle_event(_inbound()) == "accepted"
        assert len(await h.store.list_active()) == 1
