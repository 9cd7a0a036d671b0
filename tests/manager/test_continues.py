"""ContinueTurns (manager/continues.py): what it keeps stays bounded, and a result can be
fetched at least once."""

from __future__ import annotations

import asyncio

import pytest

from voice_call.errors import Conflict, NotFound, TimedOut, Unavailable
from voice_call.manager.continues import ContinueTurns


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Line:
    """A fake `continue_call`: each call waits until the test answers it."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[str]] = {}

    async def __call__(self, call_id: str, message: str) -> str:
        future = self.waiting[call_id] = asyncio.get_running_loop().create_future()
        return await future

    def answer(self, call_id: str, text: str | BaseException) -> None:
        future = self.waiting.pop(call_id)
        if isinstance(text, BaseException):
            future.set_exception(text)
        else:
            future.set_result(text)


async def settled(turns: ContinueTurns, turn_id: str) -> None:
    await turns.result(turn_id, None, 1.0)


async def test_results_are_kept_for_the_retention_then_dropped() -> None:
    line, clock = Line(), Clock()
    turns = ContinueTurns(line, retain_s=300, now=clock)
    turn = turns.start("c1", "hi")
    with pytest.raises(Conflict, match="Already waiting"):
        turns.start("c1", "again")
    await asyncio.sleep(0)
    line.answer("c1", "yes")
    first = await turns.result(turn.turn_id, "c1", 1.0)
    assert first.done and first.transcript == "yes"
    assert (await turns.result(turn.turn_id, None, 0)).transcript == "yes"  # again: still there
    with pytest.raises(NotFound):
        await turns.result(turn.turn_id, "another-call", 0)
    clock.now += 301
    with pytest.raises(NotFound, match="more than 300 s ago"):
        await turns.result(turn.turn_id, None, 0)
    assert len(turns) == 0


async def test_an_ended_call_keeps_an_unfetched_result_until_its_first_fetch() -> None:
    line = Line()
    turns = ContinueTurns(line)
    turn = turns.start("c1", "hi")
    await asyncio.sleep(0)
    turns.call_ended("c1")
    line.answer("c1", Conflict("Call ended: hangup-user"))
    failed = await turns.result(turn.turn_id, None, 1.0)
    assert isinstance(failed.error, Conflict) and "Call ended" in failed.error.message
    assert len(turns) == 0

    other = turns.start("c2", "hi")
    await asyncio.sleep(0)
    line.answer("c2", TimedOut("Timed out waiting for transcript"))
    await settled(turns, other.turn_id)
    turns.call_ended("c2")  # fetched already: dropped at once
    assert len(turns) == 0


async def test_the_number_kept_is_bounded() -> None:
    line = Line()
    turns = ContinueTurns(line, max_kept=2)
    first = turns.start("c1", "hi")
    turns.start("c2", "hi")
    with pytest.raises(Unavailable, match="2 continue turns are in progress"):
        turns.start("c3", "hi")
    await asyncio.sleep(0)
    line.answer("c1", "one")
    await settled(turns, first.turn_id)
    third = turns.start("c3", "hi")  # the oldest finished turn made room
    assert len(turns) == 2
    with pytest.raises(NotFound):
        await turns.result(first.turn_id, None, 0)
    await asyncio.sleep(0)
    line.answer("c2", "two")
    line.answer("c3", "three")
    assert (await turns.result(third.turn_id, None, 1.0)).transcript == "three"


async def test_an_unexpected_failure_is_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(call_id: str, message: str) -> str:
        raise RuntimeError("boom")

    turns = ContinueTurns(broken)
    turn = turns.start("c1", "hi")
    done = await turns.result(turn.turn_id, None, 1.0)
    assert isinstance(done.error, Unavailable) and "server log" in done.error.message
    assert "boom" in caplog.text
