"""Transfer on Telnyx, end to end against the emulator: cold is `actions/transfer` (the target's
leg reports through `target_leg_client_state`); warm dials the target linked to the caller,
briefs it with `speak` on its own leg, then `actions/bridge`s the two."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.providers.telnyx.stack import CALLEE, TelnyxStack, commands, telnyx_stack
from tests.providers.telnyx.test_streaming import streamed_stack
from tests.support import wait_until
from voice_call.errors import InvalidInput
from voice_call.models import CallState, EventType
from voice_call.sim.callee import CalleeScript
from voice_call.sim.transfer_target import TargetScript

AGENT = "+15550009000"
SCRIPT = CalleeScript(replies=("I need a person.",), answer_delay_ms=200, reply_delay_ms=200)


async def _conversation(stack: TelnyxStack) -> str:
    started = await stack.call(
        "voicecall.initiate", to=CALLEE, message="Hello, the clinic.", mode="conversation"
    )
    call_id = str(started["callId"])
    await stack.wait_user_lines(call_id, 1)
    return call_id


async def _statuses(stack: TelnyxStack, call_id: str) -> list[str]:
    events = await stack.runtime.store.events(call_id=call_id)
    return [e.data.get("transferStatus", "") for e in events if e.type == EventType.TRANSFER]


async def test_cold_transfer_bridges_the_target_and_the_bot_leaves(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        call_id = await _conversation(stack)
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT, say="Putting you through.")
        record = await stack.wait_record(call_id, lambda r: r.terminal)
        assert record.state == CallState.COMPLETED and record.metadata["transferred"] is True
        assert record.metadata["transfer"]["status"] == "bridged"
        leg = await stack.leg(call_id)
        assert record.provider_call_id == leg.id  # the target's leg never replaced ours
        (sent,) = commands(leg, "transfer")
        assert sent["body"]["to"] == AGENT and "target_leg_client_state" in sent["body"]
        assert "Putting you through." in leg.callee.heard
        await stack.emu.wait_ended(leg.id, timeout=10)
        (link,) = stack.emu.targets.to(AGENT)
        assert (link.caller, link.mode, link.status) == (leg.id, "cold", "completed")
        # bridged by whichever leg's call.bridged came first (ours is logged as call.active)
        assert (await _statuses(stack, call_id))[0] == "dialing"


async def test_warm_transfer_briefs_the_target_then_bridges(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        call_id = await _conversation(stack)
        target = "sip:desk@pbx.example.com"
        await stack.call("voicecall.transfer", callId=call_id, to=target, mode="warm")
        record = await stack.wait_record(call_id, lambda r: r.terminal)
        assert record.metadata["transfer"]["status"] == "bridged"
        (link,) = stack.emu.targets.to(target)
        assert link.mode == "warm" and link.bridged_at is not None
        assert len(link.heard) == 1 and "Caller: I need a person." in link.heard[0]
        leg = await stack.leg(call_id)
        (bridge,) = commands(leg, "bridge")
        assert bridge["body"]["call_control_id"] != leg.id  # the target's own leg
        assert (await _statuses(stack, call_id))[:2] == ["dialing", "answered"]


async def test_busy_target_hands_the_caller_back_to_the_bot(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        stack.emu.targets.set(AGENT, TargetScript(outcome="busy"))
        call_id = await _conversation(stack)
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT)
        record = await stack.wait_record(
            call_id, lambda r: r.transcript[-1].text.startswith("Sorry, I couldn't reach them")
        )
        assert not record.terminal and record.metadata["transfer"]["status"] == "busy"
        leg = await stack.leg(call_id)
        await wait_until(lambda: _true(leg.callee.heard[-1].startswith("Sorry, I couldn't")))
        assert not leg.is_ended
        assert stack.emu.targets.to(AGENT)[0].status == "busy"
        assert await _statuses(stack, call_id) == ["dialing", "busy"]
        await stack.call("voicecall.end", callId=call_id)


async def test_a_denied_target_is_refused(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        call_id = await _conversation(stack)
        with pytest.raises(InvalidInput, match="denyPrefixes"):
            await stack.call("voicecall.transfer", callId=call_id, to="+19005550100")
        assert stack.emu.targets.connections == []
        await stack.call("voicecall.end", callId=call_id)


async def test_a_streamed_call_streams_again_after_a_target_that_does_not_answer(
    tmp_path: Path,
) -> None:
    line = "Can I talk to a person?"
    async with streamed_stack(tmp_path, (line,)) as streamed:
        stack = streamed.stack
        # rings 3 s (60 s emulated), longer than the 2 s drop grace of the stopped stream
        stack.emu.targets.set(AGENT, TargetScript(outcome="busy", answer_delay_ms=60_000))
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello.", mode="conversation"
        )
        call_id = str(started["callId"])
        await stack.wait_record(
            call_id, lambda r: any(e.text == line for e in r.transcript), timeout=20
        )
        await stack.call("voicecall.transfer", callId=call_id, to=AGENT)
        record = await stack.wait_record(
            call_id,
            lambda r: r.transcript[-1].text.startswith("Sorry, I couldn't reach them"),
            timeout=20,
        )
        assert not record.terminal
        leg = await streamed.leg(call_id)
        actions = [c["action"] for c in commands(leg)]
        assert actions.index("streaming_stop") < actions.index("transfer")
        assert actions.index("transfer") < actions.index("streaming_start")
        await stack.call("voicecall.end", callId=call_id)


async def _true(value: bool) -> bool:
    return value
