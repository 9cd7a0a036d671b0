"""Answering-machine detection on Twilio, end to end against the emulator: async AMD
(`MachineDetection`, `AsyncAmd`, `AsyncAmdStatusCallback`), the voicemail left after the beep
(`machine_end_beep`), a person getting the conversation, and `detect` hanging up on a machine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.providers.twilio.stack import script, twilio_stack
from voice_call.models import Speaker
from voice_call.sim.machine import AnsweringMachine

MESSAGE = "Hi, this is the clinic: please call us back about your appointment."


def amd(mode: str) -> dict[str, Any]:
    return {"outbound": {"notifyHangupDelaySec": 0, "amd": {"enabled": True, "mode": mode}}}


async def test_a_machine_gets_the_voicemail_after_the_beep(tmp_path: Path) -> None:
    callee = script(outcome="machine", greeting_ms=4000)
    async with twilio_stack(tmp_path, callee, **amd("voicemail-drop")) as stack:
        call_id = await stack.start_call("conversation", MESSAGE)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        assert record.metadata["amd"]["answeredBy"] == "machine"
        assert record.metadata["amd"]["voicemail"] == "left"
        call = stack.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 5)
        machine = call.extra["machine"]
        assert isinstance(machine, AnsweringMachine)
        # said once, and it began after the beep (emulated seconds from it), not into the greeting
        assert [text for text, _ in machine.started] == [MESSAGE]
        assert machine.offsets()[0] >= 0
        assert call.callee.heard == [MESSAGE]
        leg = stack.emu._legs[call.id]
        assert (leg.machine_detection, leg.async_amd) == ("DetectMessageEnd", True)
        (verdict,) = stack.hooks("amd")
        assert verdict.params["AnsweredBy"] == "machine_end_beep"


async def test_a_person_gets_the_conversation_as_before(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, script(), **amd("voicemail-drop")) as stack:
        call_id = await stack.start_call("conversation", MESSAGE)
        record = await stack.wait_record(
            call_id, lambda r: any(e.speaker == Speaker.USER for e in r.transcript)
        )
        assert record.metadata["amd"]["answeredBy"] == "human"
        assert stack.emulated(record).callee.heard == [MESSAGE]
        assert [h.params["AnsweredBy"] for h in stack.hooks("amd")] == ["human"]
        await stack.call("voicecall.end", callId=call_id)


async def test_detect_hangs_up_on_a_machine_without_a_word(tmp_path: Path) -> None:
    callee = script(outcome="machine", greeting_ms=4000)
    async with twilio_stack(tmp_path, callee, **amd("detect")) as stack:
        call_id = await stack.start_call("conversation", MESSAGE)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        call = stack.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 5)
        assert call.callee.heard == [] and call.extra["machine"].started == []
        assert call.hangup_cause == "api-hangup"
        assert stack.emu._legs[call.id].machine_detection == "Enable"
        assert [h.params["AnsweredBy"] for h in stack.hooks("amd")] == ["machine_start"]


async def test_a_notify_call_leaves_its_message_after_the_beep(tmp_path: Path) -> None:
    callee = script(outcome="machine", greeting_ms=3000)
    async with twilio_stack(tmp_path, callee, **amd("voicemail-drop")) as stack:
        call_id = await stack.start_call("notify", MESSAGE)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        call = stack.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 5)
        machine = call.extra["machine"]
        assert [text for text, _ in machine.started] == [MESSAGE]
        assert machine.offsets()[0] >= 0
