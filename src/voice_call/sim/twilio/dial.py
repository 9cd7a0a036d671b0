"""`<Dial>` in the Twilio emulator: ring a transfer target, whisper to it, bridge, report.

The target behaves as the emulator's `TransferTargets` script says (answers, busy, no answer,
fails). When it answers, a `<Number url>` whisper is fetched and said to the target before the
bridge (what it heard goes in the transfer log), `<Number statusCallback>` hears of the called
party's `answered` / `completed` (with `ParentCallSid`, as Twilio sends them), and the parties
talk for the script's `talk_ms` before the target hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from email.utils import format_datetime
from typing import Protocol

from voice_call.sim.transfer_target import TransferTargets
from voice_call.sim.twilio.call import TwilioLeg, now
from voice_call.sim.twilio.markup import (
    Dial,
    DialOutcome,
    DialTarget,
    Say,
    TwimlError,
    parse_twiml,
    speaking_seconds,
)
from voice_call.sim.twilio.webhooks import TwilioWebhooks

_CALLBACK_STATUS = {"answered": "in-progress", "completed": "completed"}


class DialHost(Protocol):
    account_sid: str
    time_scale: float
    targets: TransferTargets

    @property
    def hooks(self) -> TwilioWebhooks: ...


async def run_dial(emu: DialHost, leg: TwilioLeg, dial: Dial) -> DialOutcome:
    if len(dial.targets) > 1:
        leg.note(13201, "Dial: only the first number is emulated (no simultaneous ringing)")
    target = dial.targets[0]
    script = emu.targets.script(target.address)
    link = emu.targets.open(leg.call.id, target.address, "warm" if target.url else "cold")
    sid = "CA" + uuid.uuid4().hex
    ring_s, status = script.answer_delay_ms / 1000, script.outcome
    if status == "failed":
        ring_s = 0.05
    elif status == "no-answer" or (status == "answer" and ring_s > dial.timeout):
        ring_s, status = dial.timeout, "no-answer"
    if await _wait(emu, leg, ring_s):
        link.status = "canceled"
        return DialOutcome("canceled", sid)
    if status != "answer":
        link.status = status
        return DialOutcome(status, sid)
    answered = time.time()
    party = _Party(emu, leg, dial, target, sid)
    await party.status_callback("answered", 0)
    if target.url:
        link.heard += await party.whisper()
    emu.targets.bridged(link)
    if await _wait(emu, leg, script.talk_ms / 1000):
        link.status = "canceled"  # the caller hung up on the target
        return DialOutcome("canceled", sid)
    link.status = "completed"
    duration = math.ceil((time.time() - answered) / emu.time_scale - 1e-6)
    await party.status_callback("completed", duration)
    return DialOutcome("completed", sid, duration)


async def _wait(emu: DialHost, leg: TwilioLeg, seconds: float) -> bool:
    """Sleep `seconds` (emulated); True when the caller's call was stopped meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(leg.wake.wait(), max(0.0, seconds) * emu.time_scale)
    return leg.stop is not None


class _Party:
    """The called party's child call: its requests to the app."""

    def __init__(
        self, emu: DialHost, leg: TwilioLeg, dial: Dial, target: DialTarget, sid: str
    ) -> None:
        self.emu, self.leg, self.target, self.sid = emu, leg, target, sid
        self.caller_id = dial.caller_id or leg.call.from_number

    def _params(self, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.emu.account_sid,
            "CallSid": self.sid,
            "ParentCallSid": self.leg.call.id,
            "CallStatus": status,
            "Direction": "outbound-dial",
            "From": self.caller_id,
            "To": self.target.address,
            "Called": self.target.address,
            "Caller": self.caller_id,
        }

    async def status_callback(self, event: str, duration: int) -> None:
        url = self.target.status_callback
        if url is None or event not in self.target.status_callback_events:
            return
        params = self._params(_CALLBACK_STATUS[event])
        params["CallbackSource"] = "call-progress-events"
        params["Timestamp"] = format_datetime(now())
        if event == "completed":
            params["CallDuration"] = str(duration)
        await self.emu.hooks.send("status", url, self.target.status_callback_method, params)

    async def whisper(self) -> list[str]:
        """Run the `<Number url>` TwiML for the called party; what it heard (its Says)."""
        url = self.target.url or ""
        hook, _ = await self.emu.hooks.send(
            "whisper", url, self.target.method, self._params("in-progress")
        )
        try:
            doc = parse_twiml(hook.response_body or "")
        except TwimlError as exc:
            self.leg.note(exc.code, f"whisper: {exc.message}")
            return []
        heard = []
        for verb in doc.verbs:
            if isinstance(verb, Say):
                heard.append(verb.text)
                await asyncio.sleep(speaking_seconds(verb.text) * self.emu.time_scale)
        return heard
