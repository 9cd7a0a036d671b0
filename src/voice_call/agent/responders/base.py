"""What every responder shares: the `Responder` protocol, the `ReplyContext` it reads and
reports through, and `ResponderError`, the failure the manager answers with its apology."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from voice_call.models import CallRecord, Speaker, TranscriptEntry

HistoryLoader = Callable[[], Awaitable[list[TranscriptEntry]]]


async def _no_history() -> list[TranscriptEntry]:
    return []


@dataclass
class ReplyContext:
    """What a responder gets besides the call record, and what it reports back."""

    # Lines from earlier calls in the same session (sessionScope), oldest first; loaded on
    # demand so responders that do not use memory cost nothing.
    load_history: HistoryLoader = _no_history
    # Set by the responder: when the first token arrived (monotonic), and whether it wants the
    # call to end once the reply has been said (the model's `end_call` tool).
    first_token_at: float | None = None
    end_requested: bool = False
    end_reason: str | None = None

    async def history(self) -> list[TranscriptEntry]:
        return await self.load_history()

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def request_end(self, reason: str | None = None) -> None:
        self.end_requested = True
        self.end_reason = reason


class ResponderError(Exception):
    """The responder could not produce a reply (service error, bad answer). The manager says
    the apology; the message is logged and kept on the turn."""


class Responder(Protocol):
    def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        """The bot's reply as sentence chunks, each yielded once complete; none to stay quiet.

        Raise ResponderError (or any exception) on failure. Cancellation (a reply the caller
        talked over, a timeout) arrives as CancelledError at an `await`.
        """
        ...


def last_user_line(call: CallRecord) -> str | None:
    """What the caller said last (the echo reply, the hook's `text`)."""
    return next((e.text for e in reversed(call.transcript) if e.speaker == Speaker.USER), None)
