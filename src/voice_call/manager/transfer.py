"""Transfer to a person: the rules the manager applies, with no I/O of their own.

A transfer target is an E.164 number or a SIP URI and obeys the outbound deny-list. The record
keeps `metadata["transfer"]` (`to`, `mode`, `status`, `at`, one `<status>At` per step); the
carrier's `call.transfer` events move it on. Bridged (or completed) means the caller is with the
target: the bot's part is over and the call ends `completed` with `metadata["transferred"]`.
Busy, no-answer and failed hand the caller back to the bot, and the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from enum import StrEnum
from typing import Any

from voice_call.agent.responders.base import ReplyContext, Responder
from voice_call.models import E164, CallRecord, Speaker, TranscriptEntry, TransferStatus
from voice_call.numbers import denied_prefix
from voice_call.providers.base import TransferRequest

# sip:user@host[:port][;params] (or sips:) — no spaces, quotes or angle brackets, which would
# break out of the carrier's markup or API field.
SIP_URI = re.compile(
    r"\Asips?:(?P<user>[A-Za-z0-9+._~%!$&'()*,;=:-]{1,64})@[A-Za-z0-9.-]{1,190}"
    r"(?::[0-9]{1,5})?(?:;[A-Za-z0-9=._~%-]{1,100}){0,5}\Z"
)
MAX_TARGET = 256
SUMMARY_LINES = 4  # the transcript lines a warm summary keeps without a responder
MAX_SUMMARY = 500  # characters said to the target before the bridge
HANDOVER_TIMEOUT_S = 5.0  # the responder's handover line, else the transcript's last lines
HANDOVER_ASK = (
    "(A colleague is taking over this call. In one or two short sentences, tell them who the "
    "caller is and what they need.)"
)
COULD_NOT_REACH = "Sorry, I couldn't reach them. I'm still here with you."


class TransferMode(StrEnum):
    COLD = "cold"  # connect the caller straight to the target
    WARM = "warm"  # the target hears a summary of the call first


def target_problem(to: str, deny_prefixes: list[str]) -> str | None:
    """What is wrong with a transfer target, or None: E.164 or a SIP URI, not denied."""
    if len(to) > MAX_TARGET:
        return f"to is too long: at most {MAX_TARGET} characters"
    sip = SIP_URI.fullmatch(to)
    number = sip.group("user") if sip else to
    denied = denied_prefix(number, deny_prefixes)
    if denied is not None:
        return (
            f"transfers to {denied}… numbers are refused (outbound.denyPrefixes, premium rate "
            f"by default), got {to!r}"
        )
    if sip is None and not E164.fullmatch(to):
        return (
            "to must be an E.164 number like +15555550123 or a SIP URI like "
            f"sip:agent@example.com, got {to[:80]!r}"
        )
    return None


def under_way(record: CallRecord) -> bool:
    info = record.metadata.get("transfer")
    return isinstance(info, dict) and info.get("status") in _UNDER_WAY


def begin(
    record: CallRecord,
    to: str,
    mode: TransferMode,
    say: str | None,
    summary: str | None,
    now: float,
) -> None:
    """Note a transfer starting (`dialing`) on the record; the announcement joins the
    transcript, since the caller hears it."""
    info: dict[str, Any] = {"to": to, "mode": mode.value, "status": "dialing", "at": now}
    if summary:
        info["summary"] = summary
    if say:
        info["say"] = say
        record.transcript.append(TranscriptEntry(at=now, speaker=Speaker.BOT, text=say))
    record.metadata["transfer"] = info


def advance(record: CallRecord, status: TransferStatus, now: float, error: str = "") -> bool:
    """Move the record's transfer to `status`; False when no transfer is under way."""
    info = record.metadata.get("transfer")
    if not isinstance(info, dict) or info.get("status") in _SETTLED:
        return False
    info["status"] = status.value
    info[f"{_camel(status.value)}At"] = now
    if error:
        info["error"] = error[:500]
    return True


def request_of(record: CallRecord) -> TransferRequest | None:
    """The transfer under way on `record`, as the provider was asked for it."""
    info = record.metadata.get("transfer")
    if not isinstance(info, dict):
        return None
    summary = info.get("summary")
    return TransferRequest(
        str(info.get("to", "")),
        str(info.get("mode", "cold")),
        None,
        summary if isinstance(summary, str) else None,
    )


def connected(status: TransferStatus) -> bool:
    """The caller is with the target: the bot's part of the call is over."""
    return status in (TransferStatus.BRIDGED, TransferStatus.COMPLETED)


def recent_lines(record: CallRecord) -> str:
    """The transcript's last lines, for a target without a responder to sum up the call."""
    lines = [e for e in record.transcript if e.final and e.text.strip()][-SUMMARY_LINES:]
    if not lines:
        return "Transferring a call to you."
    said = " ".join(
        f"{'Caller' if e.speaker == Speaker.USER else 'Assistant'}: {e.text.strip()}" for e in lines
    )
    return f"Transferring a call. Recently — {said}"[:MAX_SUMMARY]


async def handover_summary(responder: Responder | None, record: CallRecord) -> str:
    """What the target hears before a warm bridge: the responder's handover line, asked with
    the transcript; its last lines when there is no responder or it fails or is slow."""
    if responder is None:
        return recent_lines(record)
    asking = record.model_copy(deep=True)
    asking.transcript.append(TranscriptEntry(at=0.0, speaker=Speaker.USER, text=HANDOVER_ASK))
    parts: list[str] = []

    async def collect() -> None:
        async for chunk in responder.stream(asking, ReplyContext()):
            parts.append(chunk)

    with contextlib.suppress(Exception):
        await asyncio.wait_for(collect(), HANDOVER_TIMEOUT_S)
    line = " ".join(" ".join(parts).split())
    return line[:MAX_SUMMARY] if line else recent_lines(record)


_UNDER_WAY = frozenset({TransferStatus.DIALING.value, TransferStatus.ANSWERED.value})
_SETTLED = frozenset(
    s.value for s in TransferStatus if s.failed or connected(s)
)  # a late event after these changes nothing


def _camel(word: str) -> str:
    head, *rest = word.split("-")
    return head + "".join(part.title() for part in rest)
