"""A call held in Mandarin on Telnyx, through its emulator: every `speak` it received names
Azure's Taiwan voice, every `transcription_start` listens for zh-TW, and the caller's
Traditional Chinese comes back as said."""

from __future__ import annotations

from pathlib import Path

from tests.providers.mandarin_support import GREETING, LINES, OVERRIDES, echoes, said_by_caller
from tests.providers.telnyx.stack import CALLEE, commands, telnyx_stack
from tests.support import wait_until
from voice_call.sim.callee import CalleeScript


async def test_a_zh_tw_conversation_speaks_and_transcribes_taiwan_mandarin(
    tmp_path: Path,
) -> None:
    callee = CalleeScript(replies=LINES[:2])
    async with telnyx_stack(tmp_path, script=callee, **OVERRIDES) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        record = await stack.wait_user_lines(call_id, 2)
        leg = await stack.leg(call_id)
        await wait_until(lambda: _heard(leg.callee.heard, 3))
        assert leg.callee.heard[:3] == [GREETING, *echoes(2)]
        assert said_by_caller(record) == list(LINES[:2])  # unchanged: no simplified conversion

        speaks = [c["body"] for c in commands(leg, "speak")]
        listens = [c["body"] for c in commands(leg, "transcription_start")]
        assert speaks and listens
        assert {(b["voice"], b["language"]) for b in speaks} == {
            ("Azure.zh-TW-HsiaoChenNeural", "cmn-CN")
        }
        assert {b["language"] for b in listens} == {"zh-TW"}
        await stack.call("voicecall.end", callId=call_id)


async def test_a_calls_own_zh_tw_beats_an_english_config(tmp_path: Path) -> None:
    callee = CalleeScript(replies=LINES[:1])
    overrides = {**OVERRIDES, "language": "en-US"}
    async with telnyx_stack(tmp_path, script=callee, **overrides) as stack:
        started = await stack.call(
            "voicecall.initiate",
            to=CALLEE,
            message=GREETING,
            mode="conversation",
            language="zh-TW",
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        leg = await stack.leg(call_id)
        await wait_until(lambda: _heard(leg.callee.heard, 2))
        assert leg.callee.heard[:2] == [GREETING, *echoes(1)]

        speaks = [c["body"] for c in commands(leg, "speak")]
        listens = [c["body"] for c in commands(leg, "transcription_start")]
        assert speaks and listens
        assert {(b["voice"], b["language"]) for b in speaks} == {
            ("Azure.zh-TW-HsiaoChenNeural", "cmn-CN")
        }
        assert {b["language"] for b in listens} == {"zh-TW"}
        await stack.call("voicecall.end", callId=call_id)


async def _heard(items: list[str], count: int) -> bool:
    return len(items) >= count
