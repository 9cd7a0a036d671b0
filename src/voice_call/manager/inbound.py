"""Inbound call screening: who may call in, and what they hear first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voice_call.config import Config, NumberRoute

DEFAULT_GREETING = "Hello! How can I help you today?"


@dataclass(frozen=True)
class InboundDecision:
    accepted: bool
    reason: str = ""
    greeting: str = DEFAULT_GREETING
    route_key: str | None = None


def digits(number: str | None) -> str:
    return "".join(ch for ch in number or "" if ch.isdigit())


def find_route(numbers: Mapping[str, NumberRoute], to_number: str | None) -> str | None:
    """Exact key first, then a digits-only comparison (carriers vary in formatting)."""
    if not to_number:
        return None
    if to_number in numbers:
        return to_number
    wanted = digits(to_number)
    return next((key for key in numbers if wanted and digits(key) == wanted), None)


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
    route_key = find_route(config.numbers, to_number)
    route = config.numbers.get(route_key) if route_key else None
    greeting = (route and route.inbound_greeting) or config.inbound_greeting or DEFAULT_GREETING
    return InboundDecision(True, greeting=greeting, route_key=route_key)
