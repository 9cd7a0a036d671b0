"""Crash-test child for tests/store/test_sqlite.py (run as a script, not collected by pytest).

Usage: python store_crash_writer.py DB_PATH N

Saves N calls (each with a transcript and an event), printing each call id to stdout (flushed)
once `save` has returned, i.e. once the store acknowledged it. Then it opens a write
transaction that it never commits and kills itself with SIGKILL: no close, no checkpoint,
no atexit handlers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from voice_call.models import CallRecord, CallState, Direction, Mode, Speaker, TranscriptEntry
from voice_call.store.base import LoggedEvent
from voice_call.store.sqlite import SqliteStore


async def main(path: str, count: int) -> None:
    store = SqliteStore(path)
    await store.open()
    for i in range(count):
        record = CallRecord(
            call_id=f"crash-{i:05d}",
            provider="mock",
            provider_call_id=f"P{i}",
            direction=Direction.OUTBOUND,
            mode=Mode.CONVERSATION,
            from_number="+15550001111",
            to_number="+15550002222",
            state=CallState.ACTIVE,
            started_at=1000.0 + i,
            transcript=[
                TranscriptEntry(at=1000.0 + i + j, speaker=Speaker.USER, text=f"line {j} ✓")
                for j in range(i % 4)
            ],
        )
        event = LoggedEvent(
            call_id=record.call_id, type="call.active", at=1000.0 + i, dedupe_key=f"key-{i}"
        )
        await store.save(record, event)
        sys.stdout.write(record.call_id + "\n")
        sys.stdout.flush()
    # A transaction in flight at the moment of the crash must leave no trace.
    conn = store._conn
    assert conn is not None
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO calls (call_id, provider, state, terminal, direction, started_at, record)"
        " VALUES ('uncommitted', 'mock', 'active', 0, 'outbound', 0, '{}')"
    )
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
