"""One Twilio call as the emulator runs it: its bookkeeping (`TwilioLeg`) and its side of TwiML.

`TwilioLeg` is Twilio's view beside the shared `EmulatedCall` (where its TwiML comes from, its
callbacks, timers and a stop requested from outside); `LegHost` is what running a TwiML
document needs from the call (markup.py's `CallHost`): time, the callee, and Media Streams.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from voice_call.sim.common import EmulatedCall
from voice_call.sim.machine import note_start
from voice_call.sim.twilio.markup import (
    Dial,
    DialOutcome,
    Ended,
    Fetch,
    Stream,
    speaking_seconds,
)
from voice_call.sim.twilio.rest import DEFAULT_TIME_LIMIT_S
from voice_call.sim.twilio.stream import MediaStreamSession, StreamPeer

DTMF_SECONDS_PER_DIGIT = 0.1


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Inline:
    """TwiML given in the request itself (`Twiml=`) rather than at a URL."""

    twiml: str


Source = Fetch | Inline


@dataclass
class TwilioLeg:
    """Twilio's bookkeeping for one call, beside the shared EmulatedCall."""

    call: EmulatedCall
    source: Source  # the TwiML to run once answered
    fallback: Fetch | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    events: frozenset[str] = frozenset({"completed"})
    timeout_s: float = 60.0
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    machine_detection: str | None = None
    async_amd: bool = False  # AsyncAmd=true: the verdict goes to amd_callback, not the Url
    amd_callback: str | None = None
    amd_callback_method: str = "POST"
    amd_timeout_s: float = 30.0
    send_digits: str | None = None  # SendDigits: pressed once answered (callee.digits)
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    sequence: int = 0
    dtmf_used: int = 0
    stop: tuple[str, str] | None = None  # (final status, reason) requested from outside
    pending: Source | None = None  # a REST redirect waiting to replace the running TwiML
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    doc_task: asyncio.Task[Fetch | Ended] | None = None
    time_limit: asyncio.TimerHandle | None = None
    # recording sid → (RecordingStatusCallback, its events), from the Recordings API
    recording_callbacks: dict[str, tuple[str | None, set[str]]] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.call.answered_at is not None

    @property
    def finished(self) -> bool:
        return self.call.ended.is_set() or self.stop is not None

    def touch(self, status: str | None = None) -> None:
        if status is not None:
            self.call.status = status
        self.updated = now()

    def request_stop(self, status: str, reason: str) -> None:
        """End the call from outside (REST, the callee, TimeLimit); the first request wins."""
        if self.stop is not None or self.call.ended.is_set():
            return
        self.stop = (status, reason)
        self.touch(status)
        self.wake.set()
        if self.doc_task is not None:
            self.doc_task.cancel()

    def answer(self, time_scale: float) -> None:
        """Mark the call answered (once) and start its TimeLimit clock."""
        if self.call.answered_at is None:
            self.call.answered_at = time.time()
            self.touch("in-progress")
            self.time_limit = asyncio.get_running_loop().call_later(
                self.time_limit_s * time_scale,
                lambda: self.request_stop("completed", "time-limit"),
            )

    def note(self, code: int, message: str) -> None:
        """One of Twilio's debugger alerts, kept in `call.extra["errors"]`."""
        self.call.extra.setdefault("errors", []).append({"code": code, "message": message})

    def duration(self, time_scale: float) -> int:
        """Emulated seconds from answer to end, as Twilio's CallDuration (rounded up [M])."""
        call = self.call
        if call.answered_at is None or call.ended_at is None:
            return 0
        return math.ceil((call.ended_at - call.answered_at) / time_scale - 1e-6)


class HostSettings(Protocol):
    """What a call's TwiML host reads from the emulator that runs it."""

    account_sid: str
    auth_token: str
    time_scale: float
    dtmf_replies: tuple[str, ...]
    speech: Callable[[str], bytes]

    def stream_status(
        self, leg: TwilioLeg, stream: Stream, sid: str, event: str, err: str | None
    ) -> None: ...

    async def dial(self, leg: TwilioLeg, dial: Dial) -> DialOutcome: ...


class LegHost:
    """One call's side of running TwiML: time, the callee, and Media Streams."""

    def __init__(self, emu: HostSettings, leg: TwilioLeg) -> None:
        self.emu = emu
        self.leg = leg
        self.callee = leg.call.callee

    @property
    def answered(self) -> bool:
        return self.leg.answered

    def answer(self) -> None:
        self.leg.answer(self.emu.time_scale)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.emu.time_scale)

    def hear(self, text: str) -> bool:
        return self.callee.hear(text)

    def begin(self, text: str) -> None:
        note_start(self.leg.call.extra, text)  # an answering machine logs when it began

    def note(self, code: int, message: str) -> None:
        self.leg.note(code, message)

    def _next_digits(self) -> str | None:
        replies = self.emu.dtmf_replies
        if self.leg.dtmf_used >= len(replies):
            return None
        digits = replies[self.leg.dtmf_used]
        self.leg.dtmf_used += 1
        self.callee.digits.append(digits)
        return digits

    def _speaks(self) -> bool:
        return self.callee.script.outcome != "voicemail" and not self.callee.hung_up

    def next_reply(self) -> tuple[str, str] | None:
        """The callee's turn on a stream: digits first while scripted, then its lines."""
        if not self._speaks():
            return None
        digits = self._next_digits()
        if digits:
            return ("dtmf", digits)
        line = self.callee.next_line()
        return ("speech", line) if line else None

    async def listen(self, dtmf: bool, speech: bool, timeout: float) -> tuple[str, str] | None:
        """A Gather: the callee answers after its reply delay, or stays silent until timeout."""
        delay = self.callee.script.reply_delay_ms / 1000
        if not self._speaks() or delay > timeout:
            await self.sleep(timeout)
            return None
        await self.sleep(delay)
        digits = self._next_digits() if dtmf else None
        if digits:
            await self.sleep(DTMF_SECONDS_PER_DIGIT * len(digits))
            return ("dtmf", digits)
        line = self.callee.next_line() if speech else None
        if line:
            await self.sleep(speaking_seconds(line))
            return ("speech", line)
        await self.sleep(timeout - delay)
        return None

    async def dial(self, dial: Dial) -> DialOutcome:
        return await self.emu.dial(self.leg, dial)

    async def stream(self, stream: Stream) -> bool:
        emu, leg = self.emu, self.leg
        peer = StreamPeer(
            account_sid=emu.account_sid,
            call_sid=leg.call.id,
            auth_token=emu.auth_token,
            callee=self.callee,
            extra=leg.call.extra,
            time_scale=emu.time_scale,
            reply_delay_s=self.callee.script.reply_delay_ms / 1000,
            next_reply=self.next_reply,
            on_status=lambda sid, event, err: emu.stream_status(leg, stream, sid, event, err),
            note=self.note,
            speech=emu.speech,
        )
        session = MediaStreamSession(stream, peer)
        leg.call.extra["stream"] = session  # the live stream, for tests (barge_in)
        return await session.run()
