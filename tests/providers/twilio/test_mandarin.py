"""A call held in Mandarin on Twilio, through its emulator: every <Say> it received speaks
Taiwan Mandarin (Google's cmn-TW voice), every <Gather> listens for zh-TW, and the caller's
Traditional Chinese comes back as said."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.providers.mandarin_support import GREETING, LINES, OVERRIDES, echoes, said_by_caller
from tests.providers.twilio.stack import script, twilio_stack
from tests.support import wait_until


async def test_a_zh_tw_conversation_says_and_listens_in_taiwan_mandarin(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, script(replies=LINES[:2]), **OVERRIDES) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(call_id, lambda r: len(said_by_caller(r)) >= 2)
        sid = record.provider_call_id
        await wait_until(lambda: _heard(stack.emu.calls[str(sid)].callee.heard, 3))
        assert stack.emu.calls[str(sid)].callee.heard[:3] == [GREETING, *echoes(2)]
        assert said_by_caller(record) == list(LINES[:2])  # unchanged: no simplified conversion

        documents = [h.response_body for h in stack.emu.webhooks if h.response_body]
        documents += [f["Twiml"] for f in stack.updates(sid) if "Twiml" in f]
        says = [el for doc in documents for el in ET.fromstring(doc).iter("Say")]
        gathers = [el for doc in documents for el in ET.fromstring(doc).iter("Gather")]
        assert says and gathers
        assert {(el.get("voice"), el.get("language")) for el in says} == {
            ("Google.cmn-TW-Standard-A", "cmn-TW")
        }
        assert {el.get("language") for el in gathers} == {"zh-TW"}
        await stack.call("voicecall.end", callId=call_id)


async def _heard(items: list[str], count: int) -> bool:
    return len(items) >= count
