"""The SQLite store's WAL checkpoints off the event loop (src/voice_call/store/checkpoint.py)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
from pathlib import Path

from tests.support import run_helper, wait_until
from voice_call.models import CallRecord, CallState, Direction, Mode
from voice_call.store.base import LoggedEvent
from voice_call.store.checkpoint import CheckpointPolicy
from voice_call.store.sqlite import SqliteStore

FRAME = 4096 + 24  # a WAL frame: one page and its header
NEVER = CheckpointPolicy(every=10**9, interval_s=3600.0, restart_frames=10**9)


def make_record(call_id: str, state: CallState = CallState.RINGING) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="twilio",
        provider_call_id=f"CA-{call_id}",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550001111",
        to_number="+15550002222",
        state=state,
        started_at=1000.0,
    )


def event(call_id: str, n: int) -> LoggedEvent:
    return LoggedEvent(call_id=call_id, type="call.ringing", at=float(n), dedupe_key=f"k-{n}")


def wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def rows_in_main_file(db: Path, tmp: Path) -> int:
    """Events in the database file alone, without its WAL: what checkpoints copied there."""
    copy = tmp / "main-only.db"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() is None:
            return 0  # not even the schema was checkpointed
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


async def test_writer_never_checkpoints_itself(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    store = SqliteStore(db, checkpoints=NEVER)
    await store.open()
    try:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        record = make_record("c1")
        for n in range(400):  # ~1600 WAL pages: SQLite's default would checkpoint at 1000
            await store.save(record, event("c1", n))
        assert wal_size(db) >= 1000 * FRAME
        assert rows_in_main_file(db, tmp_path) == 0
    finally:
        await store.close()


async def test_checkpointer_copies_commits_into_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    store = SqliteStore(db, checkpoints=CheckpointPolicy(every=5, interval_s=0.01))
    await store.open()
    try:
        record = make_record("c1")
        for n in range(20):
            await store.save(record, event("c1", n))
        checkpointer = store.checkpointer
        assert checkpointer is not None
        await wait_until(  # the thread's work, awaited
            lambda: rows_in_main_file(db, tmp_path) >= 20,
            what="the checkpointer's thread to copy all 20 rows into the main file",
        )
        assert checkpointer.stats.passes >= 1
        assert checkpointer.stats.errors == 0
    finally:
        await store.close()
    assert not db.with_name(db.name + "-wal").exists()  # a clean close still removes the WAL


async def test_wal_stays_bounded_under_continuous_writes(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    policy = CheckpointPolicy(every=16, interval_s=0.01, restart_frames=256)
    store = SqliteStore(db, checkpoints=policy)
    await store.open()
    try:
        calls = [make_record(f"c{i}") for i in range(20)]
        largest = 0
        count = 3000  # ≥ 12,000 WAL pages (≈ 47 MiB) if the WAL never started over
        for n in range(count):  # no pause between saves: the loop never idles
            call = calls[n % len(calls)]
            call.metadata["n"] = n
            await store.save(call, event(call.call_id, n))
            largest = max(largest, wal_size(db))
        checkpointer = store.checkpointer
        assert checkpointer is not None
        stats = checkpointer.stats
        assert stats.locked_passes >= 1, stats
        assert stats.errors == 0
        assert largest < 12 * 2**20, (largest, stats)
        assert len(await store.events(limit=count + 1)) == count
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


async def test_state_only_save_touches_no_call_index(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    store = SqliteStore(db, checkpoints=NEVER)
    await store.open()
    try:
        record = make_record("c1")
        await store.save(record, event("c1", 0))
        before = wal_size(db)
        saves = 50
        for n in range(1, saves + 1):
            record.metadata["n"] = n  # a new snapshot each time, same indexed columns
            await store.save(record, event("c1", n))
        # The event row, the dedupe and call_id index entries, the AUTOINCREMENT counter and
        # the call's row: no page of the three `calls` indexes.
        assert (wal_size(db) - before) / FRAME <= saves * 5
        # Indexed columns that do change still reach their indexes.
        record.provider_call_id = "CA-new"
        record.state = CallState.COMPLETED
        await store.save(record, event("c1", saves + 1))
        found = await store.find_by_provider_call_id("twilio", "CA-new")
        assert found is not None and found.metadata["n"] == saves
        assert await store.find_by_provider_call_id("twilio", "CA-c1") is None
        assert await store.list_active() == []
    finally:
        await store.close()


def test_sigkill_right_after_a_burst_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    count = 1500
    proc = run_helper("store_burst_writer.py", str(db), str(count))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acknowledged = proc.stdout.split()
    assert len(acknowledged) == count
    counts = dict(part.split("=") for part in proc.stderr.split())
    assert int(counts["locked"]) >= 1, proc.stderr  # checkpoints ran (and restarted the WAL)

    async def check() -> None:
        store = SqliteStore(db)
        await store.open()
        try:
            for key in acknowledged:
                assert await store.seen(key), key
            assert len(await store.events(limit=count + 1)) == count
            for index in range(20):
                record = await store.get(f"burst-{index:03d}")
                assert record is not None
                last = max(n for n in range(count) if n % 20 == index)
                assert record.metadata["sequence"] == last
        finally:
            await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
