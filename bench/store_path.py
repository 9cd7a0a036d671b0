"""The SQLite store's save path alone: `python -m bench.store_path [SAVES]`.

A webhook's save is one event and one snapshot update. This makes a store on a real file
(WAL, the default checkpointer), 100 calls, and then SAVES saves of one event each (a new
snapshot, a new dedupe key), issued K at a time with `asyncio.gather` as K webhooks arriving
together would (K=1: one at a time). It prints, per K, CPU µs per save (the whole process, so
the checkpointer thread counts), commits per save and the batch sizes the store saw.

For counts that no neighbour disturbs, run it under `valgrind --tool=callgrind` at two lengths,
one K at a time, and divide the difference in instructions by the difference in saves (start-up
cancels out). `VOICECALL_BENCH_K=1,8` (default), `VOICECALL_BENCH_CALLS=100`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voice_call.models import CallRecord, CallState, Direction, Mode
from voice_call.store.base import LoggedEvent
from voice_call.store.sqlite import SqliteStore


def record(n: int) -> CallRecord:
    return CallRecord(
        call_id=f"call-{n:04d}",
        provider="twilio",
        provider_call_id=f"CA{n:032x}",
        direction=Direction.OUTBOUND,
        mode=Mode.NOTIFY,
        from_number="+15550001111",
        to_number="+15550002222",
        state=CallState.ACTIVE,
        started_at=1000.0 + n,
    )


def status_event(call_id: str, n: int) -> LoggedEvent:
    """Built without validation: the benchmark measures the store, not pydantic."""
    return LoggedEvent.model_construct(
        seq=0,
        call_id=call_id,
        type="call.active",
        at=2000.0 + n,
        dedupe_key=f"twilio:CA:{n}:in-progress",
        state=None,
        data={"callStatus": "in-progress", "sequenceNumber": n},
    )


async def measure(saves: int, k: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="store-path-") as folder:
        store = SqliteStore(Path(folder) / "calls.db")
        await store.open()
        try:
            records = [record(n) for n in range(calls)]
            for call in records:
                await store.save(call)
            group = getattr(store, "group_commit", None)  # absent before group commit
            if group is not None:
                group.batch_sizes.clear()
            done = 0
            started = time.process_time()
            while done < saves:
                batch = []
                for _ in range(min(k, saves - done)):
                    call = records[done % calls]
                    call.metadata["n"] = done  # a new snapshot each save
                    batch.append(store.save(call, status_event(call.call_id, done)))
                    done += 1
                await asyncio.gather(*batch)
            cpu = time.process_time() - started
            assert len(await store.events(since_seq=0, limit=saves + 1)) == saves
            sizes = dict(sorted(group.batch_sizes.items())) if group is not None else {1: saves}
            commits = sum(sizes.values())
        finally:
            await store.close()
    return {
        "K": k,
        "saves": saves,
        "µs/save": round(cpu / saves * 1e6, 2),
        "commits/save": round(commits / saves, 3),
        "batch sizes": sizes,
    }


def main() -> None:
    saves = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    ks = [int(k) for k in os.environ.get("VOICECALL_BENCH_K", "1,8").split(",")]
    calls = int(os.environ.get("VOICECALL_BENCH_CALLS", "100"))
    for k in ks:
        print(json.dumps(asyncio.run(measure(saves, k, calls)), ensure_ascii=False))


if __name__ == "__main__":
    main()
