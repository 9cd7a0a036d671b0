"""The embedded default CallStore: one SQLite file (stdlib `sqlite3`), WAL mode.

Layout (schema version 1, kept in `PRAGMA user_version`):

- `calls`: one row per call. `record` holds the CallRecord JSON (camelCase, as on the wire)
  *without* its transcript; a few fields are copied into columns for indexing only.
- `transcript`: one row per transcript entry, keyed by (call_id, idx). Append-only: a save
  inserts only the entries whose index is at or past the number already stored for that call,
  so long conversations cost O(new entries) per save and stored rows are never rewritten.
- `events`: the append-only event log. `seq` is AUTOINCREMENT, so a seq is never reused even
  after `prune` deletes the newest rows; `dedupe_key` is UNIQUE (NULLs allowed).

Group commit: the saves that reach the store in one event-loop iteration share one
`BEGIN IMMEDIATE … COMMIT` (group_commit.py says how and why: under load several webhooks
arrive together, and the commit, not the rows, is most of a save's cost). Each save's snapshot,
columns and rows are taken when `save` is called; it returns only once its batch is committed.
Inside a batch each save keeps its own outcome: a repeated dedupe key fails only its own save
(SQLite undoes just the failing INSERT, and the rest of that save is skipped), and any other
error rolls the batch back and runs its saves again one transaction each, so only the bad one
fails. A save that nothing else could join (no other callback ready on the loop), or one
with no running event loop, is one transaction of its own, at once, as before group commit.
The checkpointer is told once per commit: a batch of 8 saves writes ~8 WAL frames, not ~40,
so counting commits still keeps the WAL within its bound (checkpoint.py).

The sqlite calls are synchronous on the event loop's thread on purpose: a transaction takes
tens of microseconds, far less than a hop to a worker thread would cost. A lock guards the
connection in case a caller does use threads (`check_same_thread=False`); every transaction
(a batch, `prune`, a migration) holds it throughout, so none interleaves with another.

Durability: WAL with `synchronous=NORMAL`. A transaction is in the WAL file (the OS page cache)
when COMMIT returns, and a save returns only after its batch's COMMIT, so what a save returned
survives the process crashing or being killed (kill -9) — which is the promise the manager
relies on ("persist before side effects"). It does NOT promise to
survive an OS crash or power loss: the last transactions before such an event may be lost
(the database stays consistent). `synchronous=FULL` would buy that at an fsync per commit.

Checkpoints (copying the WAL into the database file, with its fsyncs) never run on the caller's
thread: the writer has `wal_autocheckpoint = 0` and a `Checkpointer` thread does them
(checkpoint.py), which also keeps the WAL file bounded.

A save writes as few pages as it can, since every page goes to the WAL and then again to the
database: the event row goes first (a repeated dedupe key fails there, before anything else is
written), and the snapshot's row is updated without touching the `calls` indexes when the
indexed columns did not change (SQLite re-writes an index entry whenever its columns are SET).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from voice_call.errors import Unavailable
from voice_call.models import CallRecord, Speaker, TranscriptEntry
from voice_call.store.base import DuplicateEvent, LoggedEvent, StoreClosed
from voice_call.store.checkpoint import DEFAULT_POLICY, Checkpointer, CheckpointPolicy
from voice_call.store.group_commit import GroupCommit

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
# Keep the number of bound parameters per statement well under SQLite's limit.
_IN_CHUNK = 500

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS calls (
    call_id          TEXT PRIMARY KEY,
    provider         TEXT NOT NULL,
    provider_call_id TEXT,
    state            TEXT NOT NULL,
    terminal         INTEGER NOT NULL,
    direction        TEXT NOT NULL,
    started_at       REAL NOT NULL,
    ended_at         REAL,
    record           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_provider ON calls (provider, provider_call_id);
CREATE INDEX IF NOT EXISTS calls_terminal ON calls (terminal, started_at);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);

CREATE TABLE IF NOT EXISTS transcript (
    call_id TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    at      REAL NOT NULL,
    speaker TEXT NOT NULL,
    text    TEXT NOT NULL,
    final   INTEGER NOT NULL,
    PRIMARY KEY (call_id, idx)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    at         REAL NOT NULL,
    dedupe_key TEXT UNIQUE,
    state      TEXT,
    data       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_call ON events (call_id);
"""

