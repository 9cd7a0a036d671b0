"""What every CallStore must do, whatever holds the data: builders shared by the contract
suite (test_contract.py, run against SQLite and a real Redis) and the backend-specific tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.store.redis_server import RedisServer
from voice_call.models import CallRecord, CallState, Direction, Mode, Speaker, TranscriptEntry
from voice_call.store.base import CallStore, LoggedEvent
from voice_call.store.redis import RedisStore
from voice_call.store.sqlite import SqliteStore

BACKENDS = ("sqlite", "redis")


def make_record(
    call_id: str,
    *,
    state: CallState = CallState.ACTIVE,
    started_at: float = 1000.0,
    ended_at: float | None = None,
    provider: str = "twilio",
    provider_call_id: str | None = None,
    transcript: list[TranscriptEntry] | None = None,
    **extra: Any,
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider=provider,
        provider_call_id=provider_call_id,
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550001111",
        to_number="+15550002222",
        state=state,
        started_at=started_at,
        ended_at=ended_at,
        end_reason=state if state.terminal else None,
        transcript=transcript or [],
        **extra,
    )


def entry(i: int, text: str | None = None, speaker: Speaker = Speaker.USER) -> TranscriptEntry:
    return TranscriptEntry(at=2000.0 + i, speaker=speaker, text=text or f"line {i}", final=True)


def event(
    call_id: str, type_: str = "call.answered", key: str | None = None, **kw: Any
) -> LoggedEvent:
    return LoggedEvent(call_id=call_id, type=type_, at=kw.pop("at", 1500.0), dedupe_key=key, **kw)


class Backend:
    """Makes store objects of one kind on one place (a file, a Redis key prefix): a second
    object on the same place is what another instance, or a restart, sees."""

    def __init__(self, kind: str, tmp_path: Path, redis_server: RedisServer | None) -> None:
        self.kind = kind
        self.path = tmp_path / "state" / "calls.sqlite"
        self.redis_server = redis_server
        self.prefix = RedisServer.prefix()

    def new(self) -> SqliteStore | RedisStore:
        if self.kind == "sqlite":
            return SqliteStore(self.path)
        assert self.redis_server is not None
        return RedisStore(self.redis_server.url, prefix=self.prefix)

    async def opened(self) -> CallStore:
        store = self.new()
        await store.open()
        return store
