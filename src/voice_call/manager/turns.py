"""A `continue` turn: the one caller transcript a call is waiting for."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field


@dataclass
class Turn:
    call_id: str
    started: float  # monotonic, when continue was called
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    future: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    listen_started: float | None = None

    def matches(self, token: str | None) -> bool:
        """A transcript without a token (mock, streams) answers the current turn.

        A token, when given, must be this turn's (stale Gather callbacks are ignored).
        """
        return token is None or token == self.token

    def resolve(self, transcript: str) -> None:
        if not self.future.done():
            self.future.set_result(transcript)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
