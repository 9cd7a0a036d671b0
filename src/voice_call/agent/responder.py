"""Responders turn the conversation so far into the next thing to say (auto-response).

The built-in `echo` responder needs no keys: it repeats the caller's last line, which is
enough for the demo and for tests. AI responders (OpenAI-compatible chat) plug in here.
"""

from __future__ import annotations

from typing import Protocol

from voice_call.models import CallRecord, Speaker


class Responder(Protocol):
    async def respond(self, call: CallRecord) -> str | None:
        """The bot's next line, or None to stay quiet."""
        ...


class EchoResponder:
    async def respond(self, call: CallRecord) -> str | None:
        last = next((e.text for e in reversed(call.transcript) if e.speaker == Speaker.USER), None)
        return f"You said: {last}" if last else None


def build_responder(name: str) -> Responder | None:
    if name == "echo":
        return EchoResponder()
    return None
