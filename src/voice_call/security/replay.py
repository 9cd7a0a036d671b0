"""Replay cache keyed by the verified request: a replayed webhook changes nothing.

A key is reserved when a request is first accepted; if processing fails before state is durable
the reservation is released, so the carrier's retry is processed rather than answered as a replay.
A replay gets the response the first delivery got.

The interface is async (`ReplayStore`): one instance keeps it in memory (`ReplayCache`), several
instances share one in Redis (`cluster/replay.py`), so a replay at any instance is recognised.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass
class CachedResponse:
    status_code: int
    body: str
    content_type: str


class ReplayStore(Protocol):
    # True: a replay of a request still being processed is asked to retry (503) rather than
    # acknowledged, because the instance processing it may die before it records anything.
    retry_while_pending: bool

    async def reserve(self, key: str) -> tuple[bool, CachedResponse | None]: ...

    async def complete(self, key: str, response: CachedResponse) -> None: ...

    async def release(self, key: str) -> None: ...


class ReplayCache:
    """In this process's memory: a reservation dies with the process that would process it."""

    retry_while_pending = False

    def __init__(
        self,
        ttl_s: float = 600.0,
        max_entries: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._now = now
        self._entries: OrderedDict[str, tuple[float, CachedResponse | None]] = OrderedDict()

    async def reserve(self, key: str) -> tuple[bool, CachedResponse | None]:
        """(True, cached-or-None) when `key` was seen within the TTL; else reserve it."""
        self._expire()
        hit = self._entries.get(key)
        if hit is not None:
            return True, hit[1]
        self._entries[key] = (self._now(), None)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return False, None

    async def complete(self, key: str, response: CachedResponse) -> None:
        if key in self._entries:
            self._entries[key] = (self._entries[key][0], response)

    async def release(self, key: str) -> None:
        self._entries.pop(key, None)

    def _expire(self) -> None:
        cutoff = self._now() - self.ttl_s
        while self._entries:
            first_key, (seen_at, _) = next(iter(self._entries.items()))
            if seen_at >= cutoff:
                break
            del self._entries[first_key]

    def __len__(self) -> int:
        return len(self._entries)
