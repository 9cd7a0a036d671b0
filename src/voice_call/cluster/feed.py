"""Every instance's event bus also carries the events other instances logged, so SSE (`/events`),
`voicecall tail` and the console on any instance see every call.

The Redis store appends each event to the Stream `P:events` with the id `<seq>-0`
(store/redis.py). The feed reads it from where it stood at start (XREAD BLOCK, by id, so a
reconnect resumes exactly where it left off: no gap) and hands each entry to the bus, which
gives watchers each seq once and in order whether it was logged here or elsewhere
(manager/bus.py `follow`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from voice_call.manager.bus import EventBus
from voice_call.store.redis import logged_event

log = logging.getLogger("voice_call.cluster.feed")
BLOCK_MS = 1_000  # one XREAD waits this long for news (well under the client's socket timeout)
BATCH = 500
RETRY_S = 0.5  # after a Redis error, wait this long before reading again


class EventFeed:
    """`await start()` before the manager logs anything (so nothing logged after is missed),
    `await stop()` at shutdown."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        bus: EventBus,
        *,
        block_ms: int = BLOCK_MS,
        retry_s: float = RETRY_S,
    ) -> None:
        self._redis = redis
        self._stream = f"{prefix}:events"
        self._seq_key = f"{prefix}:seq"
        self._bus = bus
        self._block_ms = block_ms
        self._retry_s = retry_s
        self._last = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Follow the log from its current end (a Redis error here propagates). Idempotent."""
        if self._task is not None:
            return
        raw = await self._redis.get(self._seq_key)
        self._last = int(raw) if raw is not None else 0
        self._bus.follow(self._last)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Let the blocked XREAD return by itself (≤ block_ms): cancelling a read that redis-py
        # is in the middle of can leave `await task` hanging on the connection's cleanup.
        self._stopping = True
        done, _ = await asyncio.wait({task}, timeout=self._block_ms / 1000 + 1.0)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        self._bus.unfollow()

    async def _run(self) -> None:
        failing = False
        while not self._stopping:
            try:
                # [[stream, [(id, {field: value})]]], str throughout (decode_responses)
                reply: Any = await self._redis.xread(
                    {self._stream: f"{self._last}-0"}, count=BATCH, block=self._block_ms
                )
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("event feed: reading %s failed, retrying: %s", self._stream, exc)
                failing = True
                await asyncio.sleep(self._retry_s)
                continue
            if self._stopping:
                return
            if failing:
                log.info("event feed: reading %s again", self._stream)
                failing = False
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._last = int(entry_id.partition("-")[0])
                    try:
                        event = logged_event(entry_id, fields["e"])
                    except (KeyError, ValueError, TypeError) as exc:
                        log.warning("event feed: entry %s skipped, unreadable: %r", entry_id, exc)
                        continue
                    self._bus.deliver(event)
