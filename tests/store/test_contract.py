"""The CallStore contract: the same tests against SQLite and a real redis-server.

What any store must do for the manager: snapshots and append-only transcripts, the provider
call-id lookup, the active and recent lists, the event log paged by seq, dedupe keys that make a
duplicate write nothing, retention, and everything still there for a new store object (another
instance, or a restart). Backend-only details stay in test_sqlite.py / test_redis.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store.contract import BACKENDS, Backend, entry, event, make_record
from voice_call.models import (
    CallRecord,
    CallState,
    Direction,
    Mode,
    Speaker,
    TranscriptEntry,
    TurnLatency,
)
from voice_call.store.base import CallStore, DuplicateEvent, StoreClosed


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Backend(request.param, tmp_path, server)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[CallStore]:
    s = await backend.opened()
    yield s
    await s.close()


# ---------------------------------------------------------------------- records


async def test_round_trip_full_record(store: CallStore) -> None:
    record = make_record(
        "c-full",
        provider_call_id="CA123",
        state=CallState.LISTENING,
        answered_at=1001.25,
        transcript=[
            entry(0, "Hello! 👋 Grüße, 你好, مرحبا", Speaker.BOT),
            entry(1, "zero\x00byte and \u200b zero-width, \U0001f600"),
            TranscriptEntry(at=2002.5, speaker=Speaker.USER, text="partial…", final=False),
        ],
        latency=[TurnLatency(turn=1, speak_ms=12.5, listen_wait_ms=800.0, total_ms=950.125)],
        metadata={"agent": "émile", "n": 3, "nested": {"list": [1, 2.5, None, True, "ß"]}},
    )
    assert await store.save(record) is None
    got = await store.get("c-full")
    assert got == record
    assert got is not None and got.model_dump() == record.model_dump()
    assert await store.get("missing") is None


async def test_transcript_is_append_only(store: CallStore) -> None:
    record = make_record("c-t", transcript=[entry(0), entry(1)])
    await store.save(record)
    # The in-memory copy of stored entries changed: what is stored is not rewritten.
    changed = record.model_copy(deep=True)
    changed.transcript[0].text = "rewritten"
    changed.transcript.append(entry(2, "third"))
    await store.save(changed)
    got = await store.get("c-t")
    assert got is not None
    assert [e.text for e in got.transcript] == ["line 0", "line 1", "third"]
    # A shorter transcript keeps what is stored; saving the same one again adds nothing.
    await store.save(make_record("c-t", transcript=[entry(0)]))
    await store.save(changed)
    got = await store.get("c-t")
    assert got is not None and len(got.transcript) == 3


async def test_snapshot_is_upserted(store: CallStore) -> None:
    await store.save(make_record("c-u", state=CallState.RINGING))
    await store.save(make_record("c-u", state=CallState.COMPLETED, ended_at=1010.0))
    got = await store.get("c-u")
    assert got is not None and got.state == CallState.COMPLETED and got.ended_at == 1010.0
    assert [r.call_id for r in await store.list_recent()] == ["c-u"]


async def test_find_by_provider_call_id(store: CallStore) -> None:
    await store.save(make_record("a", provider="twilio", provider_call_id="CA1"))
    await store.save(make_record("b", provider="telnyx", provider_call_id="CA1"))
    await store.save(make_record("c", provider="twilio"))
    got = await store.find_by_provider_call_id("twilio", "CA1")
    assert got is not None and got.call_id == "a"
    got = await store.find_by_provider_call_id("telnyx", "CA1")
    assert got is not None and got.call_id == "b"
    assert await store.find_by_provider_call_id("plivo", "CA1") is None
    assert await store.find_by_provider_call_id("twilio", "nope") is None


async def test_provider_call_id_lookup_follows_changes(store: CallStore) -> None:
    # The carrier's id arrives after the first save, and the newest call with an id wins.
    await store.save(make_record("x", provider_call_id=None, started_at=1.0))
    await store.save(make_record("x", provider_call_id="CA9", started_at=1.0))
    await store.save(make_record("y", provider_call_id="CA9", started_at=2.0))
    got = await store.find_by_provider_call_id("twilio", "CA9")
    assert got is not None and got.call_id == "y"
    await store.save(make_record("y", provider_call_id="CA10", started_at=2.0))
    got = await store.find_by_provider_call_id("twilio", "CA9")
    assert got is not None and got.call_id == "x"
    # Provider names and ids that look alike stay apart.
    await store.save(make_record("z", provider="a:b", provider_call_id="c"))
    assert await store.find_by_provider_call_id("a", "b:c") is None


async def test_list_active_excludes_terminal_oldest_first(store: CallStore) -> None:
    await store.save(make_record("new", started_at=30.0, state=CallState.RINGING))
    await store.save(make_record("done", started_at=5.0, state=CallState.COMPLETED, ended_at=9.0))
    await store.save(make_record("old", started_at=10.0, transcript=[entry(0)]))
    await store.save(make_record("busy", started_at=20.0, state=CallState.BUSY, ended_at=21.0))
    await store.save(make_record("tie-b", started_at=30.0))
    active = await store.list_active()
    assert [r.call_id for r in active] == ["old", "new", "tie-b"]
    assert active[0].transcript == [entry(0)]
    # A call that ends leaves the active list.
    await store.save(make_record("old", started_at=10.0, state=CallState.HANGUP_USER, ended_at=40))
    assert [r.call_id for r in await store.list_active()] == ["new", "tie-b"]


async def test_list_recent_order_and_limit(store: CallStore) -> None:
    for i, t in enumerate([50.0, 10.0, 40.0, 20.0, 30.0]):
        state = CallState.COMPLETED if i % 2 else CallState.ACTIVE
        ended = t + 1 if state.terminal else None
        await store.save(
            make_record(f"r{i}", started_at=t, state=state, ended_at=ended, transcript=[entry(i)])
        )
    await store.save(make_record("r9", started_at=50.0))  # a tie: the higher call id first
    recent = await store.list_recent()
    assert [r.call_id for r in recent] == ["r9", "r0", "r2", "r4", "r3", "r1"]
    assert [r.transcript[0].text for r in recent[1:]] == [f"line {i}" for i in (0, 2, 4, 3, 1)]
    assert [r.call_id for r in await store.list_recent(limit=2)] == ["r9", "r0"]
    assert await store.list_recent(limit=0) == []


async def test_list_many_calls_with_transcripts(store: CallStore) -> None:
    for i in range(1200):
        await store.save(make_record(f"m{i:04d}", started_at=float(i), transcript=[entry(i)]))
    active = await store.list_active()
    assert len(active) == 1200
    assert all(r.transcript == [entry(i)] for i, r in enumerate(active))


# ---------------------------------------------------------------------- the event log


async def test_save_returns_event_with_seq_and_state(store: CallStore) -> None:
    record = make_record("c-e", state=CallState.ANSWERED)
    first = await store.save(record, event(record.call_id, key="k1", data={"x": 1}))
    assert first is not None
    assert first.seq == 1 and first.state == "answered" and first.data == {"x": 1}
    second = await store.save(record, event(record.call_id, "bot.spoke", state="speaking"))
    assert second is not None
    assert second.seq == 2 and second.state == "speaking"
    assert await store.last_seq() == 2
    assert await store.events() == [first, second]


async def test_duplicate_dedupe_key_writes_nothing(store: CallStore) -> None:
    record = make_record("c-d", state=CallState.RINGING, transcript=[entry(0)])
    await store.save(record, event("c-d", "call.ringing", key="twilio:CA1:ringing"))
    assert await store.seen("twilio:CA1:ringing")
    assert not await store.seen("other")

    newer = make_record(
        "c-d",
        state=CallState.COMPLETED,
        ended_at=1.0,
        provider_call_id="CA1",
        transcript=[entry(0), entry(1)],
        metadata={"a": 1},
    )
    with pytest.raises(DuplicateEvent):
        await store.save(newer, event("c-d", "call.answered", key="twilio:CA1:ringing"))

    assert await store.get("c-d") == record
    assert [r.call_id for r in await store.list_active()] == ["c-d"]
    assert await store.find_by_provider_call_id("twilio", "CA1") is None
    assert await store.prune(1e12) == 0  # it did not end either
    assert len(await store.events()) == 1
    assert await store.last_seq() == 1
    # Events without a dedupe key never collide.
    await store.save(record, event("c-d", "bot.note"))
    await store.save(record, event("c-d", "bot.note"))
    assert len(await store.events()) == 3


async def test_failed_save_writes_nothing(store: CallStore) -> None:
    record = make_record("c-r", transcript=[entry(0)])
    with pytest.raises(TypeError):
        await store.save(record, event("c-r", data={"bad": object()}))
    assert await store.get("c-r") is None
    assert await store.events() == []
    await store.save(record, event("c-r"))  # usable afterwards
    assert await store.get("c-r") == record


async def test_events_order_since_and_call_filter(store: CallStore) -> None:
    a, b = make_record("a"), make_record("b")
    logged = []
    for i in range(6):
        rec = a if i % 2 == 0 else b
        out = await store.save(rec, event(rec.call_id, f"t{i}", key=f"k{i}", at=float(i)))
        assert out is not None
        logged.append(out)
    seqs = [e.seq for e in await store.events()]
    assert seqs == sorted(seqs) == [e.seq for e in logged]
    assert [e.type for e in await store.events(since_seq=logged[2].seq)] == ["t3", "t4", "t5"]
    assert [e.type for e in await store.events(call_id="a")] == ["t0", "t2", "t4"]
    assert [e.type for e in await store.events(call_id="b", since_seq=logged[1].seq)] == [
        "t3",
        "t5",
    ]
    assert [e.type for e in await store.events(limit=2)] == ["t0", "t1"]
    assert [e.type for e in await store.events(since_seq=2, limit=2)] == ["t2", "t3"]
    assert await store.events(limit=0) == []
    assert await store.events(call_id="nobody") == []
    assert await store.events(since_seq=await store.last_seq()) == []


async def test_empty_store(store: CallStore) -> None:
    assert await store.last_seq() == 0
    assert await store.events() == []
    assert await store.list_active() == []
    assert await store.list_recent() == []
    assert await store.prune(1e12) == 0


# ---------------------------------------------------------------------- retention


async def test_prune(store: CallStore) -> None:
    old_done = make_record(
        "old-done",
        state=CallState.COMPLETED,
        started_at=10,
        ended_at=20,
        provider_call_id="P1",
        transcript=[entry(0)],
    )
    old_failed_no_end = make_record("old-failed", state=CallState.FAILED, started_at=15)
    new_done = make_record("new-done", state=CallState.COMPLETED, started_at=10, ended_at=200)
    old_live = make_record("old-live", started_at=1, transcript=[entry(0)])
    for rec in (old_done, old_failed_no_end, new_done, old_live):
        await store.save(rec, event(rec.call_id, key=f"{rec.call_id}:k"))
    top = await store.last_seq()

    assert await store.prune(ended_before=100.0) == 2
    assert await store.get("old-done") is None
    assert await store.get("old-failed") is None
    assert await store.find_by_provider_call_id("twilio", "P1") is None
    assert await store.get("new-done") == new_done
    assert await store.get("old-live") == old_live
    assert {e.call_id for e in await store.events()} == {"new-done", "old-live"}
    assert await store.events(call_id="old-done") == []
    assert not await store.seen("old-done:k")
    assert await store.seen("new-done:k")
    assert [r.call_id for r in await store.list_recent()] == ["new-done", "old-live"]
    assert await store.last_seq() == top  # seqs are never reused
    assert await store.prune(ended_before=100.0) == 0
    out = await store.save(make_record("later"), event("later"))
    assert out is not None and out.seq == top + 1
    # A pruned call's key may be used again (as in SQLite: the row is gone).
    await store.save(make_record("old-done"), event("old-done", key="old-done:k"))


async def test_prune_many(store: CallStore) -> None:
    for i in range(1100):  # more than one Redis prune batch
        rec = make_record(f"p{i}", state=CallState.COMPLETED, started_at=1.0, ended_at=2.0)
        await store.save(rec, event(rec.call_id, key=f"p{i}"))
    assert await store.prune(ended_before=3.0) == 1100
    assert await store.list_recent() == [] and await store.events() == []


# ---------------------------------------------------------------------- lifecycle


async def test_a_new_store_object_sees_everything(backend: Backend) -> None:
    first = backend.new()
    await first.open()
    await first.open()  # idempotent
    rec = make_record("keep", provider_call_id="P", transcript=[entry(0), entry(1)])
    logged = await first.save(rec, event("keep", key="k"))
    await first.close()
    await first.close()  # idempotent
    with pytest.raises(StoreClosed):
        await first.get("keep")
    with pytest.raises(StoreClosed):
        await first.save(rec)

    second = await backend.opened()
    try:
        assert await second.get("keep") == rec
        assert await second.find_by_provider_call_id("twilio", "P") == rec
        assert [r.call_id for r in await second.list_active()] == ["keep"]
        assert await second.events() == [logged]
        assert await second.seen("k")
        assert await second.last_seq() == 1
        with pytest.raises(DuplicateEvent):
            await second.save(rec, event("keep", key="k"))
    finally:
        await second.close()
    await first.open()  # the same object opens again after close
    try:
        assert await first.get("keep") == rec
    finally:
        await first.close()


async def test_two_store_objects_saving_at_once(backend: Backend) -> None:
    """Two instances on one store: every save lands, seqs are dense and in log order, and a
    dedupe key both try to write is applied once."""
    stores = [await backend.opened(), await backend.opened()]
    try:

        async def writer(n: int, store: CallStore) -> list[int]:
            seqs = []
            for i in range(100):
                rec = make_record(f"w{n}-{i % 5}", transcript=[entry(j) for j in range(i // 5)])
                out = await store.save(rec, event(rec.call_id, f"t{n}", key=f"{n}:{i}"))
                assert out is not None
                seqs.append(out.seq)
            return seqs

        async def racer(store: CallStore) -> bool:
            try:
                await store.save(make_record("race"), event("race", key="same"))
            except DuplicateEvent:
                return False
            return True

        results = await asyncio.gather(writer(0, stores[0]), writer(1, stores[1]))
        wins = await asyncio.gather(*(racer(stores[i % 2]) for i in range(10)))
        assert sum(wins) == 1
        log = await stores[0].events(limit=10_000)
        assert [e.seq for e in log] == list(range(1, 202))
        assert sorted(results[0] + results[1]) == list(range(1, 201))
        for n in (0, 1):
            assert [e.seq for e in log if e.type == f"t{n}"] == results[n]
        got = await stores[1].get("w0-4")
        assert got is not None and len(got.transcript) == 19
    finally:
        for s in stores:
            await s.close()


# ---------------------------------------------------------------------- property

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
entries = st.builds(
    TranscriptEntry,
    at=finite,
    speaker=st.sampled_from(Speaker),
    text=st.text(),  # any code point except surrogates
    final=st.booleans(),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    transcript=st.lists(entries, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=12), max_size=4),
    metadata=st.dictionaries(st.text(), json_values, max_size=5),
    started_at=finite,
    provider_call_id=st.none() | st.text(max_size=40),
    event_data=st.dictionaries(st.text(), json_values, max_size=3),
)
async def test_property_round_trip(
    store: CallStore,
    transcript: list[TranscriptEntry],
    cuts: list[int],
    metadata: dict[str, Any],
    started_at: float,
    provider_call_id: str | None,
    event_data: dict[str, Any],
) -> None:
    record = CallRecord(
        provider="mock",
        provider_call_id=provider_call_id,
        direction=Direction.INBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550001111",
        to_number="+15550002222",
        started_at=started_at,
        metadata=metadata,
    )
    # Save growing prefixes of the transcript, as a live call does, then the whole thing.
    for cut in sorted(c for c in cuts if c <= len(transcript)):
        partial = record.model_copy(update={"transcript": transcript[:cut]})
        await store.save(partial)
    full = record.model_copy(update={"transcript": transcript})
    logged = await store.save(full, event(record.call_id, "call.speech", data=event_data))

    got = await store.get(record.call_id)
    assert got == full
    assert got is not None and got.model_dump() == full.model_dump()
    assert logged is not None
    assert (await store.events(since_seq=logged.seq - 1))[0] == logged
    assert logged.data == event_data
