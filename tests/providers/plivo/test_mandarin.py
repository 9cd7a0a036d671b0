"""A call held in Mandarin on Plivo, through its emulator: every <Speak> it received speaks
Mandarin (Polly's Zhiyu, cmn-CN), every <GetInput> listens for zh-TW, and the caller's
Traditional Chinese comes back as said."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.providers.mandarin_support import GREETING, LINES, OVERRIDES, echoes, said_by_caller
from tests.providers.plivo.stack import CALLEE, plivo_stack
from tests.support import wait_until
from voice_call.sim.callee import CalleeScript


async def test_a_zh_tw_conversation_speaks_and_listens_in_mandarin(tmp_path: Path) -> None:
    callee = CalleeScript(answer_delay_ms=300, replies=LINES[:2], reply_delay_ms=300)
    async with plivo_stack(tmp_path, callee, config=OVERRIDES) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 2)
        record = await stack.wait_record(call_id, lambda r: len(said_by_caller(r)) >= 2)
        carrier = stack.carrier_call(record)
        await wait_until(lambda: _heard(carrier.callee.heard, 3))
        assert carrier.callee.heard[:3] == [GREETING, *echoes(2)]
        assert said_by_caller(record) == list(LINES[:2])  # unchanged: no simplified conversion

        documents = [h.response_body for h in stack.hooks() if h.response_body]
        roots = [ET.fromstring(doc) for doc in documents if doc.lstrip().startswith("<")]
        speaks = [el for root in roots for el in root.iter("Speak")]
        inputs = [el for root in roots for el in root.iter("GetInput")]
        assert speaks and inputs
        assert {(el.get("voice"), el.get("language")) for el in speaks} == {
            ("Polly.Zhiyu", "cmn-CN")
        }
        assert {el.get("language") for el in inputs} == {"zh-TW"}
        await stack.call("voicecall.end", callId=call_id)


async def _heard(items: list[str], count: int) -> bool:
    return len(items) >= count
