"""Conversation memory across calls, built from the store's past transcripts (`sessionScope`).

- `per-phone` (the seed's default): earlier calls with the same remote number (the callee for
  outbound calls, the caller for inbound), compared by digits;
- `per-call`: no memory beyond the current call;
- `main`: one shared session: every earlier call, whoever was on the line.

Only the most recent `limit` lines are kept; the current call's own transcript is not included
(responders already have it on the record). The manager hands `session_history` to responders
as `ReplyContext.load_history`, so only a responder that reads memory pays for it.
"""

from __future__ import annotations

from typing import Protocol

from voice_call.models import CallRecord, Direction, TranscriptEntry
from voice_call.numbers import digits

# How many recent calls are scanned for lines; older sessions fall out of memory. Each is read
# with its transcript, so this bounds the cost of a call's first reply (~2 ms for 20 calls).
RECENT_CALLS = 20


class RecentCalls(Protocol):
    async def list_recent(self, limit: int = 50) -> list[CallRecord]: ...


def remote_number(call: CallRecord) -> str:
    """The other party's number: the caller on inbound calls, the callee on outbound ones."""
    return call.from_number if call.direction == Direction.INBOUND else call.to_number


async def session_history(
    store: RecentCalls, call: CallRecord, scope: str, limit: int
) -> list[TranscriptEntry]:
    """Lines from earlier calls in this call's session, oldest first, at most `limit`."""
    if scope == "per-call" or limit <= 0:
        return []
    remote = digits(remote_number(call))
    if scope == "per-phone" and not remote:
        return []  # no number to tie calls together: the call is its own session
    lines: list[TranscriptEntry] = []
    for past in reversed(await store.list_recent(RECENT_CALLS)):  # oldest first
        if past.call_id == call.call_id or past.started_at > call.started_at:
            continue
        if scope == "per-phone" and digits(remote_number(past)) != remote:
            continue
        lines.extend(entry for entry in past.transcript if entry.final)
    return lines[-limit:]