_CALL_COLUMNS = "call_id, record"
_EVENT_COLUMNS = "seq, call_id, type, at, dedupe_key, state, data"
_DUPLICATE_KEY = "UNIQUE constraint failed: events.dedupe_key"
_GET_CALL = f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = ?"
_GET_TRANSCRIPT = "SELECT at, speaker, text, final FROM transcript WHERE call_id = ? ORDER BY idx"

_INSERT_EVENT = (
    "INSERT INTO events (call_id, type, at, dedupe_key, state, data) VALUES (?, ?, ?, ?, ?, ?)"
)
# The common save: same provider ids, terminal flag and start time, so no index changes.
_UPDATE_UNINDEXED = (
    "UPDATE calls SET state = ?, direction = ?, ended_at = ?, record = ?"
    " WHERE call_id = ? AND provider = ? AND provider_call_id IS ? AND terminal = ?"
    " AND started_at = ?"
)
# The same parameters as `_UPDATE_UNINDEXED`, in the same order.
_UPSERT_CALL = (
    "INSERT INTO calls (state, direction, ended_at, record, call_id, provider,"
    " provider_call_id, terminal, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (call_id) DO UPDATE SET provider = excluded.provider,"
    " provider_call_id = excluded.provider_call_id, state = excluded.state,"
    " terminal = excluded.terminal, direction = excluded.direction,"
    " started_at = excluded.started_at, ended_at = excluded.ended_at,"
    " record = excluded.record"
)


class ReadOnlyStore(PermissionError):
    """A write was attempted on a store opened with `SqliteStore.open_readonly`."""


class _Save(NamedTuple):
    """One save's writes, taken from its record and event when `save` was called."""

    call: tuple[Any, ...]  # the parameters of `_UPDATE_UNINDEXED` and of `_UPSERT_CALL`
    transcript: list[TranscriptEntry] | None  # the record's entries, when it has any
    event: tuple[Any, ...] | None  # `_INSERT_EVENT`'s parameters


# A save's outcome in a batch: the event's (seq, state), None without an event, or its error.
_Outcome = tuple[int, str] | None | Exception


