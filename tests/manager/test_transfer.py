"""Transfer to a person on the mock carrier: cold, warm, a busy target, refused targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.manager.stack import Harness, harness
from voice_call.agent.responders.echo import EchoResponder
from voice_call.errors import Conflict, InvalidInput
from voice_call.models import CallEvent, CallRecord, CallState, EventType, Mode, Speaker
from voice_call.sim.transfer_target import TargetScript

AGENT = "+15555550777"


async def _live_call(h: Harness) -> CallRecord:
    call = await h.manager.initiate(to=None, message="Hi there", mode=Mode.CONVERSATION)
    await h.advance(1.5)  # answered, greeted, the caller said "first reply"
    return call


async def _transfer_events(h: Harness, call_id: str) -> list[str]:
    events = await h.store.events(call_id=call_id)
    return [e.data.get("transferStatus", "") for e in events if e.type == EventType.TRANSFER]


async def test_cold_transfer_connects_the_caller_and_the_bot_leaves(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await _live_call(h)
        await h.manager.transfer(call.call_id, AGENT, "cold", "Putting you through now.")
        await h.advance(0.2)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.COMPLETED
        assert rec.metadata["transferred"] is True
        info = rec.metadata["transfer"]
        assert (info["to"], info["mode"], info["status"]) == (AGENT, "cold", "bridged")
        assert rec.transcript[-1].text == "Putting you through now."
        assert await _transfer_events(h, call.call_id) == ["dialing", "bridged"]
        (link,) = h.provider.targets.to(AGENT)
        assert (link.caller, link.status, link.announced) == (
            rec.provider_call_id,
            "bridged",
            ["Putting you through now."],
        )
        assert [e["op"] for e in h.ledger()] == ["dial", "transfer"]  # no hang-up of ours


async def test_warm_transfer_tells_the_target_what_the_call_is_about(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await _live_call(h)
        await h.manager.transfer(call.call_id, "sip:desk@example.com", "warm")
        await h.advance(0.2)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.metadata["transfer"]["status"] == "bridged"
        (link,) = h.provider.targets.to("sip:desk@example.com")
        assert link.mode == "warm"
        assert "Caller: first reply" in link.heard[0]  # the transcript's last lines


async def test_busy_target_hands_the_caller_back_to_the_bot(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.provider.targets.set(AGENT, TargetScript(outcome="busy"))
        call = await _live_call(h)
        await h.manager.transfer(call.call_id, AGENT)
        await h.advance(0.2)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state.live
        assert rec.metadata["transfer"]["status"] == "busy"
        assert await _transfer_events(h, call.call_id) == ["dialing", "busy"]
        bot_lines = [e.text for e in rec.transcript if e.speaker == Speaker.BOT]
        assert bot_lines[-1].startswith("Sorry, I couldn't reach them")
        # and a second try is allowed
        await h.manager.transfer(call.call_id, "+15555550778")


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("+19005550100", "outbound.denyPrefixes"),
        ("sip:+19005550100@pbx.example.com", "outbound.denyPrefixes"),
        ("5550100", "E.164 number"),
        ("sip:no user@example.com", "SIP URI"),
        ('sip:a@b"><Hangup/>', "SIP URI"),
    ],
)
async def test_refused_targets_change_nothing(tmp_path: Path, to: str, why: str) -> None:
    async with harness(tmp_path) as h:
        call = await _live_call(h)
        with pytest.raises(InvalidInput, match=why):
            await h.manager.transfer(call.call_id, to)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and "transfer" not in rec.metadata
        assert h.provider.targets.connections == []


async def test_one_transfer_at_a_time_and_only_on_a_live_call(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.provider.targets.set(AGENT, TargetScript(answer_delay_ms=5000))
        call = await _live_call(h)
        await h.manager.transfer(call.call_id, AGENT)
        with pytest.raises(Conflict, match="already under way"):
            await h.manager.transfer(call.call_id, AGENT)
        await h.advance(5.0)
        with pytest.raises(Conflict, match="not active"):
            await h.manager.transfer(call.call_id, AGENT)


async def test_a_stream_closed_for_a_transfer_does_not_end_the_call(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.provider.targets.set(AGENT, TargetScript(answer_delay_ms=5000))
        call = await _live_call(h)
        await h.manager.transfer(call.call_id, AGENT)
        await h.manager.end_after_stream_drop(call.call_id, CallState.HANGUP_USER)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and not rec.terminal


async def test_no_auto_reply_while_the_target_rings(tmp_path: Path) -> None:
    async with harness(tmp_path, responder=EchoResponder()) as h:
        h.provider.targets.set(AGENT, TargetScript(answer_delay_ms=5000))
        call = await _live_call(h)
        await h.advance(0.5)  # the echo of the first reply has been said
        await h.manager.transfer(call.call_id, AGENT)
        said = len((await h.manager.get(call.call_id)).transcript)  # type: ignore[union-attr]
        await h.manager.handle_event(
            CallEvent(
                type=EventType.SPEECH,
                call_id=call.call_id,
                transcript="Hello? Are you still there?",
            )
        )
        await h.advance(1.0)
        rec = await h.manager.get(call.call_id)
        assert rec is not None
        later = rec.transcript[said:]
        assert "Hello? Are you still there?" in [e.text for e in later]
        assert Speaker.BOT not in [e.speaker for e in later]  # no reply on top of the transfer
