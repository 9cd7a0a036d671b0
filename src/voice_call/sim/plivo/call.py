"""One Plivo call as the emulator runs it: its settings, how it may end, and the params it sends.

Every wait inside a call goes through `PlivoLeg.pause`, which wakes early when the call is hung
up (by anyone) or transferred, so a DELETE or a callee hang-up interrupts whatever is running
without cancelling tasks in the middle of an HTTP request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from voice_call.sim.common import EmulatedCall

BILL_RATE = "0.00850"  # per minute; any plausible figure, apps only echo it


class CallOver(Exception):
    """The call has ended; whatever was running for it stops."""


class Transferred(Exception):
    """A REST transfer replaced the running XML; the new URL is in `PlivoLeg.transfer`."""


@dataclass(frozen=True)
class Ending:
    """How a call ended, as the hangup_url callback and the CDR report it.

    `cause` is the telephony cause (HangupCause); `code`/`name` are Plivo's hangup-cause table
    (HangupCauseCode/HangupCauseName); `source` is HangupSource; `status` the final CallStatus.
    """

    cause: str
    code: int
    name: str
    source: str
    status: str


# Codes and names from Plivo's "hangup causes" page where it was readable (1000, 2010, 4000,
# 4010). [M] 3000/3010/3020 and the 7xxx codes are the most likely values, not confirmed, and so
# are the statuses for cancel ("cancel", per Plivo's CallStatus list) and for a rejected call.
API_HANGUP = Ending("NORMAL_CLEARING", 4000, "Normal Hangup", "API Request", "completed")
XML_HANGUP = Ending("NORMAL_CLEARING", 4000, "Normal Hangup", "Answer XML", "completed")
END_OF_XML = Ending("NORMAL_CLEARING", 4010, "End Of XML Instructions", "Plivo", "completed")
TIME_LIMIT = Ending("NORMAL_CLEARING", 4000, "Normal Hangup", "Plivo", "completed")  # [M]
MACHINE_HANGUP = Ending("NORMAL_CLEARING", 4000, "Normal Hangup", "Plivo", "completed")  # [M]
CANCELED = Ending("ORIGINATOR_CANCEL", 1000, "Canceled", "API Request", "cancel")
RING_CANCEL = Ending("ORIGINATOR_CANCEL", 1000, "Canceled", "Plivo", "cancel")  # hangup_on_ring
BUSY = Ending("USER_BUSY", 3000, "Busy Line", "Callee", "busy")
NO_ANSWER = Ending("NO_ANSWER", 3020, "No Answer", "Plivo", "no-answer")
FAILED = Ending("DESTINATION_OUT_OF_ORDER", 2010, "Destination Out Of Service", "Carrier", "failed")
REJECTED = Ending("CALL_REJECTED", 3010, "Rejected", "Answer XML", "completed")
CALLEE_REJECTED = Ending("CALL_REJECTED", 3010, "Rejected", "Callee", "busy")  # declined ringing
REJECTED_BUSY = Ending("USER_BUSY", 3000, "Busy Line", "Answer XML", "busy")
XML_INVALID = Ending("NORMAL_CLEARING", 7011, "Invalid Answer XML", "Error", "completed")
XML_UNREACHABLE = Ending("NORMAL_CLEARING", 7010, "Answer URL Unreachable", "Error", "completed")


def party_hangup(direction: str) -> Ending:
    """The person on the line hung up: the callee of an outbound call, the caller of an inbound."""
    source = "Callee" if direction == "outbound" else "Caller"
    return Ending("NORMAL_CLEARING", 4000, "Normal Hangup", source, "completed")


def session_time(at: float) -> str:
    """`SessionStart` style: UTC with microseconds, e.g. `2020-04-08 11:34:33.238707`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def cdr_time(at: float | None) -> str | None:
    """CDR and hangup-callback style: `yyyy-MM-dd HH:mm:ss` (UTC here)."""
    return None if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Target:
    """A URL Plivo calls, with its HTTP method."""

    url: str
    method: str = "POST"


@dataclass(frozen=True)
class DialOptions:
    """What `POST Call/` may set beyond `from`, `to` and `answer_url` (defaults: Plivo's)."""

    hangup: Target | None = None
    ring: Target | None = None
    fallback: Target | None = None
    ring_timeout: float = 120.0
    time_limit: float = 14400.0
    hangup_on_ring: float | None = None
    machine_detection: str | None = None  # "true" | "hangup"
    machine_detection_time_ms: int = 5000
    machine_detection_target: Target | None = None
    send_digits: str | None = None  # pressed once answered (`callee.digits`)


