"""One number, many spellings: the route lookup every carrier and the inbound screen share."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import voice_call
from voice_call.agent.responders.factory import build_responder
from voice_call.config import Config, ConfigError, parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.numbers import (
    digits,
    inbound_rules,
    our_number,
    our_route,
    route_for,
    route_key,
)

OURS = "+15550001000"
OTHER = "+15550002000"


def config() -> Config:
    return parse_config(
        {
            "provider": "mock",
            "fromNumber": OURS,
            "numbers": {OURS: {"language": "en-GB"}, OTHER: {"language": "fr-FR"}},
        },
        env={},
    )


def call(direction: Direction, ours: str, **metadata: str) -> CallRecord:
    inbound = direction == Direction.INBOUND
    return CallRecord(
        provider="mock",
        direction=direction,
        mode=Mode.CONVERSATION,
        from_number="+15559990000" if inbound else ours,
        to_number=ours if inbound else "+15559990000",
        started_at=0,
        metadata=dict(metadata),
    )


def test_digits_drops_everything_but_digits() -> None:
    assert digits("+1 (555) 000-1000") == "15550001000"
    assert digits(None) == "" and digits("") == ""


def test_route_key_exact_then_by_digits() -> None:
    numbers = config().numbers
    assert route_key(numbers, OURS) == OURS
    assert route_key(numbers, "1 555 000 1000") == OURS
    assert route_key(numbers, "+15559999999") is None
    assert route_key(numbers, None) is None and route_key(numbers, "") is None
    assert route_key(numbers, "+") is None  # no digits never matches


def test_route_for_prefers_the_chosen_key() -> None:
    cfg = config()
    assert route_for(cfg, "15550001000") == cfg.numbers[OURS]
    assert route_for(cfg, "15550001000", key=OTHER) == cfg.numbers[OTHER]
    assert route_for(cfg, "15550001000", key="+15559999999") == cfg.numbers[OURS]
    assert route_for(cfg, None) is None


def test_our_side_of_the_call() -> None:
    cfg = config()
    inbound = call(Direction.INBOUND, "15550002000")
    outbound = call(Direction.OUTBOUND, "1-555-000-1000")
    assert our_number(inbound) == "15550002000" and our_number(outbound) == "1-555-000-1000"
    assert our_route(cfg, inbound) == cfg.numbers[OTHER]
    assert our_route(cfg, outbound) == cfg.numbers[OURS]
    assert our_route(cfg, call(Direction.INBOUND, OTHER, numberRouteKey=OURS)) == cfg.numbers[OURS]


def test_inbound_rules_take_the_routes_own_policy_and_list() -> None:
    cfg = parse_config(
        {
            "inboundPolicy": "allowlist",
            "allowFrom": ["+15550003000"],
            "numbers": {
                OURS: {"inboundPolicy": "open"},
                OTHER: {"allowFrom": ["+1 555 000 4000"]},
                "+15550005000": {"inboundPolicy": "disabled"},
            },
        },
        env={},
    )
    assert inbound_rules(cfg, OURS) == ("open", ["+15550003000"])
    assert inbound_rules(cfg, OTHER) == ("allowlist", ["+15550004000"])  # replaces the top list
    assert inbound_rules(cfg, "+15550005000")[0] == "disabled"
    assert inbound_rules(cfg, None) == ("allowlist", ["+15550003000"])


def _src_reads_of_config_numbers() -> list[str]:
    """`<…>config.numbers` anywhere in the package but numbers.py and the config package."""
    root = Path(voice_call.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "numbers.py" or rel.startswith("config/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Attribute) and node.attr == "numbers"):
                continue
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in ("config", "cfg", "spec"):
                found.append(f"{rel}:{node.lineno}")
    return found


def test_every_route_lookup_goes_through_numbers_py() -> None:
    assert _src_reads_of_config_numbers() == []


ROUTE = f'numbers["{OURS}"]'
REALTIME_ON: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": OURS,
    "twilio": {"accountSid": "AC" + "0" * 32, "authToken": "t"},
    "inboundPolicy": "open",
    "realtime": {"enabled": True},
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"numbers": {OURS: {"realtime": {"instructions": "Be brief."}}}},
            f"{ROUTE}.realtime: needs realtime.enabled: true at the top level",
        ),
        (
            {**REALTIME_ON, "numbers": {OURS: {"realtime": {"enabled": False}}}},
            f"{ROUTE}.realtime.enabled: cannot turn realtime voice off for one number",
        ),
        (
            {**REALTIME_ON, "numbers": {OURS: {"realtime": {"provider": "google"}}}},
            f'{ROUTE}.realtime.provider: must be the top-level realtime.provider ("openai")',
        ),
        (
            {"inboundPolicy": "open", "numbers": {OURS: {"allowFrom": ["+15550003000"]}}},
            f'{ROUTE}.allowFrom: is only read when this number\'s inboundPolicy is "allowlist"',
        ),
        (
            {"numbers": {OURS: {"inboundPolicy": "pairing"}}},
            f'{ROUTE}.inboundPolicy: "pairing" is not available in this version',
        ),
        (
            {"numbers": {OURS: {"greeting": "Hi"}}},
            f"{ROUTE}.greeting: unknown key — remove it or check its spelling (did you mean"
            " 'inboundGreeting'?)",
        ),
        (
            {"numbers": {OURS: {"responder": {"provider": "hook"}}}},
            f'{ROUTE}.responder.url: required when provider is "hook"',
        ),
    ],
    ids=[
        "realtime-off",
        "realtime-opt-out",
        "realtime-other-service",
        "allowfrom-without-allowlist",
        "pairing",
        "greeting-spelling",
        "hook-without-url",
    ],
)
def test_route_settings_that_cannot_be_honoured_are_refused(
    raw: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    assert any(error.startswith(expected) for error in caught.value.errors), caught.value.errors


def test_route_settings_that_can_be_honoured_are_accepted() -> None:
    cfg = parse_config(
        {
            **REALTIME_ON,
            "numbers": {
                OURS: {
                    "realtime": {"enabled": True, "provider": "openai", "voice": "cedar"},
                    "responder": {"provider": "echo"},
                    "inboundPolicy": "allowlist",
                    "allowFrom": ["+15550003000"],
                }
            },
        },
        env={},
    )
    route = cfg.numbers[OURS]
    assert route.realtime is not None and route.realtime.voice == "cedar"
    assert route.responder is not None and route.responder.provider == "echo"


def test_a_routes_responder_is_checked_at_start_and_named_in_the_error() -> None:
    cfg = parse_config({"numbers": {OURS: {"responder": {"provider": "openai"}}}}, env={})
    with pytest.raises(ConfigError) as caught:
        build_responder(cfg)
    [error] = caught.value.errors
    assert error.startswith(f"{ROUTE}.responder: responseModel: 'openai/gpt-4o-mini' needs an API")
