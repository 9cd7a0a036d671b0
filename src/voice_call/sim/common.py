"""Shapes every carrier emulator shares, so tests read the same way for Twilio, Telnyx and Plivo."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from voice_call.sim.callee import CalleeScript, SimulatedCallee


class AppFrame(NamedTuple):
    """A stream message from the app, as it arrived: loop time, event, payload bytes (media)."""

    at: float
    event: str
    size: int = 0


# Which script a dialled number gets: one script for all, or a function of the `To` number.
ScriptChooser = CalleeScript | Callable[[str], CalleeScript]


def choose_script(chooser: ScriptChooser, to_number: str) -> CalleeScript:
    return chooser if isinstance(chooser, CalleeScript) else chooser(to_number)


@dataclass
class SentWebhook:
    """One request the emulator made to the application, and how the application answered."""

    url: str
    params: dict[str, Any]  # form fields (Twilio, Plivo) or the JSON body (Telnyx)
    headers: dict[str, str]
    status_code: int | None = None  # None: the request failed (connection refused, timeout)
    response_body: str = ""
    at: float = field(default_factory=time.time)
    kind: str = ""  # e.g. "status", "voice", "action", "hangup", or the Telnyx event_type


@dataclass
class EmulatedCall:
    """The carrier's view of one call."""

    id: str  # CallSid / call_control_id / CallUUID
    direction: str  # "outbound" | "inbound"
    from_number: str
    to_number: str
    callee: SimulatedCallee
    status: str = "queued"
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_cause: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class WebhookLog(list[SentWebhook]):
    """Every webhook sent, in order; `wait_for` lets a test await one without sleeping blindly."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Condition()

    async def add(self, hook: SentWebhook) -> None:
        self.append(hook)
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[SentWebhook], bool], timeout: float = 5.0
    ) -> SentWebhook:
        async def find() -> SentWebhook:
            async with self._changed:
                while True:
                    hit = next((h for h in self if predicate(h)), None)
                    if hit is not None:
                        return hit
                    await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)
