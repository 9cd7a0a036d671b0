"""A conversation's turns as the manager times them: the `continue` turn waiting for the
caller's transcript, and when a line of ours was handed to the carrier."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field


@dataclass
class Turn:
    """An agent's `continue`: the caller's next final words resolve `future`."""

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


@dataclass(frozen=True)
class Spoken:
    """A line handed to the provider: a continue turn's speak time, a reply's first words."""

    sent_at: float  # monotonic: the moment the text was handed to the provider
    accepted_ms: float  # how long the provider took to accept it
