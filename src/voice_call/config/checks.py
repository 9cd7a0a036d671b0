"""Checks between fields: what one setting requires of another (provider credentials, the
caller ID), what realtime voice needs of the rest of the file (config/realtime_checks.py), and
settings of the seed's that this version refuses.

They run on the raw dict, after legacy migration and environment fallbacks, so their problems
are reported together with any type errors in one go.
"""

from __future__ import annotations

from typing import Any

from voice_call.config.environment import PROVIDER_ENV
from voice_call.config.errors import Loc
from voice_call.config.raw import is_missing, lookup
from voice_call.config.realtime_checks import realtime_problems
from voice_call.config.route_checks import route_problems
from voice_call.config.schema import CARRIERS
from voice_call.languages import config_problems


def cross_check(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Problems between fields, found on the raw dict so they add to any type errors."""
    problems = _refused(raw) + _ngrok_bypass_refused(raw) + route_problems(raw)
    problems += config_problems(raw)  # a carrier voice that cannot speak its language
    if lookup(raw, "enabled", True) is False:
        return problems
    provider = lookup(raw, "provider", "mock")
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
    return problems + _shared_secret_problems(raw)


def _shared_secret_problems(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Instances sharing a Redis store verify the stream tokens the others mint, which a
    random per-process key (the default without tokenSecret) cannot do."""
    if lookup(lookup(raw, "store"), "backend") != "redis":
        return []
    if not is_missing(lookup(lookup(raw, "streaming"), "tokenSecret")):
        return []
    return [
        (
            ("streaming", "tokenSecret"),
            'required with store.backend "redis": every instance must verify the media-stream'
            " tokens the others mint — set the same secret on each one, e.g. the output of"
            ' `python -c "import secrets; print(secrets.token_urlsafe(32))"`',
        )
    ]


def _refused(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Seed settings this version cannot honour: refused even when the service is off, so a
    file that turns them on never passes `config check`."""
    realtime = lookup(raw, "realtime")
    if lookup(realtime, "enabled") is not True:
        return []
    return realtime_problems(raw, realtime)


def _ngrok_bypass_refused(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """The seed's "Twilio webhooks with invalid signatures through ngrok" switch. Every tunnelled
    request arrives from loopback, so it would take forged webhooks from anyone who finds the
    tunnel URL; and the tunnel gives Twilio the exact URL it signs, so real ones verify."""
    if lookup(lookup(raw, "tunnel"), "allowNgrokFreeTierLoopbackBypass") is not True:
        return []
    return [
        (
            ("tunnel", "allowNgrokFreeTierLoopbackBypass"),
            "not supported: it would accept forged Twilio webhooks from anyone who finds the "
            "tunnel URL (real ones verify through the ngrok tunnel without it) — remove it; to "
            "trust the tunnel's forwarding headers set webhookSecurity.trustForwardingHeaders: "
            'true with trustedProxyIPs: ["127.0.0.1"]',
        )
    ]


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
