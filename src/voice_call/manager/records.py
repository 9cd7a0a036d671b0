"""Pure changes to one call record: the rules every path of the manager shares.

No I/O and no clock: the CallManager reads a record under the call's lock, changes it with these
(events, commands, restore), and persists it with its log entry.
"""

from __future__ import annotations

import time
from typing import Any

from voice_call.errors import Conflict
from voice_call.manager.inbound import InboundDecision
from voice_call.models import (
    CallEvent,
    CallRecord,
    CallState,
    Direction,
    EventType,
    Mode,
    can_transition,
)


def move(rec: CallRecord, target: CallState) -> str:
    """Forward only (speaking ⇄ listening cycle); the outcome word for the log."""
    if rec.state == target:
        return "applied"
    if not can_transition(rec.state, target):
        return f"ignored: {rec.state.value} → {target.value} goes backwards"
    rec.state = target
    return "applied"


def end_record(rec: CallRecord, reason: CallState, at: float) -> None:
    rec.state = reason
    rec.end_reason = reason
    rec.ended_at = at


def note_provider_id(rec: CallRecord, event: CallEvent) -> None:
    """Learn the carrier's id; a call matched by our own id may upgrade it (Plivo's
    RequestUUID → CallUUID), keeping the old one as an alias."""
    new = event.provider_call_id
    if not new or new == rec.provider_call_id:
        return
    if rec.provider_call_id and event.call_id != rec.call_id:
        return  # matched by the carrier id itself: nothing to upgrade
    if rec.provider_call_id:
        aliases = rec.metadata.setdefault("providerCallIdAliases", [])
        if rec.provider_call_id not in aliases:
            aliases.append(rec.provider_call_id)
    rec.provider_call_id = new


def is_outbound_notify(rec: CallRecord) -> bool:
    return rec.mode == Mode.NOTIFY and rec.direction == Direction.OUTBOUND


def notify_done_speaking(rec: CallRecord) -> bool:
    """An outbound notify call whose message was said: next comes the hang-up."""
    return (
        is_outbound_notify(rec)
        and "initialMessage" not in rec.metadata
        and rec.metadata.get("greeted") is True
    )


def require_live(record: CallRecord) -> None:
    """Refuse (Conflict) anything but a connected call."""
    if record.terminal:
        raise Conflict(not_active(record))
    if not record.state.live:
        raise Conflict(f"call is not connected yet (state={record.state.value})")


def not_active(record: CallRecord) -> str:
    ended = record.ended_at
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)) if ended else "unknown"
    reason = record.end_reason.value if record.end_reason else "none"
    return (
        f"call is not active (last state={record.state.value}, endReason={reason}, endedAt={when})"
    )


def inbound_record(
    event: CallEvent, decision: InboundDecision, provider: str, our_number: str | None, now: float
) -> CallRecord:
    """A new inbound call, ringing; a refused one is recorded already ended."""
    record = CallRecord(
        provider=provider,
        provider_call_id=event.provider_call_id,
        direction=Direction.INBOUND,
        mode=Mode.CONVERSATION,
        from_number=event.from_number or "unknown",
        to_number=event.to_number or our_number or "unknown",
        state=CallState.RINGING,
        started_at=event.timestamp or now,
    )
    if decision.accepted:
        record.metadata["initialMessage"] = decision.greeting
        if decision.route_key:
            record.metadata["numberRouteKey"] = decision.route_key
    else:
        record.metadata["rejectionReason"] = "inbound-policy"
        end_record(record, CallState.HANGUP_BOT, record.started_at)
    return record


def event_data(event: CallEvent, outcome: str) -> dict[str, Any]:
    """A carrier event's log-entry data: its fields, less the noise, and a non-plain outcome."""
    data = event.wire()
    for noise in ("type", "id", "dedupeKey", "callId", "isFinal", "retryable"):
        data.pop(noise, None)
    if event.type in (EventType.SPEECH, EventType.PLAYBACK_ENDED, EventType.REPLIED):
        data["isFinal"] = event.is_final
    if outcome != "applied":
        data["outcome"] = outcome
    return data


def asked_reason(rec: CallRecord) -> CallState | None:
    """The end reason of a hang-up we asked for (its error kept on the record), when the
    carrier's plain "ended" arrives before we recorded the end ourselves (a specific reason
    of the carrier's, such as the caller hanging up first, still wins)."""
    asked = rec.metadata.get("hangupReason")
    if not isinstance(asked, str) or asked not in CallState._value2member_map_:
        return None
    error = rec.metadata.get("hangupError")
    if isinstance(error, str) and error:
        rec.metadata["error"] = error
    return CallState(asked)
