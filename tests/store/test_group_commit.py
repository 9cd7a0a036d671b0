"""Group commit in the SQLite store (src/voice_call/store/group_commit.py, store/sqlite.py):
saves made in one event-loop iteration share one transaction, each keeps its own outcome, and
a save still returns only once committed — through cancellation and close too."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.store.contract import entry, event, make_record
from voice_call.models import CallRecord
from voice_call.store.base import DuplicateEvent, LoggedEvent, StoreClosed
from voice_call.store.checkpoint import CheckpointPolicy
from voice_call.store.group_commit import BatchInterrupted, GroupCommit, _runs_next
from voice_call.store.sqlite import SqliteStore


class Statements:
    """The SQL the store's writer connection runs, from its trace callback."""

    def __init__(self, store: SqliteStore) -> None:
        assert store._conn is not None
        self.seen: list[str] = []
        store._conn.set_trace_callback(self.seen.append)

    def count(self, sql: str) -> int:
        return sum(1 for statement in self.seen if statement == sql)

    @property
    def commits(self) -> int:
        return self.count("COMMIT")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "calls.sqlite"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    await s.open()
    yield s
    await s.close()


def committed_events(path: Path) -> list[tuple[str, str | None]]:
    """(call_id, dedupe_key) of every committed event, read by a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT call_id, dedupe_key FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


async def outcomes(*saves: Coroutine[Any, Any, LoggedEvent | None]) -> list[Any]:
    return list(await asyncio.gather(*saves, return_exceptions=True))


# ---------------------------------------------------------------------- one transaction


async def test_concurrent_saves_share_one_commit(store: SqliteStore, db_path: Path) -> None:
    trace = Statements(store)
    records = [make_record(f"c{n}") for n in range(8)]
    logged = await outcomes(
        *(store.save(r, event(r.call_id, key=f"k{n}")) for n, r in enumerate(records))
    )
    assert trace.commits == 1
    assert trace.count("BEGIN IMMEDIATE") == 1
    assert store.group_commit.batch_sizes == {8: 1}
    # In arrival order, each with its own seq, each readable once `save` returned.
    assert [e.seq for e in logged] == list(range(1, 9))
    assert committed_events(db_path) == [(f"c{n}", f"k{n}") for n in range(8)]
    for record in records:
        assert await store.get(record.call_id) == record


async def test_a_lone_save_still_commits_at_once(store: SqliteStore, db_path: Path) -> None:
    trace = Statements(store)
    logged = await store.save(make_record("c1"), event("c1", key="k1"))
    assert logged is not None and logged.seq == 1
    assert trace.commits == 1
    assert store.group_commit.batch_sizes == {1: 1}
    assert committed_events(db_path) == [("c1", "k1")]


async def test_a_lone_save_returns_without_yielding_to_the_loop(store: SqliteStore) -> None:
    """Nothing else can join its batch, so it commits inside the call (no loop turn)."""
    await asyncio.sleep(0)  # let whatever the fixture left ready run first
    save = store.save(make_record("c1"), event("c1", key="k1"))
    with pytest.raises(StopIteration) as done:
        save.send(None)
    assert done.value.value is not None and done.value.value.seq == 1


async def test_transcript_appends_see_earlier_saves_of_the_batch(store: SqliteStore) -> None:
    trace = Statements(store)
    two = make_record("c1", transcript=[entry(0), entry(1)])
    three = make_record("c1", transcript=[entry(0), entry(1), entry(2)])
    await outcomes(store.save(two), store.save(three))
    assert trace.commits == 1 and trace.count("ROLLBACK") == 0  # no key clash, no retry
    stored = await store.get("c1")
    assert stored is not None and stored.transcript == three.transcript


async def test_a_save_writes_the_record_as_it_was_when_called(store: SqliteStore) -> None:
    record = make_record("c1", transcript=[entry(0)])
    saving = asyncio.ensure_future(store.save(record, event("c1", key="k1")))
    await asyncio.sleep(0)  # the save is queued, not yet committed
    record.metadata["later"] = True
    record.transcript.append(entry(1))
    await saving
    stored = await store.get("c1")
    assert stored is not None
    assert "later" not in stored.metadata and len(stored.transcript) == 1


# ---------------------------------------------------------------------- outcomes per save


async def test_a_duplicate_fails_only_its_own_save(store: SqliteStore, db_path: Path) -> None:
    await store.save(make_record("c-old"), event("c-old", key="dup"))
    trace = Statements(store)
    again = make_record("c-dup", transcript=[entry(0)])  # a call, transcript: none written
    result = await outcomes(
        store.save(make_record("c1"), event("c1", key="k1")),
        store.save(again, event("c-dup", key="dup")),
        store.save(make_record("c2"), event("c2", key="k2")),
    )
    assert isinstance(result[1], DuplicateEvent)
    assert [e.call_id for e in (result[0], result[2])] == ["c1", "c2"]
    assert trace.commits == 1 and trace.count("ROLLBACK") == 0
    assert committed_events(db_path) == [("c-old", "dup"), ("c1", "k1"), ("c2", "k2")]
    assert await store.get("c-dup") is None


async def test_the_same_key_twice_in_a_batch_first_wins(store: SqliteStore, db_path: Path) -> None:
    trace = Statements(store)
    first, second = make_record("c1"), make_record("c2")
    result = await outcomes(
        store.save(first, event("c1", key="k")), store.save(second, event("c2", key="k"))
    )
    assert isinstance(result[0], LoggedEvent) and isinstance(result[1], DuplicateEvent)
    assert trace.commits == 1
    assert committed_events(db_path) == [("c1", "k")]
    assert await store.get("c1") == first
    assert await store.get("c2") is None


async def test_an_error_fails_only_that_save(store: SqliteStore, db_path: Path) -> None:
    # Its event and call row are written before its transcript fails (a lone surrogate
    # cannot be encoded): the batch rolls back and each save runs again on its own.
    bad = make_record("c-bad", transcript=[entry(0, "\ud800")])
    trace = Statements(store)
    result = await outcomes(
        store.save(make_record("c1"), event("c1", key="k1")),
        store.save(bad, event("c-bad", key="k-bad")),
        store.save(make_record("c2"), event("c2", key="k2")),
    )
    assert isinstance(result[1], UnicodeEncodeError)
    assert [e.call_id for e in (result[0], result[2])] == ["c1", "c2"]
    assert trace.count("ROLLBACK") == 2  # the batch, then the bad save alone
    assert trace.commits == 2  # the two good saves, one transaction each
    assert committed_events(db_path) == [("c1", "k1"), ("c2", "k2")]
    assert await store.get("c-bad") is None
    assert not await store.seen("k-bad")
    # The store goes on batching afterwards.
    await outcomes(store.save(make_record("c3")), store.save(make_record("c4")))
    assert trace.commits == 3


# ---------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("committed_first", [False, True], ids=["queued", "committed"])
async def test_a_cancelled_save_still_commits_and_says_so(
    store: SqliteStore, db_path: Path, committed_first: bool
) -> None:
    """Cancelled while its batch is queued (or committed but not yet resumed), the save
    returns as committed and the cancellation lands at the caller's next await."""
    seen: list[object] = []

    async def caller() -> None:
        seen.append(await store.save(make_record("c1"), event("c1", key="k1")))
        me = asyncio.current_task()
        assert me is not None
        seen.append(me.cancelling())
        await asyncio.sleep(0)  # the next await: the cancellation lands here
        seen.append("not reached")

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the task queued its save; its batch is scheduled
    if committed_first:
        await asyncio.sleep(0)  # the batch committed; the task has not resumed yet
    assert len(committed_events(db_path)) == int(committed_first)
    assert seen == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    logged, cancelling = seen
    assert isinstance(logged, LoggedEvent) and logged.seq == 1
    assert cancelling == 1  # the request is counted once, as the caller made it
    assert committed_events(db_path) == [("c1", "k1")]


