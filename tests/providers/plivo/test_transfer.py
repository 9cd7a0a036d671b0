"""Transfer on Plivo, end to end: the A leg transferred (`aleg_url`) to XML that says the
announcement and `<Dial>`s the target, against the emulator's transfer targets; warm: the
summary is the Dial's confirmSound, heard by the called party before the bridge."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.providers.plivo.stack import CALLEE, PlivoStack, plivo_stack
from tests.providers.plivo.test_streaming import callee, live_session, streaming_stack
from tests.support import wait_until
from voice_call.errors import InvalidInput
from voice_call.models import CallState, EventType
from voice_call.sim.callee import CalleeScript
from voice_call.sim.transfer_target import TargetScript

AGENT = "+15550009000"
SCRIPT = CalleeScript(answer_delay_ms=300, replies=("I need a person.",), reply_delay_ms=300)


async def _conversation(stack: PlivoStack) -> str:
    started = await stack.call(
        "voicecall.initiate", to=CALLEE, message="Hi, it's the clinic.", mode="conversation"
    )
    call_id = str(started["callId"])
    await stack.wait_user_lines(call_id, 1)
    return call_id


async def _statuses(stack: PlivoStack, call_id: str) -> list[str]:
    events = await stack.runtime.store.events(call_id=call_id)
    return [e.data.get("transferStatus", "") for e in events if e.type == EventType.TRANSFER]


async def test_cold_transfer_dials_the_target_and_the_bot_leaves(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, SCRIPT) as stack:
        call_id = await _conversation(stack)
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT, say="Putting you through.")
        record = await stack.wait_record(call_id, lambda r: r.terminal)
        assert record.state == CallState.COMPLETED and record.metadata["transferred"] is True
        assert record.metadata["transfer"]["status"] == "bridged"
        carrier = stack.carrier_call(record)
        assert carrier.callee.heard[-1] == "Putting you through."
        await stack.emulator.wait_ended(carrier.id)
        (link,) = stack.emulator.targets.to(AGENT)
        assert (link.caller, link.mode, link.status, link.heard) == (
            carrier.id,
            "cold",
            "completed",
            [],
        )
        assert await _statuses(stack, call_id) == ["dialing", "bridged"]


async def test_warm_transfer_plays_the_summary_to_the_target(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, SCRIPT) as stack:
        call_id = await _conversation(stack)
        target = "sip:desk@pbx.example.com"
        await stack.call("voicecall.transfer", callId=call_id, to=target, mode="warm")
        record = await stack.wait_record(call_id, lambda r: r.terminal)
        assert record.metadata["transfer"]["status"] == "completed"
        assert record.metadata["transferred"] is True
        (link,) = stack.emulator.targets.to(target)
        assert link.mode == "warm" and link.bridged_at is not None
        assert len(link.heard) == 1 and "Caller: I need a person." in link.heard[0]
        assert await _statuses(stack, call_id) == ["dialing", "answered", "completed"]


async def test_busy_target_hands_the_caller_back_to_the_bot(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, SCRIPT) as stack:
        stack.emulator.targets.set(AGENT, TargetScript(outcome="busy"))
        call_id = await _conversation(stack)
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT)
        record = await stack.wait_record(
            call_id, lambda r: r.transcript[-1].text.startswith("Sorry, I couldn't reach them")
        )
        assert not record.terminal and record.metadata["transfer"]["status"] == "busy"
        carrier = stack.carrier_call(record)
        await wait_until(lambda: _true(carrier.callee.heard[-1].startswith("Sorry, I couldn't")))
        assert not carrier.ended.is_set()
        assert await _statuses(stack, call_id) == ["dialing", "busy"]
        await stack.call("voicecall.end", callId=call_id)


async def test_a_denied_target_is_refused(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, SCRIPT) as stack:
        call_id = await _conversation(stack)
        with pytest.raises(InvalidInput, match="denyPrefixes"):
            await stack.call("voicecall.transfer", callId=call_id, to="+19005550100")
        assert stack.emulator.targets.connections == []
        await stack.call("voicecall.end", callId=call_id)


async def test_a_streamed_call_streams_again_after_a_busy_target(tmp_path: Path) -> None:
    line = "Can I talk to a person?"
    async with streaming_stack(tmp_path, callee(line)) as (stack, _fake):
        # rings 3 s, longer than the 2 s drop grace of the stream the transfer closed
        stack.emulator.targets.set(AGENT, TargetScript(outcome="busy", answer_delay_ms=3000))
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello.", mode="conversation"
        )
        call_id = str(started["callId"])
        first = await live_session(stack, call_id)
        await stack.wait_user_lines(call_id, 1)
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT)
        record = await stack.wait_record(
            call_id,
            lambda r: r.transcript[-1].text.startswith("Sorry, I couldn't reach them"),
            timeout=20,
        )
        assert not record.terminal
        assert stack.runtime.media.get(call_id) not in (None, first)  # a new stream
        await stack.call("voicecall.end", callId=call_id)


async def _true(value: bool) -> bool:
    return value
