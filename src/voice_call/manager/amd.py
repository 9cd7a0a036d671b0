"""Answering-machine detection: what a call's `amd` plan is, and what the manager does with the
carrier's verdict (`call.amd`) and the end of a machine's greeting (`call.machine-greeting-ended`).

The record carries the plan and what came of it in `metadata["amd"]` (shown by `status`):
`{"mode": "detect" | "voicemail-drop", "answeredBy": …, "greetingEnded": true, "voicemail":
"leaving" | "left"}`. While a verdict is awaited the greeting waits too: nobody is greeted until
we know a person answered. A verdict that never comes (the carrier's `timeoutMs`, plus a grace)
counts as `unknown`, and `unknown` is treated as a person, since hanging up on one costs more
than talking to a machine. A machine in `detect` mode ends the call as `voicemail`, unsaid; a
fax ends it as `failed`; in `voicemail-drop` mode the message is left after the beep and the
call ends as `voicemail` once it was said.

The rules that change a record are pure functions called under the call's lock; `AmdFlow`
runs their side effects (greet, leave the message, hang up) through what the manager lends it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voice_call.config import Config
from voice_call.errors import InvalidInput
from voice_call.manager.timers import CallTimers
from voice_call.models import AnsweredBy, CallRecord, CallState, ManagerEntry
from voice_call.providers.base import Provider, ProviderError, Voicemails

AMD_MODES = ("detect", "voicemail-drop")
VERDICT_GRACE_S = 5.0  # after timeoutMs, how long we wait for a verdict the carrier owes us
AmdChoice = str | bool | None
Change = Callable[[CallRecord], dict[str, Any] | None]  # None: nothing to change or log


class Step(StrEnum):
    """What a verdict or a beep asks of the manager, once the change is saved."""

    NOTHING = "nothing"
    GREET = "greet"  # a person (or nobody knows): the call goes on as it would have
    WAIT_BEEP = "wait-beep"  # a machine, voicemail-drop: the message waits for the beep
    LEAVE = "leave"  # a machine finished its greeting: leave the message now
    END_VOICEMAIL = "end-voicemail"  # a machine, detect: hang up unsaid
    END_FAX = "end-fax"


def amd_problem(value: object) -> str | None:
    """What is wrong with a per-call `amd` value, or None."""
    if value is None or value is False or value in AMD_MODES:
        return None
    return (
        'amd must be "detect", "voicemail-drop" or false (no detection for this call), '
        f"got {str(value)[:80]!r}"
    )


def plan_for(config: Config, choice: AmdChoice, provider: Provider) -> str | None:
    """The call's detection mode: its own `amd`, else `outbound.amd` when enabled."""
    problem = amd_problem(choice)
    if problem:
        raise InvalidInput(problem)
    settings = config.outbound.amd
    mode = choice if isinstance(choice, str) else None
    if choice is None and settings.enabled:
        mode = settings.mode
    if mode is not None and not isinstance(provider, Voicemails):
        raise InvalidInput(
            f"the {provider.name} provider has no answering-machine detection: leave amd out"
        )
    return mode


def start(record: CallRecord, mode: str, config: Config) -> None:
    """Put the plan on a new record: the voicemail's words are fixed when the call is placed."""
    message = config.outbound.amd.message or record.metadata.get("initialMessage")
    record.metadata["amd"] = {"mode": mode}
    if mode == "voicemail-drop" and message:
        record.metadata["amd"]["message"] = str(message)


def _state(rec: CallRecord) -> dict[str, Any] | None:
    amd = rec.metadata.get("amd")
    return amd if isinstance(amd, dict) else None


def awaits_verdict(rec: CallRecord) -> bool:
    """Answered with detection running: the greeting waits for the verdict."""
    amd = _state(rec)
    return amd is not None and "answeredBy" not in amd


def leaving(rec: CallRecord) -> bool:
    """The message is being said (or was): the call's end is the voicemail's."""
    amd = _state(rec)
    return amd is not None and amd.get("voicemail") in ("leaving", "left")


def note_verdict(rec: CallRecord, answered_by: AnsweredBy, beep_reported: bool) -> Step:
    """Record who answered (the first verdict counts); what follows from it."""
    amd = _state(rec)
    if amd is None:  # detection we did not ask for: keep what it said, change nothing
        rec.metadata["amd"] = {"answeredBy": answered_by.value}
        return Step.NOTHING
    if "answeredBy" in amd:
        return Step.NOTHING
    amd["answeredBy"] = answered_by.value
    if answered_by in (AnsweredBy.HUMAN, AnsweredBy.UNKNOWN):
        return Step.GREET if rec.answered_at is not None else Step.NOTHING
    if answered_by == AnsweredBy.FAX:
        return Step.END_FAX
    if amd.get("mode") != "voicemail-drop" or not amd.get("message"):
        return Step.END_VOICEMAIL
    if amd.get("greetingEnded") or not beep_reported:
        return Step.LEAVE  # the beep came first, or the carrier waits for it itself
    return Step.WAIT_BEEP


