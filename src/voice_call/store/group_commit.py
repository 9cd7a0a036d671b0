"""Group commit: writes that reach a store in the same event-loop iteration share one commit.

Under load several webhooks reach `save` in one iteration of the event loop (one task per
request, several connections readable at once). Each used to be its own transaction; a commit
costs far more than the rows in it (BEGIN, COMMIT, the shared pages written to the WAL again:
the event log's last leaf, its AUTOINCREMENT counter; a system call or two per page). So
`submit` queues the write and awaits a future; the first write queued schedules one flush with
`loop.call_soon`, which runs after every callback already runnable, so the writes of all the
tasks that run before it land in the batch. The flush hands the batch, in arrival order, to
`commit` (the store's: one transaction) and only then settles each future: a write still
returns only once it is committed, as before.

No write waits for a timer or for company. When nothing else would run before the flush (the
loop has no other callback ready, or the flush is next), no other write can join: the batch is
committed at once, inside the write that completes it, which then returns without yielding. So
a lone write costs what it did before group commit (no extra loop iterations), and only the
writes that have company wait: for the work the other tasks ahead of the flush do up to their
own writes. That is the trade: a little latency under load for less CPU per write. The look
at the loop's ready queue uses CPython's asyncio internals (`_ready`); on a loop without it
every batch simply waits for its scheduled flush.

Cancellation: a write used to be synchronous, so a cancellation could only land after it. It
stays that way: a task cancelled while its write is queued waits (absorbing further cancels)
until the batch is committed, gets the write's outcome, and the cancellation is delivered
again (`uncancel` then `cancel`: the task's cancel count is unchanged) so it lands at the
caller's next await, as it would have after a synchronous write. The caller never mistakes a
committed write for one that did not happen.

Queues are per event loop, so a store used from loops on several threads batches each loop's
writes on its own thread; the store's lock keeps their transactions apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

W = TypeVar("W")  # one queued write
R = TypeVar("R")  # what a committed write returns

# A batch's outcome, one per write in order: its result, or the exception it fails with.
Commit = Callable[[Sequence[W]], list[R | Exception]]

_UNSET = object()


class BatchInterrupted(RuntimeError):
    """A batch's commit was interrupted (e.g. KeyboardInterrupt): its writes may or may not
    have been committed."""


class _Queued(Generic[W, R]):
    __slots__ = ("future", "outcome", "work")

    def __init__(self, work: W, future: asyncio.Future[R]) -> None:
        self.work = work
        self.future = future
        self.outcome: object = _UNSET

    def settle(self, outcome: R | Exception) -> None:
        self.outcome = outcome
        future = self.future
        if future.done():  # cancelled: the waiter reads `outcome` (see `_outlive`)
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class _Batch(Generic[W, R]):
    """One loop's writes waiting for their flush, and that flush's handle."""

    __slots__ = ("flush", "writes")

    def __init__(self, flush: asyncio.Handle) -> None:
        self.flush = flush
        self.writes: list[_Queued[W, R]] = []


class GroupCommit(Generic[W, R]):
    """Batches the writes of each event-loop iteration into one `commit` call.

    `commit` is passed per call, not kept: a store holding its GroupCommit must not be held
    by it in return (a cycle would outlive the store's last reference).
    """

    def __init__(self) -> None:
        self._batches: dict[asyncio.AbstractEventLoop, _Batch[W, R]] = {}
        self.batch_sizes: Counter[int] = Counter()  # writes per commit call (for benchmarks)

    async def submit(self, loop: asyncio.AbstractEventLoop, work: W, commit: Commit[W, R]) -> R:
        """Queue `work` for this iteration of `loop` (the running one), to be committed by
        `commit` with the rest of the batch; return its result once committed."""
        batch = self._batches.get(loop)
        if batch is None:
            if _runs_next(loop, None):  # a batch of one: committed at once, as before batching
                self.batch_sizes[1] += 1
                outcome = commit([work])[0]
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
            batch = _Batch(loop.call_soon(self.flush, loop, commit))
            self._batches[loop] = batch
        queued: _Queued[W, R] = _Queued(work, loop.create_future())
        batch.writes.append(queued)
        if _runs_next(loop, batch.flush):  # nobody else can join: commit the batch now
            batch.flush.cancel()
            self.flush(loop, commit)
            return queued.future.result()
        try:
            return await queued.future
        except asyncio.CancelledError as cancelled:
            return await self._outlive(queued, loop, cancelled)

    def flush(self, loop: asyncio.AbstractEventLoop, commit: Commit[W, R]) -> None:
        """Commit `loop`'s queued writes now (on `loop`'s thread); a no-op when none are."""
        batch = self._batches.pop(loop, None)
        if batch is None:
            return
        queue = batch.writes
        self.batch_sizes[len(queue)] += 1
        try:
            outcomes = commit([queued.work for queued in queue])
        except BaseException as exc:  # not an Exception (those are outcomes): never leave a hang
            for queued in queue:
                lost = BatchInterrupted(f"a batch of writes was interrupted by {exc!r}")
                queued.settle(lost)
            raise
        for queued, outcome in zip(queue, outcomes, strict=True):
            queued.settle(outcome)

    async def _outlive(
        self,
        queued: _Queued[W, R],
        loop: asyncio.AbstractEventLoop,
        cancelled: asyncio.CancelledError,
    ) -> R:
        """Wait out a cancellation until the write's batch is settled, then re-deliver it."""
        while queued.outcome is _UNSET:
            if queued.future.cancelled():
                queued.future = loop.create_future()
            # A further cancel is absorbed too; the outcome is read from `queued` below.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await queued.future
        if queued.future.done() and not queued.future.cancelled():
            queued.future.exception()  # retrieved: asyncio must not log it as forgotten
        task = asyncio.current_task()
        if task is None:
            raise cancelled
        task.uncancel()  # the request stays counted once: cancel() below counts it again
        task.cancel(cancelled.args[0] if cancelled.args else None)
        outcome = queued.outcome
        if isinstance(outcome, Exception):
            raise outcome
        return cast(R, outcome)


def _runs_next(loop: asyncio.AbstractEventLoop, flush: asyncio.Handle | None) -> bool:
    """True when nothing would run on `loop` before `flush` (None: before a flush scheduled
    now), so no other write can join its batch. False when the loop cannot tell."""
    ready = getattr(loop, "_ready", None)  # CPython's deque of ready handles
    if ready is None:
        return False
    if not ready:
        return True
    return flush is not None and ready[0] is flush
