"""Inbound call screening: who may call in, and what they hear first."""

from __future__ import annotations

from dataclasses import dataclass

from voice_call.config import Config
from voice_call.numbers import digits, route_key

DEFAULT_GREETING = "Hello! How can I help you today?"


@dataclass(frozen=True)
class InboundDecision:
    accepted: bool
    reason: str = ""
    greeting: str = DEFAULT_GREETING
    route_key: str | None = None


def screen(config: Config, from_number: str | None, to_number: str | None) -> InboundDecision:
    policy = config.inbound_policy
    if policy == "disabled":
        return InboundDecision(False, "inbound calls are disabled (inboundPolicy)")
    if policy in ("allowlist", "pairing"):
        caller = digits(from_number)
        if not caller:
            return InboundDecision(False, "no caller ID to check against allowFrom")
        if caller not in {digits(n) for n in config.allow_from}:
            return InboundDecision(False, "caller not in allowFrom")
    key = route_key(config.numbers, to_number)
    route = config.numbers.get(key) if key else None
    greeting = (route and route.inbound_greeting) or config.inbound_greeting or DEFAULT_GREETING
    return InboundDecision(True, greeting=greeting, route_key=key)
