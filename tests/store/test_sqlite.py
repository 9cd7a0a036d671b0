"""SqliteStore: the embedded CallStore (src/voice_call/store/sqlite.py)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import run_helper
from voice_call.models import (
    CallRecord,
    CallState,
    Direction,
    Mode,
    Speaker,
    TranscriptEntry,
    TurnLatency,
)
from voice_call.store.base import CallStore, DuplicateEvent, LoggedEvent
from voice_call.store.sqlite import SCHEMA_VERSION, ReadOnlyStore, SqliteStore, StoreClosed


def make_record(
    call_id: str,
    *,
    state: CallState = CallState.ACTIVE,
    started_at: float = 1000.0,
    ended_at: float | None = None,
    provider: str = "twilio",
    provider_call_id: str | None = None,
    transcript: list[TranscriptEntry] | None = None,
    **extra: Any,
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider=provider,
        provider_call_id=provider_call_id,
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550001111",
        to_number="+15550002222",
        state=state,
        started_at=started_at,
        ended_at=ended_at,
        end_reason=state if state.terminal else None,
        transcript=transcript or [],
        **extra,
    )


def entry(i: int, text: str | None = None, speaker: Speaker = Speaker.USER) -> TranscriptEntry:
    return TranscriptEntry(at=2000.0 + i, speaker=speaker, text=text or f"line {i}", final=True)


def event(
    call_id: str, type_: str = "call.answered", key: str | None = None, **kw: Any
) -> LoggedEvent:
    return LoggedEvent(call_id=call_id, type=type_, at=kw.pop("at", 1500.0), dedupe_key=key, **kw)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "calls.sqlite"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    await s.open()
    yield s
    await s.close()


# ---------------------------------------------------------------------- basics


async def test_satisfies_protocol(store: SqliteStore) -> None:
    typed: CallStore = store  # checked by mypy; the assert keeps ruff quiet
    assert typed is store


async def test_file_setup(store: SqliteStore, db_path: Path) -> None:
    assert file_mode(db_path) == 0o600
    await store.save(make_record("c1"))
    for suffix in ("-wal", "-shm"):
        side = db_path.with_name(db_path.name + suffix)
        assert file_mode(side) == 0o600
    assert raw_rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert raw_rows(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_round_trip_full_record(store: SqliteStore) -> None:
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
    out = await store.save(record)
    assert out is None
    got = await store.get("c-full")
    assert got == record
    assert got is not None and got.model_dump() == record.model_dump()
    assert await store.get("missing") is None


async def test_transcript_is_append_only(store: SqliteStore, db_path: Path) -> None:
    record = make_record("c-t", transcript=[entry(0), entry(1)])
    await store.save(record)
    before = raw_rows(db_path, "SELECT * FROM transcript WHERE call_id = 'c-t' ORDER BY idx")
    assert len(before) == 2

    # The in-memory copy of the first two entries changed: stored rows must not be rewritten.
    changed = record.model_copy(deep=True)
    changed.transcript[0].text = "rewritten"
    changed.transcript[1].text = "rewritten too"
    changed.transcript.append(entry(2, "third"))
    await store.save(changed)

    after = raw_rows(db_path, "SELECT * FROM transcript WHERE call_id = 'c-t' ORDER BY idx")
    assert len(after) == 3
    assert after[:2] == before
    assert after[2][1:5] == (2, 2002.0, "user", "third")
    got = await store.get("c-t")
    assert got is not None
    assert [e.text for e in got.transcript] == ["line 0", "line 1", "third"]

    # A shorter transcript keeps what is stored; saving the same one again adds nothing.
    await store.save(make_record("c-t", transcript=[entry(0)]))
    await store.save(changed)
    assert len(raw_rows(db_path, "SELECT * FROM transcript WHERE call_id = 'c-t'")) == 3


async def test_snapshot_is_upserted(store: SqliteStore, db_path: Path) -> None:
    await store.save(make_record("c-u", state=CallState.RINGING))
    await store.save(make_record("c-u", state=CallState.COMPLETED, ended_at=1010.0))
    got = await store.get("c-u")
    assert got is not None and got.state == CallState.COMPLETED and got.ended_at == 1010.0
    rows = raw_rows(db_path, "SELECT state, terminal, ended_at FROM calls WHERE call_id = 'c-u'")
    assert rows == [("completed", 1, 1010.0)]
    # The stored snapshot carries no transcript.
    (record_json,) = raw_rows(db_path, "SELECT record FROM calls WHERE call_id = 'c-u'")[0]
    assert "transcript" not in record_json


async def test_find_by_provider_call_id(store: SqliteStore) -> None:
    await store.save(make_record("a", provider="twilio", provider_call_id="CA1"))
    await store.save(make_record("b", provider="telnyx", provider_call_id="CA1"))
    await store.save(make_record("c", provider="twilio"))
    got = await store.find_by_provider_call_id("twilio", "CA1")
    assert got is not None and got.call_id == "a"
    got = await store.find_by_provider_call_id("telnyx", "CA1")
    assert got is not None and got.call_id == "b"
    assert await store.find_by_provider_call_id("plivo", "CA1") is None
    assert await store.find_by_provider_call_id("twilio", "nope") is None


async def test_list_active_excludes_terminal_oldest_first(store: SqliteStore) -> None:
    await store.save(make_record("new", started_at=30.0, state=CallState.RINGING))
    await store.save(make_record("done", started_at=5.0, state=CallState.COMPLETED, ended_at=9.0))
    await store.save(make_record("old", started_at=10.0, transcript=[entry(0)]))
    await store.save(make_record("busy", started_at=20.0, state=CallState.BUSY, ended_at=21.0))
    active = await store.list_active()
    assert [r.call_id for r in active] == ["old", "new"]
    assert active[0].transcript == [entry(0)]
    # A call that ends leaves the active list.
    await store.save(make_record("old", started_at=10.0, state=CallState.HANGUP_USER, ended_at=40))
    assert [r.call_id for r in await store.list_active()] == ["new"]


async def test_list_recent_order_and_limit(store: SqliteStore) -> None:
    for i, t in enumerate([50.0, 10.0, 40.0, 20.0, 30.0]):
        state = CallState.COMPLETED if i % 2 else CallState.ACTIVE
        ended = t + 1 if state.terminal else None
        await store.save(
            make_record(f"r{i}", started_at=t, state=state, ended_at=ended, transcript=[entry(i)])
        )
    recent = await store.list_recent()
    assert [r.call_id for r in recent] == ["r0", "r2", "r4", "r3", "r1"]
    assert [r.transcript[0].text for r in recent] == [f"line {i}" for i in (0, 2, 4, 3, 1)]
    assert [r.call_id for r in await store.list_recent(limit=2)] == ["r0", "r2"]
    assert await store.list_recent(limit=0) == []


async def test_list_many_calls_with_transcripts(store: SqliteStore) -> None:
    # More calls than one IN (...) chunk holds.
    for i in range(1200):
        await store.save(make_record(f"m{i:04d}", started_at=float(i), transcript=[entry(i)]))
    active = await store.list_active()
    assert len(active) == 1200
    assert all(r.transcript == [entry(i)] for i, r in enumerate(active))


async def test_save_returns_event_with_seq_and_state(store: SqliteStore) -> None:
    record = make_record("c-e", state=CallState.ANSWERED)
    first = await store.save(record, event(record.call_id, key="k1", data={"x": 1}))
    assert first is not None
    assert first.seq == 1 and first.state == "answered" and first.data == {"x": 1}
    second = await store.save(record, event(record.call_id, "bot.spoke", state="speaking"))
    assert second is not None
    assert second.seq == 2 and second.state == "speaking"
    assert await store.last_seq() == 2
    assert await store.events() == [first, second]


async def test_duplicate_dedupe_key_writes_nothing(store: SqliteStore, db_path: Path) -> None:
    record = make_record("c-d", state=CallState.RINGING, transcript=[entry(0)])
    await store.save(record, event("c-d", "call.ringing", key="twilio:CA1:ringing"))
    assert await store.seen("twilio:CA1:ringing")
    assert not await store.seen("other")

    newer = make_record(
        "c-d", state=CallState.ANSWERED, transcript=[entry(0), entry(1)], metadata={"a": 1}
    )
    with pytest.raises(DuplicateEvent):
        await store.save(newer, event("c-d", "call.answered", key="twilio:CA1:ringing"))

    got = await store.get("c-d")
    assert got == record
    assert len(raw_rows(db_path, "SELECT * FROM transcript WHERE call_id = 'c-d'")) == 1
    assert len(await store.events()) == 1
    assert await store.last_seq() == 1
    # Events without a dedupe key never collide.
    await store.save(record, event("c-d", "bot.note"))
    await store.save(record, event("c-d", "bot.note"))
    assert len(await store.events()) == 3


async def test_failed_save_rolls_back(store: SqliteStore) -> None:
    record = make_record("c-r", transcript=[entry(0)])
    unserialisable = event("c-r", data={"bad": object()})
    with pytest.raises(TypeError):
        await store.save(record, unserialisable)
    assert await store.get("c-r") is None
    assert await store.events() == []
    # The connection is usable afterwards.
    await store.save(record, event("c-r"))
    assert await store.get("c-r") == record


async def test_events_order_since_and_call_filter(store: SqliteStore) -> None:
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
    assert await store.events(call_id="nobody") == []
    assert await store.events(since_seq=await store.last_seq()) == []


async def test_last_seq_empty(store: SqliteStore) -> None:
    assert await store.last_seq() == 0
    assert await store.events() == []
    assert await store.list_active() == []
    assert await store.list_recent() == []


async def test_prune(store: SqliteStore, db_path: Path) -> None:
    old_done = make_record(
        "old-done", state=CallState.COMPLETED, started_at=10, ended_at=20, transcript=[entry(0)]
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
    assert await store.get("new-done") == new_done
    assert await store.get("old-live") == old_live
    assert {e.call_id for e in await store.events()} == {"new-done", "old-live"}
    assert not await store.seen("old-done:k")
    assert raw_rows(db_path, "SELECT call_id FROM transcript") == [("old-live",)]
    assert await store.last_seq() == top  # seqs are never reused
    assert await store.prune(ended_before=100.0) == 0
    out = await store.save(make_record("later"), event("later"))
    assert out is not None and out.seq == top + 1


async def test_reopen_keeps_everything(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.open()
    await first.open()  # idempotent
    rec = make_record("keep", provider_call_id="P", transcript=[entry(0), entry(1)])
    logged = await first.save(rec, event("keep", key="k"))
    await first.close()
    await first.close()  # idempotent
    with pytest.raises(StoreClosed):
        await first.get("keep")

    second = SqliteStore(str(db_path))
    await second.open()
    try:
        assert await second.get("keep") == rec
        assert await second.find_by_provider_call_id("twilio", "P") == rec
        assert await second.events() == [logged]
        assert await second.seen("k")
        assert await second.last_seq() == 1
    finally:
        await second.close()
    # The same object can be opened again after close.
    await first.open()
    try:
        assert await first.get("keep") == rec
    finally:
        await first.close()


async def test_refuses_newer_schema(db_path: Path) -> None:
    s = SqliteStore(db_path)
    await s.open()
    await s.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version"):
        await SqliteStore(db_path).open()
    with pytest.raises(RuntimeError, match="schema version"):
        await SqliteStore.open_readonly(db_path)


# ---------------------------------------------------------------------- read-only


async def test_readonly_sees_live_writer_and_cannot_write(
    store: SqliteStore, db_path: Path
) -> None:
    rec = make_record("live", transcript=[entry(0)])
    await store.save(rec, event("live", key="k1"))

    reader = await SqliteStore.open_readonly(db_path)
    try:
        assert await reader.get("live") == rec
        assert [r.call_id for r in await reader.list_active()] == ["live"]
        assert await reader.seen("k1")
        assert await reader.last_seq() == 1

        # Writes by the live writer after the reader opened are visible.
        rec2 = make_record("live", state=CallState.SPEAKING, transcript=[entry(0), entry(1)])
        await store.save(rec2, event("live", "bot.spoke"))
        assert await reader.get("live") == rec2
        assert len(await reader.events()) == 2

        with pytest.raises(ReadOnlyStore):
            await reader.save(make_record("nope"))
        with pytest.raises(ReadOnlyStore):
            await reader.prune(1e12)
        conn = reader._conn
        assert conn is not None
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM calls")
        assert await store.get("nope") is None
        assert await store.get("live") == rec2
    finally:
        await reader.close()


async def test_readonly_without_server(db_path: Path) -> None:
    writer = SqliteStore(db_path)
    await writer.open()
    rec = make_record("after", transcript=[entry(0)])
    await writer.save(rec)
    await writer.close()  # a clean close checkpoints and removes -wal / -shm

    reader = await SqliteStore.open_readonly(db_path)
    try:
        assert await reader.get("after") == rec
        assert [r.call_id for r in await reader.list_recent()] == ["after"]
    finally:
        await reader.close()


async def test_readonly_odd_path(tmp_path: Path) -> None:
    odd = tmp_path / "dir with space #1 %20 ?x" / "calls é.sqlite"
    writer = SqliteStore(odd)
    await writer.open()
    await writer.save(make_record("odd"))
    reader = await SqliteStore.open_readonly(odd)
    try:
        got = await reader.get("odd")
        assert got is not None and got.call_id == "odd"
    finally:
        await reader.close()
        await writer.close()


async def test_readonly_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await SqliteStore.open_readonly(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()


# ---------------------------------------------------------------------- crash


def test_acknowledged_saves_survive_sigkill(db_path: Path) -> None:
    count = 60
    db_path.parent.mkdir(parents=True)
    proc = run_helper("store_crash_writer.py", str(db_path), str(count))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acknowledged = proc.stdout.split()
    assert len(acknowledged) == count
    # The writer died holding the database open: the WAL is still there, uncheckpointed.
    assert db_path.with_name(db_path.name + "-wal").exists()

    async def check() -> None:
        s = SqliteStore(db_path)
        await s.open()
        try:
            for i, call_id in enumerate(acknowledged):
                got = await s.get(call_id)
                assert got is not None, call_id
                assert len(got.transcript) == i % 4
                assert await s.seen(f"key-{i}")
            assert await s.get("uncommitted") is None
            assert len(await s.events()) == count
            assert await s.last_seq() == count
        finally:
            await s.close()

    asyncio.run(check())
    assert raw_rows(db_path, "PRAGMA integrity_check") == [("ok",)]


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
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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
    store: SqliteStore,
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
