"""The CallStore protocol: what the manager needs from durable state.

SQLite (`sqlite.py`) is the embedded default; Redis (`redis.py`) serves several instances behind
the same protocol, without touching the manager. Every write is durable when the awaited call
returns: the manager persists *before* it causes side effects.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import Field

from voice_call.models import CallRecord, WireModel


class LoggedEvent(WireModel):
    """One row of a call's append-only event log (carrier events and manager actions)."""

    seq: int = 0  # assigned by the store, increasing across all calls
    call_id: str
    type: str  # "call.answered", "call.speech", ..., or a manager action such as "bot.spoke"
    at: float
    dedupe_key: str | None = None
    state: str | None = None  # the call's state after this entry was applied
    data: dict[str, Any] = Field(default_factory=dict)


class DuplicateEvent(Exception):
    """The event's dedupe key was applied before; nothing was written."""


class StoreClosed(RuntimeError):
    """The store was used before `open()` or after `close()`."""


class CallStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def save(
        self, record: CallRecord, event: LoggedEvent | None = None
    ) -> LoggedEvent | None:
        """Atomically upsert the snapshot, append new transcript entries and the event.

        Raises DuplicateEvent (writing nothing) when `event.dedupe_key` was stored before.
        Returns the event with its `seq` filled in.
        """
        ...

    async def get(self, call_id: str) -> CallRecord | None: ...

    async def find_by_provider_call_id(
        self, provider: str, provider_call_id: str
    ) -> CallRecord | None: ...

    async def list_active(self) -> list[CallRecord]:
        """Every non-terminal call, oldest first."""
        ...

    async def list_recent(self, limit: int = 50) -> list[CallRecord]:
        """Most recently started calls first, any state."""
        ...

    async def seen(self, dedupe_key: str) -> bool:
        """True when an event with this dedupe key was applied."""
        ...

    async def events(
        self, *, since_seq: int = 0, call_id: str | None = None, limit: int = 1000
    ) -> list[LoggedEvent]:
        """Event-log rows with seq > since_seq, in order."""
        ...

    async def last_seq(self) -> int: ...

    async def prune(self, ended_before: float) -> int:
        """Delete calls that ended before this time (with their events); return how many."""
        ...
