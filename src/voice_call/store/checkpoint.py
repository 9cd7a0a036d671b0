"""WAL checkpoints on a background thread, so the event loop never runs one.

The store's writer connection runs with `wal_autocheckpoint = 0`. SQLite's automatic checkpoint
would otherwise run inside whichever COMMIT crosses 1000 WAL pages — on the event loop —
copying pages into the database file and fsyncing it (a 14–25 ms stall under load).

Instead the writer calls `note_commit()` after each commit, and this thread, on its own
connection, runs `PRAGMA wal_checkpoint(PASSIVE)` every `every` commits, or `interval_s` after
a commit when fewer came. A passive checkpoint takes no lock a writer needs, so commits go on
meanwhile; SQLite releases the GIL while it copies and fsyncs.

Durability is unchanged: a COMMIT still returns once the transaction is in the WAL
(`synchronous=NORMAL`); a checkpoint only copies committed pages into the database file, and
SQLite keeps that safe against a kill at any moment.

A bounded WAL: SQLite starts the WAL file over at the writer's next transaction only when a
checkpoint has copied every frame in it (and no reader still uses it). A passive pass copies
the frames that were there when it started; under steady load commits land while it runs, so
it never quite catches up and the WAL would grow without end. So once the WAL holds
`restart_frames` frames, a second pass follows holding the store's connection lock: no commit
can slip in, it copies only what came during the first pass, and the WAL starts over. The
writer waits for that short pass (two fsyncs and a few pages, well under a millisecond
typically) once every `restart_frames` frames, instead of for a whole checkpoint inside a
COMMIT every 1000.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("voice_call.store.checkpoint")

CHECKPOINT_EVERY = 256  # commits (a few pages each) between checkpoints
CHECKPOINT_INTERVAL_S = 1.0  # a quiet store still checkpoints this long after its last commit
RESTART_FRAMES = 4096  # WAL frames (pages: 16 MiB at 4 KiB) before a pass under the writer lock


@dataclass(frozen=True)
class CheckpointPolicy:
    """When the checkpointer runs (see the module docstring)."""

    every: int = CHECKPOINT_EVERY
    interval_s: float = CHECKPOINT_INTERVAL_S
    restart_frames: int = RESTART_FRAMES


DEFAULT_POLICY = CheckpointPolicy()


@dataclass
class CheckpointStats:
    """What the checkpointer did so far (for tests and benchmarks)."""

    passes: int = 0
    locked_passes: int = 0  # passes run holding the writer's lock (the WAL then starts over)
    largest_wal_frames: int = 0  # the most frames a pass found in the WAL
    longest_locked_s: float = 0.0  # the longest the writer could have waited for a locked pass
    errors: int = 0


class Checkpointer:
    """A daemon thread checkpointing one SQLite database in WAL mode."""

    def __init__(
        self,
        path: Path,
        writer_lock: threading.Lock,
        policy: CheckpointPolicy = DEFAULT_POLICY,
        *,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.every = max(1, policy.every)
        self.interval_s = policy.interval_s
        self.restart_frames = policy.restart_frames
        self.stats = CheckpointStats()
        self._writer_lock = writer_lock
        self._pending = 0  # commits since the last checkpoint started (a lost += is harmless)
        self._wake = threading.Event()
        self._stopping = False
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{path.name}", daemon=True
        )
        self._thread.start()

    def note_commit(self) -> None:
        """Called by the writer after each COMMIT; wakes the thread every `every` commits."""
        self._pending += 1
        if self._pending == self.every:
            self._wake.set()

    def request(self) -> None:
        """Checkpoint now (when anything was committed since the last one)."""
        self._wake.set()

    def stop(self, wait: bool = True) -> None:
        """End the thread after the pass in progress; it closes its connection. Idempotent.
        `wait`: return only once it has (else it ends on its own shortly)."""
        self._stopping = True
        self._wake.set()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.wait(self.interval_s)
                self._wake.clear()
                if self._stopping or not self._pending:
                    continue
                self._pending = 0
                try:
                    self._checkpoint()
                except sqlite3.Error as exc:  # e.g. I/O trouble: the next wake-up tries again
                    self.stats.errors += 1
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._conn.close()

    def _checkpoint(self) -> None:
        wal, _ = self._pass()
        if wal >= self.restart_frames:
            with self._writer_lock:  # no commit can add frames during this pass
                started = time.perf_counter()
                self._pass()
                held = time.perf_counter() - started
            self.stats.locked_passes += 1
            self.stats.longest_locked_s = max(self.stats.longest_locked_s, held)

    def _pass(self) -> tuple[int, int]:
        """One passive checkpoint: (frames in the WAL, frames now in the database)."""
        row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.stats.passes += 1
        wal, copied = int(row[1]), int(row[2])
        self.stats.largest_wal_frames = max(self.stats.largest_wal_frames, wal)
        return wal, copied
