"""Reading the store's event log for watchers: pages after a seq, or the last n entries."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from voice_call.store.base import CallStore, LoggedEvent

PAGE = 500


async def events_after(
    store: CallStore, since: int, call_id: str | None = None
) -> AsyncIterator[LoggedEvent]:
    """Every entry with seq > since, page by page, so a long backlog is never one big list."""
    while True:
        page = await store.events(since_seq=since, call_id=call_id, limit=PAGE)
        for event in page:
            yield event
        if len(page) < PAGE:
            return
        since = page[-1].seq


async def last_events(
    store: CallStore, count: int, call_id: str | None = None
) -> list[LoggedEvent]:
    if call_id is None:
        # seqs are assigned in order and never reused, so the tail starts near last_seq - count
        since = max(0, await store.last_seq() - count)
        return [e async for e in events_after(store, since)][-count:]
    tail: deque[LoggedEvent] = deque(maxlen=count)
    async for event in events_after(store, 0, call_id):
        tail.append(event)
    return list(tail)