class SqliteStore:
    """CallStore on one SQLite file. `await store.open()` before use; `close()` when done.

    `checkpoints` says when the writer's background checkpointer runs (checkpoint.py).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        readonly: bool = False,
        checkpoints: CheckpointPolicy = DEFAULT_POLICY,
    ) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.checkpoints = checkpoints
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.checkpointer: Checkpointer | None = None  # the writer's; None when read-only
        self.group_commit: GroupCommit[_Save, tuple[int, str] | None] = GroupCommit()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open_readonly(cls, path: Path | str) -> SqliteStore:
        """Open an existing store for reading only (e.g. the CLI's status while no server runs).

        Works while a server holds the database open in WAL mode. Raises FileNotFoundError
        when there is no database at `path`.
        """
        store = cls(path, readonly=True)
        await store.open()
        return store

    async def open(self) -> None:
        """Open (creating file, folder and schema when needed). Idempotent.

        A path that cannot hold the store (an existing file that is not SQLite, a folder
        under a file) is an Unavailable naming the path, not an sqlite3 traceback."""
        if self._conn is not None:
            return
        self._refuse_foreign_file()
        try:
            conn = self._connect_readonly() if self.readonly else self._connect_writer()
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_NOTADB:
                raise
            raise Unavailable(self._not_a_database()) from None
        except (NotADirectoryError, FileExistsError, IsADirectoryError, PermissionError) as exc:
            raise Unavailable(
                f"cannot open the call store at {self.path}: {exc.strerror or exc} — set "
                "store.path to a folder or a .db file this user can write"
            ) from None
        if not self.readonly:
            try:
                checkpointer = Checkpointer(self.path, self._lock, self.checkpoints)
            except BaseException:
                conn.close()
                raise
            # A store dropped without close() must not leave its thread behind.
            weakref.finalize(self, checkpointer.stop, False)
            self.checkpointer = checkpointer
        self._conn = conn

    def _refuse_foreign_file(self) -> None:
        """Never open (nor chmod) someone's existing non-SQLite file as our store."""
        try:
            with self.path.open("rb") as file:
                header = file.read(len(SQLITE_HEADER))
        except OSError:
            return  # absent (created later) or unreadable: the connect reports it
        if header and header != SQLITE_HEADER:
            raise Unavailable(self._not_a_database())

    def _not_a_database(self) -> str:
        return (
            f"the call store path {self.path} is a file that is not a SQLite database — set "
            "store.path to a folder or to a new .db file"
        )

    def _connect_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file 0600 ourselves: sqlite would honour the umask (usually 0644).
        # The -wal and -shm files sqlite creates later copy the main file's mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077 and info.st_uid == os.getuid():
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not enable WAL mode (got {mode!r})")
            # Durable against a process crash / kill -9 (see the module docstring), not power loss.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer thread does them
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise FileNotFoundError(f"no call store at {self.path}")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"call store {self.path} has schema version {version}; "
                    f"this program knows up to {SCHEMA_VERSION}"
                )
            if version < 1:
                raise RuntimeError(f"{self.path} is not an initialised call store")
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"call store {self.path} has schema version {version}; "
                    f"this program knows up to {SCHEMA_VERSION}"
                )
            if version < 1:
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            # Future migrations: `if version < 2: ...` here, each bumping the version.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        """Close the connection. Idempotent; the store may be opened again.

        Saves still queued for this loop's next batch are committed first (they were made
        while the store was open); a batch queued on another thread's loop fails with
        StoreClosed when it runs.

        The checkpointer stops first, so the writer's connection is the last one and SQLite
        checkpoints and removes the WAL as it closes.
        """
        loop = asyncio.get_running_loop()
        self.group_commit.flush(loop, self._commit_batch)  # queued saves commit first
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()  # outside the lock: its last pass may be waiting for it
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------------ helpers

    def _live(self) -> sqlite3.Connection:
        """The connection, for a caller holding `_lock` (a plain `with self._lock:` is cheaper
        than a generator context manager on the per-webhook path)."""
        if self._conn is None:
            raise StoreClosed("call store is not open")
        return self._conn

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed on success, rolled back on any error."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreClosed("call store is not open")
            if self.readonly:
                raise ReadOnlyStore(f"call store {self.path} was opened read-only")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
                if self.checkpointer is not None:
                    self.checkpointer.note_commit()
            except BaseException:
                # Guarded: sqlite may already have rolled back (e.g. after an I/O error), and
                # a failed ROLLBACK must not hide the original error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _records(
        self, conn: sqlite3.Connection, rows: Sequence[tuple[str, str]]
    ) -> list[CallRecord]:
        """Rebuild records (in `rows` order) from (call_id, record JSON) with their transcripts."""
        records: list[CallRecord] = []
        by_id: dict[str, CallRecord] = {}
        for call_id, record_json in rows:
            record = CallRecord.model_validate_json(record_json)
            records.append(record)
            by_id[call_id] = record
        ids = list(by_id)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            cursor = conn.execute(
                "SELECT call_id, at, speaker, text, final FROM transcript"
                f" WHERE call_id IN ({marks}) ORDER BY call_id, idx",
                chunk,
            )
            for call_id, at, speaker, text, final in cursor:
                by_id[call_id].transcript.append(
                    TranscriptEntry(at=at, speaker=Speaker(speaker), text=text, final=bool(final))
                )
        return records

    @staticmethod
    def _event(row: tuple[Any, ...]) -> LoggedEvent:
        seq, call_id, type_, at, dedupe_key, state, data = row
        return LoggedEvent(
            seq=seq,
            call_id=call_id,
            type=type_,
            at=at,
            dedupe_key=dedupe_key,
            state=state,
            data=json.loads(data),
        )

    # ------------------------------------------------------------------ writes

    async def save(
        self, record: CallRecord, event: LoggedEvent | None = None
    ) -> LoggedEvent | None:
        """Atomically upsert the snapshot, append new transcript entries and the event.

        Raises DuplicateEvent (writing nothing) when `event.dedupe_key` was stored before.
        Returns a copy of the event with `seq` set (and `state` set to the record's state when
        the event had none), or None when no event was given.

        Transcript entries are append-only: entries at indexes already stored are not
        rewritten, and a record whose transcript is shorter than what is stored keeps the
        stored entries.

        The save joins this event-loop iteration's batch (group commit, see the module
        docstring) and returns once that is committed. A cancellation that arrives meanwhile
        does not undo or hide it: the save returns (or raises) as committed and the
        cancellation lands at the caller's next await.
        """
        if self.readonly:  # a closed store: StoreClosed, as the batch's outcome
            raise ReadOnlyStore(f"call store {self.path} was opened read-only")
        work = _save_of(record, event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand outside any loop: nothing to batch with
            outcome = self._commit_batch([work])[0]
            if isinstance(outcome, Exception):
                raise outcome from None
            logged = outcome
        else:
            logged = await self.group_commit.submit(loop, work, self._commit_batch)
        if event is None or logged is None:
            return None
        seq, state = logged
        return event.model_copy(update={"seq": seq, "state": state})

    def _commit_batch(self, saves: Sequence[_Save]) -> list[_Outcome]:
        """Commit `saves` in one transaction; each gets its own outcome (see the module
        docstring). Never raises an Exception: errors are outcomes."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return [StoreClosed("call store is not open") for _ in saves]
            try:
                conn.execute("BEGIN IMMEDIATE")
            except Exception as exc:  # e.g. busy past the timeout: retrying would wait again
                return [exc for _ in saves]
            try:
                return self._apply_and_commit(conn, saves)
            except Exception as exc:
                if len(saves) == 1:
                    return [exc]
            return [self._commit_alone(conn, save) for save in saves]

    def _commit_alone(self, conn: sqlite3.Connection, save: _Save) -> _Outcome:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return self._apply_and_commit(conn, [save])[0]
        except Exception as exc:
            return exc

    def _apply_and_commit(self, conn: sqlite3.Connection, saves: Sequence[_Save]) -> list[_Outcome]:
        """Apply `saves` in the open transaction, then COMMIT. A duplicate key is that save's
        outcome; any other error rolls everything back and is raised."""
        outcomes: list[_Outcome] = []
        try:
            for save in saves:
                try:
                    outcomes.append(_apply(conn, save))
                except DuplicateEvent as exc:
                    outcomes.append(exc)
            conn.execute("COMMIT")
        except BaseException:
            # Guarded: sqlite may already have rolled back (e.g. after an I/O error), and
            # a failed ROLLBACK must not hide the original error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self.checkpointer is not None:
            self.checkpointer.note_commit()
        return outcomes

    async def prune(self, ended_before: float) -> int:
        """Delete terminal calls that ended before this time, with their transcript and events.

        A terminal call without `ended_at` counts as ending when it started. Returns how many
        calls were deleted. Their dedupe keys go with them (`seen` is False afterwards).
        """
        doomed = (
            "SELECT call_id FROM calls WHERE terminal = 1 AND COALESCE(ended_at, started_at) < ?"
        )
        with self._writing() as conn:
            conn.execute(f"DELETE FROM events WHERE call_id IN ({doomed})", (ended_before,))
            conn.execute(f"DELETE FROM transcript WHERE call_id IN ({doomed})", (ended_before,))
            cursor = conn.execute(
                "DELETE FROM calls WHERE terminal = 1 AND COALESCE(ended_at, started_at) < ?",
                (ended_before,),
            )
            return cursor.rowcount

    # ------------------------------------------------------------------ reads

    async def get(self, call_id: str) -> CallRecord | None:
        with self._lock:
            conn = self._live()
            row = conn.execute(_GET_CALL, (call_id,)).fetchone()
            if row is None:
                return None
            record = CallRecord.model_validate_json(row[1])
            record.transcript.extend(
                TranscriptEntry(at=at, speaker=Speaker(speaker), text=text, final=bool(final))
                for at, speaker, text, final in conn.execute(_GET_TRANSCRIPT, (call_id,))
            )
            return record

    async def find_by_provider_call_id(
        self, provider: str, provider_call_id: str
    ) -> CallRecord | None:
        with self._lock:
            conn = self._live()
            row = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE provider = ? AND provider_call_id = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (provider, provider_call_id),
            ).fetchone()
            if row is None:
                return None
            return self._records(conn, [row])[0]

    async def list_active(self) -> list[CallRecord]:
        """Every non-terminal call, oldest first."""
        with self._lock:
            conn = self._live()
            rows = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE terminal = 0 ORDER BY started_at, call_id"
            ).fetchall()
            return self._records(conn, rows)

    async def list_recent(self, limit: int = 50) -> list[CallRecord]:
        """Most recently started calls first, any state."""
        with self._lock:
            conn = self._live()
            rows = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls ORDER BY started_at DESC, call_id DESC LIMIT ?",
                (max(0, limit),),
            ).fetchall()
            return self._records(conn, rows)

    async def seen(self, dedupe_key: str) -> bool:
        """True when an event with this dedupe key was applied (and not pruned since)."""
        with self._lock:
            conn = self._live()
            row = conn.execute(
                "SELECT 1 FROM events WHERE dedupe_key = ?", (dedupe_key,)
            ).fetchone()
            return row is not None

    async def events(
        self, *, since_seq: int = 0, call_id: str | None = None, limit: int = 1000
    ) -> list[LoggedEvent]:
        """Event-log rows with seq > since_seq, in order."""
        with self._lock:
            conn = self._live()
            if call_id is None:
                cursor = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (since_seq, max(0, limit)),
                )
            else:
                cursor = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE call_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (call_id, since_seq, max(0, limit)),
                )
            return [self._event(row) for row in cursor]

    async def last_seq(self) -> int:
        """The highest seq ever assigned (0 when none); it does not go down after `prune`."""
        with self._lock:
            conn = self._live()
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            return int(row[0]) if row is not None else 0


