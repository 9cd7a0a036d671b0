"""A transfer target's own leg on Telnyx: how its webhooks are told apart, and what they mean.

The target's leg carries our call id in its `client_state` (`target_leg_client_state` of a
cold `actions/transfer`; the `client_state` of a warm transfer's Dial), with a tag where a
turn token would be: `xc` (cold), `xw` (warm), or `xb-<caller's leg>` once a warm target is
being briefed (`speak`), so its `call.speak.ended` says which leg to `actions/bridge` it to.
Its events become `call.transfer` events for our call, never events about our own leg.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from voice_call.models import EventType, TransferStatus

COLD = "xc"
WARM = "xw"
BRIEF = "xb-"
MAX_TAG = 128  # the turn-token room in our client_state

# the target's call.hangup before it was bridged: why it was not reached
HANGUP_STATUSES = {
    "user_busy": TransferStatus.BUSY,
    "timeout": TransferStatus.NO_ANSWER,
    "originator_cancel": TransferStatus.NO_ANSWER,
}


def is_target_leg(tag: str | None) -> bool:
    return tag in (COLD, WARM) or (tag or "").startswith(BRIEF)


def brief_tag(caller_leg: str) -> str | None:
    """The tag of a warm target being briefed: the caller's leg, to bridge it to after."""
    packed = base64.urlsafe_b64encode(caller_leg.encode("utf-8")).decode("ascii").rstrip("=")
    tag = BRIEF + packed
    return tag if len(tag) <= MAX_TAG else None


def caller_leg(tag: str) -> str | None:
    if not tag.startswith(BRIEF):
        return None
    packed = tag[len(BRIEF) :]
    try:
        return base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def event_fields(event_type: str, payload: dict[str, Any], tag: str) -> dict[str, object] | None:
    """A target leg's webhook as `call.transfer` fields (no provider id: the leg is not ours)."""
    target = payload.get("to") if isinstance(payload.get("to"), str) else None
    base: dict[str, object] = {
        "type": EventType.TRANSFER,
        "provider_call_id": None,
        "turn_token": None,
        "transfer_target": target[:256] if target else None,
    }
    leg = payload.get("call_control_id")
    if event_type == "call.answered":
        # warm: ours to brief and bridge (the leg named); cold: Telnyx bridges it itself
        named = leg if tag == WARM and isinstance(leg, str) else None
        return {**base, "transfer_status": TransferStatus.ANSWERED, "transfer_leg": named}
    if event_type == "call.bridged":
        return {**base, "transfer_status": TransferStatus.BRIDGED}
    if event_type == "call.hangup":
        cause = payload.get("hangup_cause")
        status = (
            HANGUP_STATUSES.get(cause, TransferStatus.FAILED) if isinstance(cause, str) else None
        )
        return {**base, "transfer_status": status or TransferStatus.FAILED}
    return None  # initiated, speak.started/ended, ...: nothing new about the transfer


def bridge_request(body: bytes, decode_tag: Any) -> tuple[str, str] | None:
    """(caller's leg, target's leg) when `body` is a briefed warm target's `call.speak.ended`:
    time to `actions/bridge` them. `decode_tag` reads our client_state (webhooks.py)."""
    try:
        data = json.loads(body).get("data", {})
        payload = data.get("payload", {})
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(payload, dict) or data.get("event_type") != "call.speak.ended":
        return None
    decoded = decode_tag(payload.get("client_state"))
    leg = payload.get("call_control_id")
    caller = caller_leg(decoded[1]) if decoded and decoded[1] else None
    return (caller, leg) if caller and isinstance(leg, str) else None
