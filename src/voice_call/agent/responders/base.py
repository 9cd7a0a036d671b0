"""Responders turn the conversation so far into the next thing to say (auto-response).

A responder streams its reply as sentence chunks (`stream`), so speech can start on the first
sentence while the rest is still being generated. Three ship with the service:

- `echo` repeats the caller's last line: no keys, for the demo, offline work and tests;
- `openai` asks any OpenAI-compatible chat model (`agent.openai_responder`);
- `hook` POSTs the turn to a URL of yours and speaks what it answers (`agent.hook_responder`).

The manager runs the responder, enforces `responseTimeoutMs`, drops a reply the caller talked
over, and says an apology when a responder fails (raises) or runs out of time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voice_call.models import CallRecord, Speaker, TranscriptEntry

if TYPE_CHECKING:
    from voice_call.config import Config

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
    return next((e.text for e in reversed(call.transcript) if e.speaker == Speaker.USER), None)


class EchoResponder:
    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        reply = await self.respond(call)
        if reply:
            context.first_token()
            yield reply

    async def respond(self, call: CallRecord) -> str | None:
        last = last_user_line(call)
        return f"You said: {last}" if last else None


def build_responder(spec: str | Config) -> Responder | None:
    """The responder a config asks for (`responder.provider`); a bare name builds `echo`/`none`.

    Raises ConfigError when the chosen responder cannot work with the config (no API key).
    """
    name = spec if isinstance(spec, str) else spec.responder.provider
    if name == "echo":
        return EchoResponder()
    if isinstance(spec, str) or name == "none":
        return None
    if name == "openai":
        from voice_call.agent.responders.openai import OpenAIResponder

        return OpenAIResponder.from_config(spec)
    if name == "hook":
        from voice_call.agent.responders.hook import HookResponder

        return HookResponder.from_config(spec)
    return None
