"""Phone numbers: comparing them, and finding a number's `numbers[...]` route in the config.

Carriers spell the same number differently (`+15550001000`, `15550001000`, `+1 555 000 1000`),
so our own routes are found by their digits wherever an exact match fails. Who a caller is
(`allowFrom`) is decided on normalised E.164 only (`e164`): never on digits pulled out of a SIP
URI or any other caller ID. Every lookup of a route
by number goes through `route_key` / `route_for` here: the inbound screen (which records the
key it chose on the call as `metadata["numberRouteKey"]`, and takes the number's own
`inboundPolicy` / `allowFrom` from `inbound_rules`), each carrier's voice choice, the prompt,
the responder and the realtime session. Nothing else reads `config.numbers`: code that needs
every route (a carrier's list of languages) iterates `routes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

from voice_call.config import Config, NumberRoute
from voice_call.models import E164, CallRecord, Direction

# The visual separators people and carriers write inside a number, as the config accepts them.
_SEPARATORS = re.compile(r"[ \-().]")


def digits(number: str | None) -> str:
    """Only the ASCII digits of `number` ("" for None): the form route keys are compared in."""
    return "".join(ch for ch in number or "" if "0" <= ch <= "9")


def e164(number: str | None) -> str | None:
    """`number` as compact E.164 (`+1 (555) 000-1000` → `+15550001000`), or None when it is
    anything else: a SIP URI, `client:…`, bare digits without `+`, a non-ASCII digit."""
    if not number:
        return None
    compact = _SEPARATORS.sub("", number)
    return compact if E164.fullmatch(compact) else None


def denied_prefix(number: str, prefixes: Iterable[str]) -> str | None:
    """The first of `prefixes` (outbound.denyPrefixes) that `number` starts with, if any."""
    compact = e164(number) or number
    return next((prefix for prefix in prefixes if compact.startswith(prefix)), None)


InboundPolicy = Literal["disabled", "allowlist", "open"]


def routes(config: Config) -> Iterator[tuple[str, NumberRoute]]:
    """Every `numbers[...]` route with its key, as written in the config."""
    return iter(config.numbers.items())


def inbound_rules(config: Config, key: str | None) -> tuple[InboundPolicy, list[str]]:
    """(inboundPolicy, allowFrom) for a call to route `key`: the route's own where it sets
    them, else the top level's (a route's `allowFrom` replaces the top-level list)."""
    route = route_for(config, None, key) if key is not None else None
    policy = (route and route.inbound_policy) or config.inbound_policy
    allow = route.allow_from if route is not None and route.allow_from is not None else None
    return policy, list(config.allow_from if allow is None else allow)


def route_key(numbers: Mapping[str, NumberRoute], number: str | None) -> str | None:
    """The key of `numbers` that is `number`: written exactly so, else with the same digits."""
    if not number:
        return None
    if number in numbers:
        return number
    wanted = digits(number)
    return next((key for key in numbers if wanted and digits(key) == wanted), None)


def key_for(config: Config, number: str | None) -> str | None:
    """The `numbers[...]` key of one of our numbers (`route_key` over the config's routes)."""
    return route_key(config.numbers, number)


def route_for(config: Config, number: str | None, key: str | None = None) -> NumberRoute | None:
    """`numbers[...]` for one of our numbers: the route key already chosen (`key`), else the
    number itself, written exactly so or with the same digits."""
    if key and key in config.numbers:
        return config.numbers[key]
    found = route_key(config.numbers, number)
    return config.numbers[found] if found is not None else None


def our_number(call: CallRecord) -> str:
    """Our side of the call: the number dialled on inbound calls, the caller ID on outbound."""
    return call.to_number if call.direction == Direction.INBOUND else call.from_number


def screened_key(call: CallRecord) -> str | None:
    """The `numbers[...]` key the inbound screen chose for this call (`numberRouteKey`)."""
    key = call.metadata.get("numberRouteKey")
    return key if isinstance(key, str) else None


def screened_route(config: Config, call: CallRecord) -> NumberRoute | None:
    """The route the inbound screen chose for this call, if it chose one."""
    key = screened_key(call)
    return route_for(config, None, key) if key is not None else None


def our_route(config: Config, call: CallRecord) -> NumberRoute | None:
    """The route of our side of the call: the key the inbound screen chose, else our number."""
    return route_for(config, our_number(call), screened_key(call))
