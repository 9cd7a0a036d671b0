"""Restore after a restart: what to do with each non-terminal call. Never dial again.

This module decides; the CallManager applies each decision (`CallManager.start`):
- no provider call id: the dial was never confirmed, so we cannot know whether the carrier
  placed it and must not place it again → end it as `error` (reason recorded);
- answered longer ago than maxDurationSeconds → hang up at the carrier and end it as `timeout`;
- the carrier says it ended → that end reason;
- the carrier says it is live, or cannot say (a transient error) → keep it and re-arm the
  max-duration timer with the time that remains.
Each outcome is written to the call's event log as `call.restored`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from voice_call.models import CallRecord, CallState
from voice_call.providers.base import Provider, ProviderError, ProviderStatus

log = logging.getLogger("voice_call.restore")

# Carrier status words → our end reasons (Twilio/Telnyx/Plivo spellings normalised lower-case).
CARRIER_END_REASONS = {
    "completed": CallState.COMPLETED,
    "busy": CallState.BUSY,
    "no-answer": CallState.NO_ANSWER,
    "failed": CallState.FAILED,
    "canceled": CallState.HANGUP_BOT,
    "not-found": CallState.COMPLETED,
}


@dataclass(frozen=True)
class EndCall:
    """End the call here with `reason`; `why` is its `restoreOutcome`."""

    call: CallRecord
    reason: CallState
    why: str  # dial-unconfirmed, past-max-duration, carrier-<status>
    outcome: str  # the summary's word: dial-unconfirmed, timeout, ended
    hang_up_first: bool = False  # the carrier may still hold it: hang up there before ending


@dataclass(frozen=True)
class KeepCall:
    """The call goes on; an answered one ends at max duration, `max_duration_left_s` from now."""

    call: CallRecord
    outcome: str  # kept, or kept-unknown when the carrier could not say
    carrier_status: str
    max_duration_left_s: float | None  # None: not answered yet, nothing to arm


Decision = EndCall | KeepCall


async def decide(
    call: CallRecord, provider: Provider, now: float, max_duration_s: float
) -> Decision:
    """What to do with one non-terminal call; asks the carrier only when the record can't say."""
    if call.provider_call_id is None:
        return EndCall(call, CallState.ERROR, "dial-unconfirmed", "dial-unconfirmed")
    if call.answered_at is not None and now - call.answered_at >= max_duration_s:
        return EndCall(call, CallState.TIMEOUT, "past-max-duration", "timeout", hang_up_first=True)
    status = await _carrier_status(provider, call.provider_call_id)
    if status.terminal and not status.unknown:
        reason = CARRIER_END_REASONS.get(status.status, CallState.COMPLETED)
        return EndCall(call, reason, f"carrier-{status.status}", "ended")
    left = None if call.answered_at is None else max_duration_s - (now - call.answered_at)
    return KeepCall(call, "kept-unknown" if status.unknown else "kept", status.status, left)


async def _carrier_status(provider: Provider, provider_call_id: str) -> ProviderStatus:
    """The carrier's word on a call; a failing query reads as `unknown` (keep the call)."""
    try:
        return await provider.get_call_status(provider_call_id)
    except ProviderError as exc:
        return ProviderStatus(status=f"error: {exc}", terminal=False, unknown=True)


def summarize(decisions: Sequence[Decision]) -> dict[str, int]:
    """How many calls got each outcome (logged when there were any)."""
    summary = dict(Counter(decision.outcome for decision in decisions))
    if decisions:
        log.info("restored %d call(s): %s", len(decisions), summary)
    return summary