async def test_a_save_cancelled_ahead_in_its_batch_leaves_the_others_settled(
    store: SqliteStore, db_path: Path
) -> None:
    """The first save of a batch is cancelled after the batch's flush was scheduled and before
    it ran: the flush still settles every later save of the batch (none is left waiting)."""
    first = asyncio.create_task(store.save(make_record("c1"), event("c1", key="k1")))
    second = asyncio.create_task(store.save(make_record("c2"), event("c2", key="k2")))
    await asyncio.sleep(0)  # both queued in one batch; its flush runs next
    first.cancel()  # its future is cancelled before the flush settles it
    logged = await asyncio.wait_for(second, 2)
    assert logged is not None and logged.seq == 2
    with pytest.raises(asyncio.CancelledError):
        await first
    assert committed_events(db_path) == [("c1", "k1"), ("c2", "k2")]


async def test_the_last_save_of_a_batch_commits_it_without_waiting_a_loop_turn(
    store: SqliteStore,
) -> None:
    """A save that joins a batch when nothing else can (the batch's flush is the next thing
    the loop runs) commits the batch inside its own call instead of waiting for the flush."""
    loop = asyncio.get_running_loop()
    order: list[str] = []

    async def joiner() -> None:
        loop.call_soon(order.append, "next loop step")  # runs after the flush in the queue
        await store.save(make_record("c2"), event("c2", key="k2"))
        order.append("joiner returned")

    first = asyncio.create_task(store.save(make_record("c1"), event("c1", key="k1")))
    await asyncio.sleep(0)  # `first` queued its batch; the flush is scheduled behind us
    await joiner()  # nothing is left to run before the flush but the joiner itself
    await first
    assert order[0] == "joiner returned", order
    assert store.group_commit.batch_sizes == {2: 1}


