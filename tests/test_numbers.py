"""One number, many spellings: the route lookup every carrier and the inbound screen share."""

from __future__ import annotations

from voice_call.config import Config, parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.numbers import digits, our_number, our_route, route_for, route_key

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
