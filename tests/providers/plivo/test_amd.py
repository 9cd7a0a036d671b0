"""Answering-machine detection on Plivo, end to end against the emulator: the Call API's
`machine_detection` / `machine_detection_time` / `machine_detection_url`, `Machine=true`, the
voicemail left by an XML that waits for the beep (`<Wait beep="true">`), a person getting the
conversation once the detection window passed, and `detect` hanging up on a machine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.providers.plivo.stack import CALLEE, plivo_stack
from voice_call.models import Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.machine import AnsweringMachine

MESSAGE = "Hi, this is the clinic: please call us back about your appointment."
# the machine is known after 3 s (machine_detection_time); its greeting runs to 6 s
MACHINE = CalleeScript(outcome="machine", answer_delay_ms=300, greeting_ms=6000)
PERSON = CalleeScript(answer_delay_ms=300, replies=("Hello, Sam here.",), reply_delay_ms=300)


def amd(mode: str) -> dict[str, Any]:
    settings = {"enabled": True, "mode": mode, "timeoutMs": 3000}
    return {"outbound": {"notifyHangupDelaySec": 0, "amd": settings}}


async def start(stack: Any) -> str:
    reply = await stack.call("voicecall.initiate", to=CALLEE, message=MESSAGE, mode="conversation")
    return str(reply["callId"])


async def test_a_machine_gets_the_voicemail_after_the_beep(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, MACHINE, config=amd("voicemail-drop")) as stack:
        call_id = await start(stack)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        assert record.metadata["amd"]["answeredBy"] == "machine"
        leg = stack.leg(record)
        await asyncio.wait_for(leg.call.ended.wait(), 5)
        machine = leg.call.extra["machine"]
        assert isinstance(machine, AnsweringMachine)
        # detected at 3 s, said only after the beep at 6 s
        assert [text for text, _ in machine.started] == [MESSAGE]
        assert machine.offsets()[0] >= 0
        assert (leg.machine_detection, leg.machine_detection_time_ms) == ("true", 3000)
        (verdict,) = stack.hooks("machine", leg.call.id)
        assert verdict.params["Machine"] == "true"


async def test_a_person_gets_the_conversation_as_before(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, PERSON, config=amd("voicemail-drop")) as stack:
        call_id = await start(stack)
        await stack.wait_user_lines(call_id, 1)
        record = await stack.wait_record(call_id, lambda r: bool(r.transcript))
        assert record.metadata["amd"]["answeredBy"] == "human"
        assert [e.text for e in record.transcript if e.speaker == Speaker.BOT] == [MESSAGE]
        assert not stack.hooks("machine")
        await stack.call("voicecall.end", callId=call_id)


async def test_detect_hangs_up_on_a_machine_without_a_word(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, MACHINE, config=amd("detect")) as stack:
        call_id = await start(stack)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "voicemail"
        leg = stack.leg(record)
        await asyncio.wait_for(leg.call.ended.wait(), 5)
        assert leg.call.extra["machine"].started == [] and leg.call.callee.heard == []
