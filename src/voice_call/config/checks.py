"""Checks between fields: what one setting requires of another (provider credentials, the
caller ID, realtime versus streaming).

They run on the raw dict, after legacy migration and environment fallbacks, so their problems
are reported together with any type errors in one go.
"""

from __future__ import annotations

from typing import Any

from voice_call.config.environment import PROVIDER_ENV
from voice_call.config.errors import Loc
from voice_call.config.raw import is_missing, lookup
from voice_call.config.schema import CARRIERS, PROVIDERS


def cross_check(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Problems between fields, found on the raw dict so they add to any type errors."""
    if lookup(raw, "enabled", True) is False:
        return []
    provider = lookup(raw, "provider", "mock")
    known = provider in PROVIDERS
    problems: list[tuple[Loc, str]] = []
    if provider in CARRIERS and is_missing(lookup(raw, "fromNumber")):
        hint = " or TWILIO_FROM_NUMBER" if provider == "twilio" else ""
        problems.append(
            (
                ("fromNumber",),
                f'required when provider is "{provider}" — set it in the config{hint}',
            )
        )
    if provider in CARRIERS:
        problems += _credential_problems(raw, provider)
    realtime_on = lookup(lookup(raw, "realtime"), "enabled") is True
    streaming_on = lookup(lookup(raw, "streaming"), "enabled") is True
    if realtime_on and lookup(raw, "inboundPolicy", "disabled") == "disabled":
        problems.append(
            (
                ("inboundPolicy",),
                'must not be "disabled" when realtime.enabled is true'
                ' — set it to "allowlist", "pairing" or "open", or turn realtime off',
            )
        )
    if realtime_on and streaming_on:
        problems.append(
            (
                ("streaming", "enabled"),
                "cannot be true together with realtime.enabled — turn one of them off",
            )
        )
    if realtime_on and known and provider not in ("twilio", "telnyx", "mock"):
        problems.append(
            (
                ("realtime", "enabled"),
                f'only works with provider "twilio", "telnyx" or "mock" (provider is "{provider}")'
                " — set realtime.enabled to false or switch provider",
            )
        )
    return problems


def _credential_problems(raw: dict[str, Any], provider: str) -> list[tuple[Loc, str]]:
    block = raw.get(provider)
    if block is not None and not isinstance(block, dict):
        return []  # wrong type: validation already says so
    skip_signatures = lookup(raw, "skipSignatureVerification") is True
    problems: list[tuple[Loc, str]] = []
    for key, var in PROVIDER_ENV[provider].items():
        if not is_missing(lookup(block, key)):
            continue
        if key == "publicKey" and skip_signatures:
            continue
        fix = f"set it in the config or {var}"
        if key == "publicKey":
            fix += " (or skipSignatureVerification: true, for local development only)"
        problems.append(((provider, key), f'required when provider is "{provider}" — {fix}'))
    return problems