async def test_a_cancellation_with_a_message_is_delivered_again(store: SqliteStore) -> None:
    async def caller() -> None:
        await store.save(make_record("c1"), event("c1", key="k1"))
        await asyncio.sleep(0)  # the re-delivered cancellation lands here

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # its save is queued in a batch
    task.cancel("the caller hung up")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_failed_write_cancelled_before_it_resumed_leaves_no_unretrieved_error(
    store: SqliteStore,
) -> None:
    """The batch failed the write (a duplicate) and then its task was cancelled before it
    resumed: the task gets the duplicate, and asyncio has no forgotten exception to log."""
    await store.save(make_record("c1"), event("c1", key="k1"))
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
    try:
        task = asyncio.create_task(store.save(make_record("c1"), event("c1", key="k1")))
        await asyncio.sleep(0)  # queued in a batch
        await asyncio.sleep(0)  # the batch ran: the write failed, the task has not resumed
        task.cancel()
        with pytest.raises(DuplicateEvent):
            await task
        del task
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


def test_a_loop_that_cannot_show_its_ready_queue_never_commits_ahead_of_its_flush() -> None:
    """On a loop without CPython's `_ready` (uvloop) every batch waits for its flush."""

    class OtherLoop:
        pass

    assert _runs_next(OtherLoop(), None) is False  # type: ignore[arg-type]


class Interrupt(BaseException):
    """Not an Exception: what KeyboardInterrupt or SystemExit is to a batch's commit."""


async def test_an_interrupted_batch_fails_each_of_its_writes_and_re_raises() -> None:
    """A commit interrupted by a BaseException may or may not have happened: every write of the
    batch is told so (none is left waiting) and the interruption goes on up."""
    loop = asyncio.get_running_loop()
    group: GroupCommit[str, str] = GroupCommit()

    def commit(works: Sequence[str]) -> list[str | Exception]:
        raise Interrupt("stop")

    writes = [asyncio.create_task(group.submit(loop, w, commit)) for w in ("a", "b")]
    await asyncio.sleep(0)  # both queued; their batch's flush is scheduled
    group._batches[loop].flush.cancel()  # run it here, where the interruption can be caught
    with pytest.raises(Interrupt):
        group.flush(loop, commit)
    for write in writes:
        with pytest.raises(BatchInterrupted, match=r"interrupted by Interrupt\('stop'\)"):
            await asyncio.wait_for(write, 1)
    assert loop not in group._batches


async def test_a_cancelled_duplicate_still_raises_its_duplicate(store: SqliteStore) -> None:
    await store.save(make_record("c1"), event("c1", key="k1"))
    seen: list[object] = []

    async def caller() -> None:
        try:
            await store.save(make_record("c1"), event("c1", key="k1"))
        except DuplicateEvent as exc:
            seen.append(exc)
        await asyncio.sleep(0)
        seen.append("not reached")

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    task.cancel()  # twice: both requests stay counted
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(seen) == 1 and isinstance(seen[0], DuplicateEvent)
    assert task.cancelling() == 2


# ---------------------------------------------------------------------- close, threads


