"""What a `numbers["+1555…"]` route's settings need of the rest of the file: a route's
`realtime` block only adjusts realtime voice that the top level turned on, and a route's
`allowFrom` is only read under an `allowlist` policy. Found on the raw dict (checks.py)."""

from __future__ import annotations

from typing import Any

from voice_call.config.errors import Loc
from voice_call.config.raw import lookup


def route_problems(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Problems of each route in `numbers`, against the top-level settings."""
    numbers = lookup(raw, "numbers")
    if not isinstance(numbers, dict):
        return []
    problems: list[tuple[Loc, str]] = []
    for key, route in numbers.items():
        if isinstance(route, dict):
            problems += _realtime(raw, str(key), lookup(route, "realtime"))
            problems += _allow_from(raw, str(key), route)
    return problems


def _realtime(raw: dict[str, Any], key: str, block: Any) -> list[tuple[Loc, str]]:
    if not isinstance(block, dict):
        return []
    top = lookup(raw, "realtime")
    if lookup(top, "enabled") is not True:
        return [
            (
                ("numbers", key, "realtime"),
                "needs realtime.enabled: true at the top level — realtime voice is on or off for"
                " the whole service; turn it on there or remove this block",
            )
        ]
    problems: list[tuple[Loc, str]] = []
    if lookup(block, "enabled") is False:
        problems.append(
            (
                ("numbers", key, "realtime", "enabled"),
                "cannot turn realtime voice off for one number while realtime.enabled is true"
                " — remove it (realtime is on or off for the whole service)",
            )
        )
    chosen, service = lookup(block, "provider"), lookup(top, "provider", "openai")
    if chosen is not None and chosen != service:
        problems.append(
            (
                ("numbers", key, "realtime", "provider"),
                f'must be the top-level realtime.provider ("{service}"): one realtime service'
                " serves every number — remove it or change realtime.provider",
            )
        )
    return problems


def _allow_from(raw: dict[str, Any], key: str, route: dict[str, Any]) -> list[tuple[Loc, str]]:
    if lookup(route, "allowFrom") is None:
        return []
    policy = lookup(route, "inboundPolicy", lookup(raw, "inboundPolicy", "disabled"))
    if policy == "allowlist":
        return []
    return [
        (
            ("numbers", key, "allowFrom"),
            f'is only read when this number\'s inboundPolicy is "allowlist" (it is "{policy}")'
            f' — set numbers["{key}"].inboundPolicy to "allowlist" or remove allowFrom',
        )
    ]
