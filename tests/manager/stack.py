"""A CallManager on a fake clock, a real SQLite file and the mock provider (no sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.support import merge
from voice_call.agent.responders.base import Responder
from voice_call.clock import FakeClock
from voice_call.config import parse_config
from voice_call.manager.manager import CallManager
from voice_call.providers.registry import build_provider
from voice_call.store.sqlite import SqliteStore

BASE: dict[str, Any] = {
    "provider": "mock",
    "toNumber": "+15555550123",
    "maxConcurrentCalls": 5,
    "mock": {
        "answerDelayMs": 1000,
        "replyDelayMs": 500,
        "replies": ["first reply", "second reply", "third reply"],
    },
}


class Harness:
    def __init__(
        self, home: Path, overrides: dict[str, Any], responder: Responder | None, start: float
    ) -> None:
        self.home = home
        self.clock = FakeClock(start)
        self.config = parse_config(merge(BASE, overrides), env={})
        self.store = SqliteStore(home / "calls.db")
        self.provider: Any = build_provider(self.config, self.clock, home)
        self.manager = CallManager(
            self.config, self.store, self.provider, clock=self.clock, responder=responder
        )
        self.provider.attach(self.manager.handle_event)

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await self.manager.settle()
        await self.clock.advance(0)

    def ledger(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.provider.ledger.entries()
        return entries


@asynccontextmanager
async def harness(
    home: Path,
    overrides: dict[str, Any] | None = None,
    responder: Responder | None = None,
    start: float = 1_700_000_000.0,
) -> AsyncIterator[Harness]:
    h = Harness(home, overrides or {}, responder, start)
    await h.store.open()
    await h.manager.start()
    try:
        yield h
    finally:
        await h.manager.stop()
        await h.store.close()
