"""Continue turns that hold no request open: RPC `voicecall.continue.start` / `.result`.

`start` runs the manager's own `continue_call` (speak, listen, wait for the caller's final
words, record the turn's latency: the same turn a blocking `continue` takes) as a task and hands
back a turn id at once; `result` reports the turn, waiting for it up to a bound when asked.

What is kept is bounded: at most one turn in progress per call (the manager's rule), at most
`max_kept` turns in all (the oldest finished ones go first), and a finished turn is kept for
`retain_s` (the plugin keeps them 5 minutes), so a client whose reply got lost can ask again.
When a call ends its waiting turn fails with the manager's "Call ended" error; its finished
turns go as soon as each has been fetched once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from voice_call.errors import Conflict, NotFound, Unavailable, VoiceCallError

log = logging.getLogger("voice_call.manager.continues")

RETAIN_S = 300.0
MAX_KEPT = 1000
RunContinue = Callable[[str, str], Awaitable[str]]


@dataclass
class ContinueTurn:
    """One turn started by `continue.start`: its outcome once `done`."""

    call_id: str
    turn_id: str
    transcript: str | None = None
    error: VoiceCallError | None = None
    finished_at: float | None = None  # monotonic
    fetched: bool = False
    done_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.done_event.is_set()


class ContinueTurns:
    def __init__(
        self,
        run: RunContinue,
        *,
        retain_s: float = RETAIN_S,
        max_kept: int = MAX_KEPT,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._retain_s = retain_s
        self._max_kept = max_kept
        self._now = now
        self._turns: dict[str, ContinueTurn] = {}  # by turn id, oldest first
        self._ended: set[str] = set()  # calls that ended while a turn of theirs was kept
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._turns)

    def start(self, call_id: str, message: str) -> ContinueTurn:
        """Begin a turn; raises Conflict when this call already has one in progress."""
        self._prune()
        if any(t.call_id == call_id and not t.done for t in self._turns.values()):
            raise Conflict("Already waiting for transcript: one continue at a time per call")
        self._make_room()
        turn = ContinueTurn(call_id=call_id, turn_id=uuid.uuid4().hex)
        self._turns[turn.turn_id] = turn
        self._ended.discard(call_id)
        task = asyncio.get_running_loop().create_task(self._follow(turn, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return turn

    async def result(self, turn_id: str, call_id: str | None, wait_s: float) -> ContinueTurn:
        """The turn, after waiting up to `wait_s` for it to finish; NotFound when unknown."""
        self._prune()
        turn = self._turns.get(turn_id)
        if turn is None or (call_id is not None and turn.call_id != call_id):
            raise NotFound(
                f"no continue turn {turn_id!r}: it was never started, or it finished more than "
                f"{self._retain_s:.0f} s ago — start another with voicecall.continue.start"
            )
        if not turn.done and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.done_event.wait(), wait_s)
        if turn.done:
            turn.fetched = True
            if turn.call_id in self._ended:
                self._turns.pop(turn.turn_id, None)  # fetched once, and its call is over
        return turn

    def call_ended(self, call_id: str) -> None:
        """An end listener of the manager: drop the call's turns already fetched."""
        for turn in list(self._turns.values()):
            if turn.call_id == call_id and turn.done and turn.fetched:
                del self._turns[turn.turn_id]
        if any(t.call_id == call_id for t in self._turns.values()):
            self._ended.add(call_id)

    async def _follow(self, turn: ContinueTurn, message: str) -> None:
        try:
            turn.transcript = await self._run(turn.call_id, message)
        except VoiceCallError as exc:
            turn.error = exc
        except Exception:
            log.exception("continue turn %s on %s failed unexpectedly", turn.turn_id, turn.call_id)
            turn.error = Unavailable("the continue turn failed unexpectedly (see the server log)")
        finally:
            turn.finished_at = self._now()
            turn.done_event.set()

    def _prune(self) -> None:
        cutoff = self._now() - self._retain_s
        for turn in list(self._turns.values()):
            if turn.finished_at is not None and turn.finished_at < cutoff:
                del self._turns[turn.turn_id]
        live = {t.call_id for t in self._turns.values()}
        self._ended &= live

    def _make_room(self) -> None:
        if len(self._turns) < self._max_kept:
            return
        finished = sorted(
            (t for t in self._turns.values() if t.finished_at is not None),
            key=lambda t: t.finished_at or 0.0,
        )
        if not finished:
            raise Unavailable(
                f"{self._max_kept} continue turns are in progress: wait for one to finish"
            )
        del self._turns[finished[0].turn_id]
