"""A call held in Mandarin on Twilio, through its emulator: every <Say> it received speaks
Taiwan Mandarin (Google's cmn-TW voice), every <Gather> listens for zh-TW, and the caller's
Traditional Chinese comes back as said."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.providers.mandarin_support import GREETING, LINES, OVERRIDES, echoes, said_by_caller
from tests.providers.twilio.stack import CALLEE, script, twilio_stack
from tests.support import wait_until
from voice_call.errors import InvalidInput


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


async def test_a_calls_own_zh_tw_beats_an_english_config(tmp_path: Path) -> None:
    overrides = {**OVERRIDES, "language": "en-US"}
    async with twilio_stack(tmp_path, script(replies=LINES[:1]), **overrides) as stack:
        started = await stack.call(
            "voicecall.initiate",
            to=CALLEE,
            message=GREETING,
            mode="conversation",
            language="zh-TW",
        )
        call_id = str(started["callId"])
        record = await stack.wait_record(call_id, lambda r: len(said_by_caller(r)) >= 1)
        sid = str(record.provider_call_id)
        await wait_until(lambda: _heard(stack.emu.calls[sid].callee.heard, 2))
        assert stack.emu.calls[sid].callee.heard[:2] == [GREETING, *echoes(1)]

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


async def test_a_calls_own_language_the_named_voice_cannot_speak_is_refused(
    tmp_path: Path,
) -> None:
    overrides = {**OVERRIDES, "language": "en-US", "twilio": {"voice": "Polly.Joanna"}}
    async with twilio_stack(tmp_path, script(replies=LINES[:1]), **overrides) as stack:
        with pytest.raises(InvalidInput, match="cannot speak zh-TW"):
            await stack.call("voicecall.initiate", to=CALLEE, message=GREETING, language="zh-TW")
        assert not stack.emu.calls and await stack.runtime.store.list_active() == []


async def _heard(items: list[str], count: int) -> bool:
    return len(items) >= count
