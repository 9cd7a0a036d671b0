"""Reading the event log for watchers: paging past PAGE entries, and the last n of one call."""

from __future__ import annotations

from voice_call.server.event_log import PAGE, events_after, last_events
from voice_call.store.base import LoggedEvent


class PagedLog:
    """The two CallStore reads event_log uses, over a list; records each page asked for."""

    def __init__(self, events: list[LoggedEvent]) -> None:
        self.rows = events
        self.pages: list[tuple[int, str | None, int]] = []

    async def events(
        self, *, since_seq: int = 0, call_id: str | None = None, limit: int = 1000
    ) -> list[LoggedEvent]:
        self.pages.append((since_seq, call_id, limit))
        rows = [e for e in self.rows if e.seq > since_seq and call_id in (None, e.call_id)]
        return rows[:limit]

    async def last_seq(self) -> int:
        return self.rows[-1].seq if self.rows else 0


def log_of(count: int, calls: tuple[str, ...] = ("a",)) -> PagedLog:
    rows = [
        LoggedEvent(seq=n, call_id=calls[n % len(calls)], type="call.speech", at=float(n))
        for n in range(1, count + 1)
    ]
    return PagedLog(rows)


async def test_a_backlog_longer_than_a_page_is_read_page_by_page_in_order() -> None:
    store = log_of(2 * PAGE + 7)
    seqs = [e.seq async for e in events_after(store, 0)]  # type: ignore[arg-type]
    assert seqs == list(range(1, 2 * PAGE + 8))
    # each page starts after the last seq of the one before; a short page ends the read
    assert [since for since, _, _ in store.pages] == [0, PAGE, 2 * PAGE]
    assert all(limit == PAGE for _, _, limit in store.pages)


async def test_an_exact_multiple_of_a_page_asks_once_more_and_stops_on_the_empty_page() -> None:
    store = log_of(PAGE)
    assert len([e async for e in events_after(store, 0)]) == PAGE  # type: ignore[arg-type]
    assert [since for since, _, _ in store.pages] == [0, PAGE]


async def test_last_events_of_the_whole_log_start_near_the_tail() -> None:
    store = log_of(3 * PAGE)
    tail = await last_events(store, 5)  # type: ignore[arg-type]
    assert [e.seq for e in tail] == list(range(3 * PAGE - 4, 3 * PAGE + 1))
    assert store.pages[0][0] == 3 * PAGE - 5  # not a read of the whole backlog
    assert await last_events(log_of(3), 10) == (log_of(3)).rows  # type: ignore[arg-type]


async def test_last_events_of_one_call_keep_only_its_newest_entries() -> None:
    store = log_of(PAGE + 40, calls=("a", "b"))
    tail = await last_events(store, 3, call_id="b")  # type: ignore[arg-type]
    assert [e.call_id for e in tail] == ["b", "b", "b"]
    assert [e.seq for e in tail] == [PAGE + 35, PAGE + 37, PAGE + 39]  # b has the odd seqs
    assert {call for _, call, _ in store.pages} == {"b"}
    assert await last_events(store, 3, call_id="nobody") == []  # type: ignore[arg-type]
