"""In-process fan-out of logged events to live watchers (`voicecall tail`, the demo, SSE).

Alone, an instance publishes what it logs as it logs it. In a cluster the bus also `follow`s the
shared log (cluster/feed.py delivers what other instances logged), and then hands watchers every
seq once and in order: an event logged here may come back through the feed, or arrive before an
earlier one another instance logged; it is held until the feed has caught up to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from voice_call.store.base import LoggedEvent

log = logging.getLogger("voice_call.manager.bus")
MAX_HELD = 10_000  # events logged here waiting for the feed; more means the feed is stuck


class EventBus:
    """Each subscriber has a bounded queue; one that falls behind is dropped, not waited on."""

    def __init__(self, queue_size: int = 1000, max_held: int = MAX_HELD) -> None:
        self._queue_size = queue_size
        self._max_held = max_held
        self._subscribers: set[asyncio.Queue[LoggedEvent | None]] = set()
        self._next: int | None = None  # following the shared log: the next seq to hand out
        self._held: dict[int, LoggedEvent] = {}

    def follow(self, last_seq: int) -> None:
        """From now on hand out seqs after `last_seq` in order, each once (see the module)."""
        self._next = last_seq + 1
        self._held.clear()

    def unfollow(self) -> None:
        """Back to publishing as logged (the feed stopped): what was held goes out now."""
        self._next = None
        self._flush()

    def publish(self, event: LoggedEvent) -> None:
        """An event this process logged."""
        if self._next is None:
            self._fan_out(event)
        elif event.seq == self._next:
            self._advance(event)
        elif event.seq > self._next:
            self._held[event.seq] = event  # an earlier seq, logged elsewhere, is still coming
            if len(self._held) > self._max_held:
                log.warning(
                    "the shared event feed is behind: %d events sent ahead of it", self._max_held
                )
                self._next = max(self._held) + 1
                self._flush()
        # else: the feed handed it out already

    def deliver(self, event: LoggedEvent) -> None:
        """The next entry of the shared log (cluster/feed.py), in seq order."""
        if self._next is None:
            self._fan_out(event)
            return
        if event.seq < self._next:
            return  # published here already
        for seq in sorted(seq for seq in self._held if seq < event.seq):
            self._fan_out(self._held.pop(seq))  # an entry between them is gone from the log
        self._held.pop(event.seq, None)
        self._advance(event)

    def _advance(self, event: LoggedEvent) -> None:
        self._fan_out(event)
        self._next = event.seq + 1
        while (held := self._held.pop(self._next, None)) is not None:
            self._fan_out(held)
            self._next += 1

    def _flush(self) -> None:
        held, self._held = self._held, {}
        for seq in sorted(held):
            self._fan_out(held[seq])

    def _fan_out(self, event: LoggedEvent) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)  # tells the reader it was cut off

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[LoggedEvent | None]]:
        queue: asyncio.Queue[LoggedEvent | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
