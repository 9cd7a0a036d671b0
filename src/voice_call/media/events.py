"""A live stream's events to the manager: queued, delivered one at a time and in order.

Shared by MediaSession and the realtime bridge: a final transcript must never overtake its
partials, and a slow manager must never hold up the 20 ms audio path, so events are queued
where they happen and a task hands them on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voice_call.models import CallEvent

log = logging.getLogger("voice_call.media")

EventSink = Callable[[CallEvent], Awaitable[object]]
DRAIN_S = 2.0  # how long a closing stream waits for its last events to be taken


class EventDelivery:
    def __init__(self, call_id: str, sink: EventSink) -> None:
        self.call_id = call_id
        self._sink = sink
        self._queue: asyncio.Queue[CallEvent | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._deliver(), name=f"events {call_id}")

    def emit(self, **fields: Any) -> None:
        self._queue.put_nowait(CallEvent(call_id=self.call_id, **fields))

    async def close(self) -> None:
        """Deliver what is queued (for at most DRAIN_S), then stop."""
        self._queue.put_nowait(None)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), DRAIN_S)
        self._task.cancel()

    async def _deliver(self) -> None:
        while (event := await self._queue.get()) is not None:
            try:
                await self._sink(event)
            except Exception:
                log.exception("call %s: the manager failed on %s", self.call_id, event.type)