async def test_close_commits_the_saves_still_queued(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    saves = [asyncio.ensure_future(store.save(make_record(c), event(c))) for c in ("c1", "c2")]
    await asyncio.sleep(0)  # both queued, their batch not yet run
    assert committed_events(db_path) == []
    await store.close()
    logged = await asyncio.gather(*saves)
    assert [e.seq if e else None for e in logged] == [1, 2]
    assert committed_events(db_path) == [("c1", None), ("c2", None)]


def drive(save: Coroutine[Any, Any, LoggedEvent | None]) -> LoggedEvent | None:
    """Run a save coroutine by hand, on a thread with no event loop."""
    try:
        save.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("a save outside any loop must not wait")


async def test_saves_from_other_threads_keep_working(store: SqliteStore, db_path: Path) -> None:
    bare = await asyncio.to_thread(drive, store.save(make_record("c1"), event("c1", key="k1")))
    assert bare is not None and bare.seq == 1

    async def on_its_own_loop() -> list[Any]:
        return await outcomes(*(store.save(make_record(f"t{n}"), event(f"t{n}")) for n in (1, 2)))

    here = [make_record(f"m{n}") for n in (1, 2)]
    there = asyncio.to_thread(asyncio.run, on_its_own_loop())
    results = await asyncio.gather(there, *(store.save(r, event(r.call_id)) for r in here))
    assert all(isinstance(logged, LoggedEvent) for logged in results[0])
    assert {call_id for call_id, _ in committed_events(db_path)} == {"c1", "t1", "t2", "m1", "m2"}


# ---------------------------------------------------------------------- the checkpointer


async def test_the_wal_stays_bounded_under_batched_writes(db_path: Path) -> None:
    policy = CheckpointPolicy(every=16, interval_s=0.01, restart_frames=256)
    store = SqliteStore(db_path, checkpoints=policy)
    await store.open()
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        calls: list[CallRecord] = [make_record(f"c{i}") for i in range(100)]
        largest, n = 0, 0
        for _ in range(400):  # 3,200 saves, 8 per batch, no pause between batches
            batch = []
            for _ in range(8):
                call = calls[n % len(calls)]
                call.metadata["n"] = n
                batch.append(store.save(call, event(call.call_id, key=f"k{n}")))
                n += 1
            await asyncio.gather(*batch)
            largest = max(largest, wal.stat().st_size)
        assert store.group_commit.batch_sizes == {8: 400}
        checkpointer = store.checkpointer
        assert checkpointer is not None
        assert checkpointer.stats.locked_passes >= 1 and checkpointer.stats.errors == 0
        assert largest < 12 * 2**20, (largest, checkpointer.stats)
        assert len(await store.events(limit=n + 1)) == n
    finally:
        await store.close()


# ---------------------------------------------------------------------- what fails, and how


async def test_a_save_outside_any_loop_raises_its_own_duplicate(store: SqliteStore) -> None:
    await store.save(make_record("c1"), event("c1", key="k1"))
    again = store.save(make_record("c1"), event("c1", key="k1"))
    with pytest.raises(DuplicateEvent) as refused:
        await asyncio.to_thread(drive, again)
    assert refused.value.args == ("k1",)  # it names the key it repeated


async def test_a_lone_failing_save_fails_once_and_is_not_run_again(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of one that fails has nothing to isolate: its error is its outcome, and it is
    not written by a second attempt (a transient error is for the caller to retry)."""
    import voice_call.store.sqlite as sqlite_module

    real, attempts = sqlite_module._apply, []

    def flaky(conn: sqlite3.Connection, save: Any) -> Any:
        attempts.append(save)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn, save)

    monkeypatch.setattr(sqlite_module, "_apply", flaky)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        await store.save(make_record("c1"), event("c1", key="k1"))
    assert len(attempts) == 1
    assert committed_events(db_path) == []
    assert await store.get("c1") is None


async def test_a_batch_that_cannot_begin_fails_every_save_with_that_error(
    store: SqliteStore, db_path: Path
) -> None:
    assert store._conn is not None
    store._conn.execute("PRAGMA busy_timeout = 20")  # the test waits 20 ms, not 5 s
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    trace = Statements(store)
    try:
        result = await outcomes(*(store.save(make_record(f"c{n}")) for n in range(3)))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(r, sqlite3.OperationalError) for r in result), result
    assert all("locked" in str(r) for r in result), result
    # One wait for the lock for the whole batch: not one more per save (each would wait as
    # long again, busy_timeout is 5 s), and nothing tried outside a transaction.
    assert trace.seen == ["BEGIN IMMEDIATE"]
    assert await store.get("c0") is None
    await store.save(make_record("c0"))  # and the store works again once the lock is gone
    assert await store.get("c0") is not None


async def test_a_batch_queued_on_another_loop_fails_closed_when_the_store_closes(
    db_path: Path,
) -> None:
    """`close` commits what its own loop queued; a batch another thread's loop queued before
    the close and flushes after it gets StoreClosed, never a hang or a write after close."""
    import threading

    store = SqliteStore(db_path)
    await store.open()
    queued, closed = threading.Event(), threading.Event()

    async def there() -> Any:
        loop = asyncio.get_running_loop()
        task = loop.create_task(store.save(make_record("t1"), event("t1", key="kt")))
        # Runs after the save queued itself and before its flush: hold the loop until the
        # store is closed on the main loop.
        loop.call_soon(lambda: (queued.set(), closed.wait(10)))
        return (await asyncio.gather(task, return_exceptions=True))[0]

    thread_result = asyncio.create_task(asyncio.to_thread(asyncio.run, there()))
    assert await asyncio.to_thread(queued.wait, 10)
    await store.close()
    closed.set()
    result = await thread_result
    assert isinstance(result, StoreClosed), result
    assert str(result) == "call store is not open"
    assert committed_events(db_path) == []
