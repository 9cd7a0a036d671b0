"""SqliteStore: the embedded CallStore (src/voice_call/store/sqlite.py) — what only SQLite does
(its file, its rows, read-only opening, kill -9). What every store does: test_contract.py."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.store.contract import entry, event, make_record
from tests.support import run_helper
from voice_call.models import CallState
from voice_call.store.base import CallStore, DuplicateEvent
from voice_call.store.sqlite import SCHEMA_VERSION, ReadOnlyStore, SqliteStore


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