def _transcript_rows(
    call_id: str, first: int, entries: Iterable[TranscriptEntry]
) -> Iterator[tuple[str, int, float, str, str, int]]:
    for idx, entry in enumerate(entries, start=first):
        yield (call_id, idx, entry.at, entry.speaker.value, entry.text, int(entry.final))


def _save_of(record: CallRecord, event: LoggedEvent | None) -> _Save:
    """What `save` writes, taken now: the caller may change its objects once it returns."""
    state = record.state.value
    call = (
        state,
        record.direction.value,
        record.ended_at,
        record.model_dump_json(by_alias=True, exclude={"transcript"}),
        record.call_id,
        record.provider,
        record.provider_call_id,
        int(record.terminal),
        record.started_at,
    )
    transcript = record.transcript[:] if record.transcript else None
    if event is None:
        return _Save(call, transcript, None)
    if event.state is not None:
        state = event.state
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return _Save(
        call, transcript, (event.call_id, event.type, event.at, event.dedupe_key, state, data)
    )


def _apply(conn: sqlite3.Connection, save: _Save) -> tuple[int, str] | None:
    """One save's statements, inside the caller's transaction. The event goes first: a repeated
    dedupe key fails there (SQLite undoes just that INSERT), before anything else is written."""
    logged = None
    if save.event is not None:
        logged = _insert_event(conn, save.event), save.event[4]
    _upsert_call(conn, save.call)
    if save.transcript:
        call_id = save.call[4]
        stored = conn.execute(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM transcript WHERE call_id = ?", (call_id,)
        ).fetchone()[0]
        if stored < len(save.transcript):
            conn.executemany(
                "INSERT INTO transcript (call_id, idx, at, speaker, text, final)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                _transcript_rows(call_id, stored, save.transcript[stored:]),
            )
    return logged


def _insert_event(conn: sqlite3.Connection, row: tuple[Any, ...]) -> int:
    """Append the event (its seq returned); a repeated dedupe key is a DuplicateEvent."""
    try:
        seq = conn.execute(_INSERT_EVENT, row).lastrowid
    except sqlite3.IntegrityError as exc:
        key = row[3]
        if key is not None and str(exc) == _DUPLICATE_KEY:
            raise DuplicateEvent(key) from None
        raise
    assert seq is not None
    return seq


def _upsert_call(conn: sqlite3.Connection, call: tuple[Any, ...]) -> None:
    """Update the call's row in place when its indexed columns are unchanged, else upsert it."""
    if not conn.execute(_UPDATE_UNINDEXED, call).rowcount:
        conn.execute(_UPSERT_CALL, call)