def note_greeting_end(rec: CallRecord) -> Step:
    amd = _state(rec)
    if amd is None or amd.get("greetingEnded"):
        return Step.NOTHING
    amd["greetingEnded"] = True
    if amd.get("answeredBy") == AnsweredBy.MACHINE.value and amd.get("mode") == "voicemail-drop":
        return Step.LEAVE if amd.get("message") and "voicemail" not in amd else Step.NOTHING
    return Step.NOTHING


def ended_reason(rec: CallRecord, reason: CallState) -> CallState:
    """A call the machine (or the carrier after our message) hung up ends as `voicemail`."""
    if leaving(rec) and reason in (CallState.COMPLETED, CallState.HANGUP_USER):
        return CallState.VOICEMAIL
    return reason


@dataclass
class AmdActions:
    """What the manager lends the flow: each takes a call id."""

    greet: Callable[[str], Awaitable[None]]  # the after-answer flow, as without detection
    end: Callable[[str, CallState, str | None], Awaitable[None]]
    # apply a change to the live record and log `kind` with the data it returns (None: skip)
    change: Callable[[str, ManagerEntry, Change], Awaitable[CallRecord | None]]
    spawn: Callable[[Awaitable[Any]], None]


class AmdFlow:
    def __init__(
        self, config: Config, provider: Provider, timers: CallTimers, actions: AmdActions
    ) -> None:
        self.config = config
        self.provider = provider
        self.timers = timers
        self.actions = actions

    @property
    def beep_reported(self) -> bool:
        return isinstance(self.provider, Voicemails) and self.provider.detects_greeting_end

    def _timeout_s(self) -> float:
        return self.config.outbound.amd.timeout_ms / 1000

    def arm_verdict_wait(self, call_id: str) -> None:
        """Answered, no verdict yet: one is owed once the carrier stopped listening (timeoutMs,
        or less where its range ends sooner: Plivo's 10 s); after that, `unknown`."""
        listens_s = self._timeout_s()
        if isinstance(self.provider, Voicemails):
            listens_s = self.provider.detection_ms(self.config.outbound.amd.timeout_ms) / 1000
        delay = listens_s + VERDICT_GRACE_S
        self.timers.set(
            call_id, "amd-verdict", delay, lambda: self.actions.spawn(self._no_verdict(call_id))
        )

    async def _no_verdict(self, call_id: str) -> None:
        step: list[Step] = []

        def unknown(rec: CallRecord) -> dict[str, Any] | None:
            if not awaits_verdict(rec):
                return None
            step.append(note_verdict(rec, AnsweredBy.UNKNOWN, self.beep_reported))
            rec.metadata["amd"]["timedOut"] = True
            return {"answeredBy": AnsweredBy.UNKNOWN.value, "timedOut": True}

        await self.actions.change(call_id, ManagerEntry.AMD_TIMEOUT, unknown)
        if step:
            self.run(call_id, step[0])

    def run(self, call_id: str, step: Step) -> None:
        """Act on a step, after the change that decided it was saved."""
        self.timers.cancel(call_id, "amd-verdict")
        if step == Step.GREET:
            self.actions.spawn(self.actions.greet(call_id))
        elif step == Step.END_VOICEMAIL:
            self.actions.spawn(self.actions.end(call_id, CallState.VOICEMAIL, None))
        elif step == Step.END_FAX:
            error = "a fax machine answered"
            self.actions.spawn(self.actions.end(call_id, CallState.FAILED, error))
        elif step == Step.WAIT_BEEP:
            # A machine whose beep never comes: leave the message anyway after timeoutMs.
            delay = self._timeout_s()
            self.timers.set(call_id, "amd-beep", delay, lambda: self.run(call_id, Step.LEAVE))
        elif step == Step.LEAVE:
            self.timers.cancel(call_id, "amd-beep")
            self.actions.spawn(self.leave(call_id))

    async def leave(self, call_id: str) -> None:
        """Say the voicemail, then hang up as `voicemail` once it was said."""

        def begin(rec: CallRecord) -> dict[str, Any] | None:
            amd = _state(rec)
            if amd is None or "voicemail" in amd or not amd.get("message"):
                return None
            amd["voicemail"] = "leaving"
            return {"text": amd["message"]}

        record = await self.actions.change(call_id, ManagerEntry.VOICEMAIL, begin)
        if record is None or not isinstance(self.provider, Voicemails):
            return
        text = str(record.metadata["amd"]["message"])
        try:
            said = await self.provider.leave_voicemail(record, text)
        except ProviderError as exc:
            await self.actions.end(call_id, CallState.VOICEMAIL, f"voicemail not left: {exc}")
            return
        if said:
            await self.said(call_id)
            return
        # the carrier reports the end (or hangs up); this covers a report that never comes
        delay = 10.0 + len(text) / 10
        self.timers.set(call_id, "amd-said", delay, lambda: self.actions.spawn(self.said(call_id)))

    async def said(self, call_id: str) -> None:
        def done(rec: CallRecord) -> dict[str, Any] | None:
            if _state(rec) is None or rec.metadata["amd"].get("voicemail") != "leaving":
                return None
            rec.metadata["amd"]["voicemail"] = "left"
            return {"left": True}

        self.timers.cancel(call_id, "amd-said")
        if await self.actions.change(call_id, ManagerEntry.VOICEMAIL, done) is not None:
            await self.actions.end(call_id, CallState.VOICEMAIL, None)
