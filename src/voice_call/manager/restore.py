"""Restore after a restart: reconcile every non-terminal call with the carrier, never dial again.

- no provider call id: the dial was never confirmed, so we cannot know whether the carrier
  placed it and must not place it again → `error` (reason recorded);
- answered longer ago than maxDurationSeconds → `timeout`, and hang up at the carrier;
- the carrier says it ended → that end reason;
- the carrier says it is live, or cannot say (a transient error) → keep it and re-arm the
  max-duration timer with the time that remains.
Each outcome is written to the call's event log as `call.restored`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING

from voice_call.models import CallRecord, CallState
from voice_call.providers.base import ProviderError, ProviderStatus
from voice_call.store.base import LoggedEvent

if TYPE_CHECKING:
    from voice_call.manager.manager import CallManager

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


async def restore_calls(manager: CallManager) -> dict[str, int]:
    calls = await manager.store.list_active()
    outcomes = await asyncio.gather(*(_restore_one(manager, call) for call in calls))
    summary = dict(Counter(outcomes))
    if calls:
        log.info("restored %d call(s): %s", len(calls), summary)
    return summary


async def _restore_one(manager: CallManager, call: CallRecord) -> str:
    now = manager.clock.now()
    limit = float(manager.config.max_duration_seconds)
    if call.provider_call_id is None:
        await _end(manager, call, CallState.ERROR, "dial-unconfirmed")
        return "dial-unconfirmed"
    if call.answered_at is not None and now - call.answered_at >= limit:
        with contextlib.suppress(ProviderError):
            await manager.provider.hangup(call, CallState.TIMEOUT.value)
        await _end(manager, call, CallState.TIMEOUT, "past-max-duration")
        return "timeout"
    status = await _carrier_status(manager, call.provider_call_id)
    if status.terminal and not status.unknown:
        reason = CARRIER_END_REASONS.get(status.status, CallState.COMPLETED)
        await _end(manager, call, reason, f"carrier-{status.status}")
        return "ended"
    outcome = "kept-unknown" if status.unknown else "kept"
    await _log(manager, call, outcome, status.status)
    if call.answered_at is not None:
        manager._arm_max_duration(call.call_id, limit - (now - call.answered_at))
    return outcome


async def _carrier_status(manager: CallManager, provider_call_id: str) -> ProviderStatus:
    try:
        return await manager.provider.get_call_status(provider_call_id)
    except ProviderError as exc:
        return ProviderStatus(status=f"error: {exc}", terminal=False, unknown=True)


async def _end(manager: CallManager, call: CallRecord, reason: CallState, why: str) -> None:
    updated = call.model_copy(deep=True)
    updated.state = reason
    updated.end_reason = reason
    updated.ended_at = manager.clock.now()
    updated.metadata["restoreOutcome"] = why
    await manager._persist(updated, _entry(manager, updated, why, reason.value))
    manager._finalize(call.call_id, reason)


async def _log(manager: CallManager, call: CallRecord, outcome: str, carrier_status: str) -> None:
    await manager._persist(call, _entry(manager, call, outcome, carrier_status))


def _entry(manager: CallManager, call: CallRecord, outcome: str, status: str) -> LoggedEvent:
    return LoggedEvent(
        call_id=call.call_id,
        type="call.restored",
        at=manager.clock.now(),
        state=call.state.value,
        data={"outcome": outcome, "carrierStatus": status},
    )
