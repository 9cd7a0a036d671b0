"""Answering-machine detection on Telnyx, end to end against the emulator: Dial's
`answering_machine_detection` (+ its config), `call.machine.detection.ended` and
`call.machine.greeting.ended`, the voicemail spoken after the beep, a person getting the
conversation, and `detect` hanging up on a machine without a word."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.providers.telnyx.stack import CALLEE, commands, hooks_of, telnyx_stack
from voice_call.models import Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.machine import AnsweringMachine

MESSAGE = "Hi, this is the clinic: please call us back about your appointment."
MACHINE = CalleeScript(outcome="machine", answer_delay_ms=300, greeting_ms=4000)
PERSON = CalleeScript(answer_delay_ms=300, replies=("Hello, Sam here.",), reply_delay_ms=800)


def amd(mode: str) -> dict[str, Any]:
    return {"outbound": {"notifyHangupDelaySec": 0, "amd": {"enabled": True, "mode": mode}}}


async def start(stack: Any, mode: str = "conversation") -> str:
    reply = await stack.call("voicecall.initiate", to=CALLEE, message=MESSAGE, mode=mode)
    return str(reply["callId"])


async def test_a_machine_gets_the_voicemail_after_the_beep(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=MACHINE, **amd("voicemail-drop")) as stack:
        call_id = await start(stack)
        leg = await stack.leg(call_id)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        assert record.metadata["amd"]["answeredBy"] == "machine"
        await asyncio.wait_for(leg.call.ended.wait(), 5)
        machine = leg.call.extra["machine"]
        assert isinstance(machine, AnsweringMachine)
        assert [text for text, _ in machine.started] == [MESSAGE]
        assert machine.offsets()[0] >= 0  # begun after the beep, not into the greeting
        assert leg.call.extra["amd"] == "detect_beep"
        dial_kinds = [h.kind for h in hooks_of(stack.emu, leg.id)]
        assert dial_kinds.index("call.machine.greeting.ended") < dial_kinds.index(
            "call.speak.started"
        )
        assert [c["body"]["payload"] for c in commands(leg, "speak")] == [MESSAGE]


async def test_a_person_gets_the_conversation_as_before(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=PERSON, **amd("voicemail-drop")) as stack:
        call_id = await start(stack)
        record = await stack.wait_user_lines(call_id, 1)
        assert record.metadata["amd"]["answeredBy"] == "human"
        assert [e.text for e in record.transcript if e.speaker == Speaker.BOT] == [MESSAGE]
        await stack.call("voicecall.end", callId=call_id)


async def test_detect_hangs_up_on_a_machine_without_a_word(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=MACHINE, **amd("detect")) as stack:
        call_id = await start(stack)
        leg = await stack.leg(call_id)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        await asyncio.wait_for(leg.call.ended.wait(), 5)
        assert leg.call.extra["machine"].started == [] and not commands(leg, "speak")
        assert leg.call.extra["amd"] == "detect"
        kinds = [h.kind for h in hooks_of(stack.emu, leg.id)]
        assert "call.machine.detection.ended" in kinds
        assert "call.machine.greeting.ended" not in kinds
