"""Inbound call screening: who may call in, and what they hear first."""

from __future__ import annotations

from dataclasses import dataclass

from voice_call.config import Config
from voice_call.numbers import e164, inbound_rules, key_for, route_for

DEFAULT_GREETING = "Hello! How can I help you today?"


@dataclass(frozen=True)
class InboundDecision:
    accepted: bool
    reason: str = ""
    greeting: str = DEFAULT_GREETING
    route_key: str | None = None
    rejection: str = "inbound-policy"  # recorded as the call's rejectionReason


def screen(config: Config, from_number: str | None, to_number: str | None) -> InboundDecision:
    """Accept or refuse a call to `to_number`, by that number's route's policy where it sets
    one (numbers.py `inbound_rules`), before anything else is done with the call."""
    key = key_for(config, to_number)
    policy, allow_from = inbound_rules(config, key)
    if policy == "disabled":
        return InboundDecision(False, "inbound calls are disabled (inboundPolicy)")
    if policy == "allowlist":
        # Only a plain E.164 caller ID can match: digits pulled out of `sip:+1555…@elsewhere`
        # would let any SIP domain borrow an allowed number.
        caller = e164(from_number)
        if caller is None:
            return InboundDecision(False, "no E.164 caller ID to check against allowFrom")
        if caller not in {e164(n) for n in allow_from}:
            return InboundDecision(False, "caller not in allowFrom")
    route = route_for(config, None, key) if key is not None else None
    greeting = (route and route.inbound_greeting) or config.inbound_greeting or DEFAULT_GREETING
    return InboundDecision(True, greeting=greeting, route_key=key)


def over_capacity(active: int, limit: int) -> InboundDecision | None:
    """A refusal when `active` live calls already fill `maxConcurrentCalls`, else None."""
    if active < limit:
        return None
    reason = f"maximum concurrent calls ({limit}) reached"
    return InboundDecision(False, reason, rejection="max-concurrent-calls")
