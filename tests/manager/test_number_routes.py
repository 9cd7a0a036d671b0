"""Per-number routing in the manager (mock provider): each number's own inbound policy decides
before anything else is done, and each number's own responder answers its calls."""

from __future__ import annotations

from pathlib import Path

from tests.manager.stack import BASE, Harness, harness
from tests.support import merge
from voice_call.agent.responders.factory import build_responder
from voice_call.config import parse_config
from voice_call.models import CallEvent, CallRecord, CallState, Direction, EventType, Speaker

SALES = "+15555550111"
SUPPORT = "+15555550222"
ELSEWHERE = "+15555550999"
CALLER = "+15555550100"
OUTSIDER = "+15555550777"

ROUTES = {
    "numbers": {
        SALES: {
            "inboundPolicy": "open",
            "inboundGreeting": "Sales, hello!",
            "responder": {"provider": "echo"},
        },
        SUPPORT: {"inboundPolicy": "allowlist", "allowFrom": [OUTSIDER]},
    },
    "mock": {"silent": True},
}  # the top level: inboundPolicy "disabled" (the default), responder "none"


def inbound(pid: str, caller: str, to: str) -> CallEvent:
    return CallEvent(
        type=EventType.INITIATED,
        provider_call_id=pid,
        direction=Direction.INBOUND,
        **{"from": caller, "to": to},
    )


async def test_each_number_screens_callers_by_its_own_policy(tmp_path: Path) -> None:
    async with harness(tmp_path, ROUTES) as h:
        assert "disabled" in await h.manager.handle_event(inbound("a", CALLER, ELSEWHERE))
        refused = await h.manager.handle_event(inbound("b", CALLER, SUPPORT))
        assert refused == "rejected: caller not in allowFrom"
        assert await h.manager.handle_event(inbound("c", OUTSIDER, SUPPORT)) == "accepted"
        assert await h.manager.handle_event(inbound("d", CALLER, SALES)) == "accepted"
        b = await h.store.find_by_provider_call_id("mock", "b")
        assert b is not None and b.state == CallState.HANGUP_BOT
        assert b.metadata["rejectionReason"] == "inbound-policy"
        d = await h.store.find_by_provider_call_id("mock", "d")
        assert d is not None and d.metadata["initialMessage"] == "Sales, hello!"
        assert d.metadata["numberRouteKey"] == SALES


async def _talk(h: Harness, pid: str, words: str) -> CallRecord:
    """Answer inbound call `pid`, have the caller say `words`: the record after the reply."""
    await h.manager.handle_event(CallEvent(type=EventType.ANSWERED, provider_call_id=pid))
    await h.advance(0)
    record = await h.store.find_by_provider_call_id("mock", pid)
    assert record is not None
    await h.manager.handle_event(
        CallEvent(type=EventType.SPEECH, call_id=record.call_id, transcript=words)
    )
    await h.advance(0.1)
    answered = await h.manager.get(record.call_id)
    assert answered is not None
    return answered


async def test_each_number_is_answered_by_its_own_responder(tmp_path: Path) -> None:
    responder = build_responder(parse_config(merge(BASE, ROUTES), env={}))
    async with harness(tmp_path, ROUTES, responder=responder) as h:
        await h.manager.handle_event(inbound("s", CALLER, SALES))
        await h.manager.handle_event(inbound("o", OUTSIDER, SUPPORT))
        sales = await _talk(h, "s", "Any discounts?")
        assert [(e.speaker, e.text) for e in sales.transcript] == [
            (Speaker.BOT, "Sales, hello!"),
            (Speaker.USER, "Any discounts?"),
            (Speaker.BOT, "You said: Any discounts?"),
        ]
        support = await _talk(h, "o", "Hello?")  # no responder of its own, none at the top
        assert [e.speaker for e in support.transcript][-1] == Speaker.USER
        assert support.latency == []  # not answered at all (no silent reply turn)
