"""Crash-test child for tests/store/test_checkpoint.py (run as a script, not collected by pytest).

Usage: python store_burst_writer.py DB_PATH N

Saves N events to 20 calls as fast as it can, with a checkpointer tuned to run often (every 8
commits, a pass under the writer lock once the WAL holds 32 frames), printing each event's
dedupe key to stdout (flushed) once `save` has returned. After the last one it writes the
checkpointer's pass counts to stderr, asks for one more checkpoint and kills itself with
SIGKILL at once, so a checkpoint is likely in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from voice_call.models import CallRecord, CallState, Direction, Mode
from voice_call.store.base import LoggedEvent
from voice_call.store.checkpoint import CheckpointPolicy
from voice_call.store.sqlite import SqliteStore

CALLS = 20
POLICY = CheckpointPolicy(every=8, interval_s=0.01, restart_frames=32)


def record(index: int, state: CallState) -> CallRecord:
    return CallRecord(
        call_id=f"burst-{index:03d}",
        provider="twilio",
        provider_call_id=f"CA{index:032d}",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550001111",
        to_number="+15550002222",
        state=state,
        started_at=1000.0 + index,
    )


async def main(path: str, count: int) -> None:
    store = SqliteStore(path, checkpoints=POLICY)
    await store.open()
    calls = [record(i, CallState.RINGING) for i in range(CALLS)]
    out = sys.stdout
    for n in range(count):
        call = calls[n % CALLS]
        key = f"burst-key-{n}"
        call.metadata["sequence"] = n  # the snapshot changes too, not only the event log
        await store.save(call, LoggedEvent(call_id=call.call_id, type="x", at=n, dedupe_key=key))
        out.write(key + "\n")
        out.flush()
    checkpointer = store.checkpointer
    assert checkpointer is not None
    stats = checkpointer.stats
    sys.stderr.write(f"passes={stats.passes} locked={stats.locked_passes}\n")
    sys.stderr.flush()
    checkpointer.request()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