@dataclass
class PlivoLeg:
    """The emulator's state for one call (one leg: this emulator never bridges)."""

    call: EmulatedCall
    request_uuid: str
    account_id: str
    time_scale: float
    answer: Target
    on_hangup: Target | None = None
    on_ring: Target | None = None
    fallback: Target | None = None
    machine_detection: str | None = None  # "true" | "hangup"
    machine_detection_time_ms: int = 5000
    on_machine: Target | None = None
    ring_timeout: float = 120.0
    time_limit: float = 14400.0
    hangup_on_ring: float | None = None
    send_digits: str | None = None  # the dial's send_digits, pressed once answered
    dtmf_replies: list[str] = field(default_factory=list)
    initiated_at: float = field(default_factory=time.time)
    ended: Ending | None = None
    transfer: Target | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    timers: list[asyncio.Task[None]] = field(default_factory=list)
    streams: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.call.id

    @property
    def live(self) -> bool:
        return self.ended is None

    def end(self, how: Ending) -> None:
        """Ask for the call to end; the first reason given wins."""
        if self.ended is None:
            self.ended = how
            self.stop.set()

    def request_transfer(self, target: Target) -> None:
        self.transfer = target
        self.interrupt.set()

    def take_transfer(self) -> Target:
        target, self.transfer = self.transfer, None
        self.interrupt.clear()
        assert target is not None
        return target

    def check(self) -> None:
        if self.stop.is_set():
            raise CallOver
        if self.interrupt.is_set():
            raise Transferred

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` of carrier time (times time_scale), unless the call ends or moves."""
        await self._wait_unless_moved(None, max(0.0, seconds) * self.time_scale)

    async def until(self, work: asyncio.Future[Any]) -> None:
        """Wait for `work` to finish, unless the call ends or moves first."""
        await self._wait_unless_moved(work, None)

    async def _wait_unless_moved(
        self, work: asyncio.Future[Any] | None, timeout: float | None
    ) -> None:
        self.check()
        waiters = [
            asyncio.ensure_future(self.stop.wait()),
            asyncio.ensure_future(self.interrupt.wait()),
        ]
        try:
            watched: list[asyncio.Future[Any]] = [*waiters, *([work] if work is not None else [])]
            await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.check()

    def mark_answered(self) -> None:
        if self.call.answered_at is None:
            self.call.answered_at = time.time()
            if self.send_digits:
                self.call.callee.digits.append(self.send_digits)  # pressed on answer
        self.call.status = "in-progress"

    def after(self, seconds: float, how: Ending) -> None:
        """End the call with `how` after `seconds` of carrier time, unless it ended before."""

        async def fire() -> None:
            await asyncio.sleep(seconds * self.time_scale)
            self.end(how)

        self.spawn(fire())

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.timers.append(asyncio.create_task(work))

    async def cancel_timers(self) -> None:
        for task in self.timers:
            task.cancel()
        for task in self.timers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.timers.clear()

    def carrier_time(self, at: float | None) -> float | None:
        """A wall-clock instant on the carrier's clock: time since dialling runs 1/time_scale
        faster, so the reported times agree with the reported durations."""
        return (
            None if at is None else self.initiated_at + (at - self.initiated_at) / self.time_scale
        )

    def duration_s(self) -> int:
        """Talk time in carrier seconds (wall time divided by time_scale)."""
        call = self.call
        if call.answered_at is None:
            return 0
        end = call.ended_at or time.time()
        return round((end - call.answered_at) / self.time_scale)

    def params(self, status: str, event: str | None = None) -> dict[str, str]:
        """The fields Plivo sends with every request for this call.

        docs/carriers.md §3.3, and the set the V3 test vector signs (§5.2).
        """
        call = self.call
        out = {
            "CallUUID": call.id,
            "From": call.from_number,
            "To": call.to_number,
            "CallStatus": status,
            "Direction": call.direction,
            "BillRate": BILL_RATE,
            "ParentAuthID": self.account_id,
            "SessionStart": session_time(self.initiated_at),
        }
        if call.direction == "outbound":  # [S] the A-leg ids are absent on inbound calls
            out |= {
                "ALegUUID": call.id,
                "ALegRequestUUID": self.request_uuid,
                "RequestUUID": self.request_uuid,
            }
        if event is not None:
            out["Event"] = event
        return out

    def hangup_params(self) -> dict[str, str]:
        how = self.ended or END_OF_XML
        duration = self.duration_s()
        minutes = -(-duration // 60)
        out = self.params(how.status, "Hangup") | {
            "HangupCause": how.cause,
            "HangupCauseCode": str(how.code),
            "HangupCauseName": how.name,
            "HangupSource": how.source,
            "Duration": str(duration),
            "BillDuration": str(duration),  # [M] per-second billing
            "StartTime": cdr_time(self.initiated_at) or "",
            "EndTime": cdr_time(self.carrier_time(self.call.ended_at or time.time())) or "",
            "TotalCost": f"{minutes * float(BILL_RATE):.5f}",
        }
        if self.call.answered_at is not None:
            out["AnswerTime"] = cdr_time(self.carrier_time(self.call.answered_at)) or ""
        return out
