"""Transfer on Twilio, end to end: a live update to `<Say>` + `<Dial>`, against the emulator's
transfer targets (answers, busy), cold and warm (the summary as the called party's whisper)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.providers.twilio.stack import TwilioStack, twilio_stack
from tests.providers.twilio.test_streaming import streaming_stack
from tests.support import wait_until
from voice_call.errors import InvalidInput, Unavailable
from voice_call.models import CallRecord, CallState, EventType, Speaker
from voice_call.sim.transfer_target import TargetScript

GREETING = "Hello, this is the clinic calling about your appointment."
AGENT = "+15550009000"


async def _transfer_statuses(stack: TwilioStack, call_id: str) -> list[str]:
    events = await stack.runtime.store.events(call_id=call_id)
    return [e.data.get("transferStatus", "") for e in events if e.type == EventType.TRANSFER]


async def _bridged(stack: TwilioStack, call_id: str) -> CallRecord:
    return await stack.wait_record(
        call_id, lambda r: r.metadata.get("transfer", {}).get("status") == "bridged"
    )


async def test_cold_transfer_dials_the_target_and_the_bot_leaves(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        reply = await stack.call(
            "voicecall.transfer", callId=call_id, to=AGENT, say="Putting you through."
        )
        assert reply["status"] == "dialing"
        record = await _bridged(stack, call_id)
        assert record.state == CallState.COMPLETED and record.metadata["transferred"] is True
        assert record.metadata["transfer"]["mode"] == "cold"
        call = stack.emulated(record)
        await wait_until(lambda: _done(call.ended.is_set()))
        (link,) = stack.emu.targets.to(AGENT)
        assert (link.caller, link.mode, link.status) == (call.id, "cold", "completed")
        assert link.heard == []
        assert call.callee.heard[-1] == "Putting you through."  # said before the dial
        form = stack.updates(record.provider_call_id)[-1]
        assert form["what"] == "transfer" and "<Dial" in form["Twiml"]
        assert await _transfer_statuses(stack, call_id) == ["dialing", "bridged"]


async def test_warm_transfer_whispers_a_summary_to_the_target(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        target = "sip:desk@pbx.example.com"
        await stack.call("voicecall.transfer", callId=call_id, to=target, mode="warm")
        record = await stack.wait_record(call_id, lambda r: r.terminal)
        assert record.state == CallState.COMPLETED and record.metadata["transferred"] is True
        assert record.metadata["transfer"]["status"] == "completed"
        (link,) = stack.emu.targets.to(target)
        assert (link.mode, link.status) == ("warm", "completed")
        assert link.bridged_at is not None
        assert len(link.heard) == 1 and "Caller: Hi, this is Sam speaking." in link.heard[0]
        assert "<Sip" in stack.updates(record.provider_call_id)[-1]["Twiml"]
        statuses = await _transfer_statuses(stack, call_id)
        assert statuses == ["dialing", "answered", "completed"]


async def test_busy_target_hands_the_caller_back_to_the_bot(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        stack.emu.targets.set(AGENT, TargetScript(outcome="busy"))
        call_id = await stack.answered_greeting(GREETING)
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT)
        record = await stack.wait_record(
            call_id, lambda r: r.metadata.get("transfer", {}).get("status") == "busy"
        )
        assert not record.terminal
        assert await _transfer_statuses(stack, call_id) == ["dialing", "busy"]
        record = await stack.wait_record(
            call_id,
            lambda r: (
                r.transcript[-1].speaker == Speaker.BOT
                and r.transcript[-1].text.startswith("Sorry, I couldn't reach them")
            ),
        )
        call = stack.emulated(record)
        await wait_until(lambda: _done(call.callee.heard[-1].startswith("Sorry, I couldn't")))
        assert not call.ended.is_set()  # still on the line with the bot
        await stack.call("voicecall.end", callId=call_id)


async def test_denied_and_malformed_targets_are_refused(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        with pytest.raises(InvalidInput, match="denyPrefixes"):
            await stack.call("voicecall.transfer", callId=call_id, to="+19005550100")
        with pytest.raises(InvalidInput, match=r"E\.164 number"):
            await stack.call("voicecall.transfer", callId=call_id, to="agent")
        with pytest.raises(InvalidInput, match="mode"):
            await stack.call("voicecall.transfer", callId=call_id, to=AGENT, mode="hot")
        assert stack.emu.targets.connections == []
        assert "transfer" not in (await stack.record(call_id)).metadata
        await stack.call("voicecall.end", callId=call_id)
        with pytest.raises(Exception, match="not active") as info:
            await stack.call("voicecall.transfer", callId=call_id, to=AGENT)
        assert not isinstance(info.value, Unavailable)


async def _done(value: bool) -> bool:
    return value


async def test_a_streamed_call_comes_back_onto_its_stream_after_a_busy_target(
    tmp_path: Path,
) -> None:
    line = "I would like to talk to a person."
    # the target rings 3 s (60 s emulated), longer than the 2 s drop grace of the stream the
    # <Dial> closed: that must not end the call
    async with streaming_stack(tmp_path, (line,)) as stack:
        stack.emu.targets.set(AGENT, TargetScript(outcome="busy", answer_delay_ms=60_000))
        call_id = await stack.start_call("conversation", GREETING)
        await stack.wait_record(
            call_id, lambda r: any(e.text == line for e in r.transcript), timeout=20
        )
        record = await stack.record(call_id)
        call = stack.emulated(record)
        first = call.extra["stream"]
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT, say="One moment.")
        record = await stack.wait_record(
            call_id, lambda r: r.metadata["transfer"]["status"] == "busy", timeout=20
        )
        assert not record.terminal  # the stream closed for the <Dial>, the call went on
        await wait_until(lambda: _done(call.extra["stream"] is not first), timeout=20)
        record = await stack.wait_record(
            call_id,
            lambda r: r.transcript[-1].text.startswith("Sorry, I couldn't reach them"),
            timeout=20,
        )
        assert stack.emu.targets.to(AGENT)[0].status == "busy"
        assert not record.terminal and not call.ended.is_set()
        await stack.call("voicecall.end", callId=call_id)
