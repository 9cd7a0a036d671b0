"""Conversation memory across calls, built from the store's past transcripts.

A call's memory key is (agent, session): calls share lines only when both match, so two
agents (`agentId`, per number or top level) never read each other's conversations. The
session is the call's `sessionKey` when initiate gave one, else `sessionScope` decides:

- `per-phone` (the seed's default): earlier calls with the same remote number (the callee for
  outbound calls, the caller for inbound), compared by digits;
- `per-call`: no memory beyond the current call;
- `main`: one shared session: every earlier call, whoever was on the line.

A call with a `sessionKey` is in that session only: it shares lines with calls of the same key,
whatever the scope, and not with the scope's sessions.

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
# The agent of records stored before calls carried one (the config's default `agentId`).
DEFAULT_AGENT = "main"

MemoryKey = tuple[str, str]


class RecentCalls(Protocol):
    async def list_recent(self, limit: int = 50) -> list[CallRecord]: ...


def remote_number(call: CallRecord) -> str:
    """The other party's number: the caller on inbound calls, the callee on outbound ones."""
    return call.from_number if call.direction == Direction.INBOUND else call.to_number


def memory_key(call: CallRecord, scope: str) -> MemoryKey | None:
    """(agent, session) of a call; None when the call is its own session (no memory)."""
    agent = call.agent_id or DEFAULT_AGENT
    if call.session_key:
        return agent, "key:" + call.session_key
    if scope == "main":
        return agent, "main"
    remote = digits(remote_number(call))
    if scope == "per-phone" and remote:
        return agent, "phone:" + remote
    return None  # per-call, or no number to tie calls together


async def session_history(
    store: RecentCalls, call: CallRecord, scope: str, limit: int
) -> list[TranscriptEntry]:
    """Lines from earlier calls in this call's session, oldest first, at most `limit`."""
    key = memory_key(call, scope)
    if key is None or limit <= 0:
        return []
    lines: list[TranscriptEntry] = []
    for past in reversed(await store.list_recent(RECENT_CALLS)):  # oldest first
        if past.call_id == call.call_id or past.started_at > call.started_at:
            continue
        if memory_key(past, scope) != key:
            continue
        lines.extend(entry for entry in past.transcript if entry.final)
    return lines[-limit:]
