"""The realtime model's tools through the bridge, and the session's instructions."""

from __future__ import annotations

import asyncio

import pytest

from tests.realtime.scripted import BridgeHarness, tone
from tests.support import wait_until
from voice_call.models import CallState
from voice_call.realtime.bridge import BridgeSettings
from voice_call.realtime.instructions import PHONE_PROMPT, build_instructions
from voice_call.realtime.model import RealtimeError, ToolSpec
from voice_call.realtime.tools import tool_specs

LOOKUP = ToolSpec("lookup_order", "Find an order.", {"type": "object", "properties": {}})


async def test_end_call_waits_for_the_goodbye_to_be_heard() -> None:
    h = await BridgeHarness().start()
    acked_at_end: list[bool] = []
    h.control.on_end = lambda: acked_at_end.append(not h.session.playing)
    h.model.reply(tone(25), "Thanks for calling, goodbye!", done=False)
    h.model.to.on_tool_call("c1", "end_call", {})  # while the goodbye is still coming
    h.model.reply(tone(5, first=25))
    end = await h.wait_end_mark()
    assert h.control.ended == []  # every frame sent, but not heard yet
    h.ack(end)
    await wait_until(lambda: h.control.ended)
    await h.close()
    assert h.control.ended == [CallState.HANGUP_BOT] and acked_at_end == [True]
    assert h.model.results == []  # a call that ended needs no answer


async def test_end_call_that_fails_goes_back_to_the_model_as_an_error() -> None:
    h = await BridgeHarness(fail={"end_call": "the carrier refused the hang-up"}).start()
    h.model.to.on_tool_call("c1", "end_call", {})
    await wait_until(lambda: h.model.results)
    h.model.to.on_tool_call("c2", "end_call", {})  # it may try again
    await wait_until(lambda: len(h.model.results) == 2)
    await h.close()
    assert h.model.results[0] == ("c1", "end_call", None, "the carrier refused the hang-up")


async def test_a_quick_consult_answers_without_a_filler() -> None:
    h = await BridgeHarness(BridgeSettings(consult_filler_s=5)).start()
    h.model.to.on_tool_call("c1", "consult", {"question": "opening hours"})
    await wait_until(lambda: h.model.results)
    await h.close()
    assert h.model.results == [("c1", "consult", {"answer": "the answer to opening hours"}, None)]
    assert h.model.said == [] and h.control.consults == ["opening hours"]


async def test_a_slow_consult_gets_one_filler_line_then_its_answer() -> None:
    settings = BridgeSettings(consult_filler_s=0.05, filler_text="Let me check.")
    h = await BridgeHarness(settings, consult_delay_s=0.4).start()
    speak = h.session.speak("Queued by a command.")
    h.model.to.on_tool_call("c1", "consult", {"question": "is it raining"})
    await wait_until(lambda: h.model.said == ["Queued by a command.", "Let me check."])
    assert h.model.results == []
    await wait_until(lambda: h.model.results)
    assert h.model.said == ["Queued by a command.", "Let me check."]  # one filler only
    assert h.model.results == [("c1", "consult", {"answer": "the answer to is it raining"}, None)]
    # the filler's own response does not take the place of the command's text
    h.model.reply(tone(3), "Queued by a command.")
    h.model.reply(tone(3), "Let me check.")
    h.ack(await h.wait_end_mark())
    result = await asyncio.wait_for(speak, 1)
    await h.close()
    assert result.text == "Queued by a command." and result.audio_ms == 60


async def test_consult_is_off_with_tool_policy_none() -> None:
    h = await BridgeHarness(BridgeSettings(tool_policy="none")).start()
    assert "consult" not in [spec.name for spec in h.session.tools.specs]
    h.model.to.on_tool_call("c1", "consult", {"question": "anything"})
    await wait_until(lambda: h.model.results)
    await h.close()
    assert h.model.results == [("c1", "consult", None, 'there is no tool named "consult"')]


async def test_custom_tools_go_to_the_hook_and_failures_go_back_as_errors() -> None:
    h = await BridgeHarness(
        BridgeSettings(tools=(LOOKUP, ToolSpec("broken", "Fails."))),
        fail={"broken": "hook answered 500"},
    ).start()
    h.model.to.on_tool_call("c1", "lookup_order", {"order": "A17"})
    h.model.to.on_tool_call("c2", "broken", {})
    h.model.to.on_tool_call("c3", "nonexistent", {})
    h.model.to.on_tool_call("c4", "send_dtmf", {"digits": "12#"})
    h.model.to.on_tool_call("c5", "send_dtmf", {"digits": "call me"})
    await wait_until(lambda: len(h.model.results) == 5)
    await h.close()
    by_id = {r[0]: r[2:] for r in h.model.results}
    assert by_id["c1"] == ({"ok": True, "name": "lookup_order"}, None)
    assert h.control.hooks == [("lookup_order", {"order": "A17"})]
    assert by_id["c2"] == (None, "hook answered 500")
    assert by_id["c3"] == (None, 'there is no tool named "nonexistent"')
    assert by_id["c4"] == ({"sent": "12#"}, None) and h.control.dtmf == ["12#"]
    assert by_id["c5"] == (None, "digits must be 1-64 of 0-9, *, #, A-D or w")


async def test_a_tool_that_takes_too_long_is_an_error() -> None:
    settings = BridgeSettings(tool_timeout_s=0.05, consult_filler_s=5)
    h = await BridgeHarness(settings, consult_delay_s=1).start()
    h.model.to.on_tool_call("c1", "consult", {"question": "slow"})
    await wait_until(lambda: h.model.results)
    await h.close()
    assert h.model.results == [("c1", "consult", None, "consult took longer than 0.05 s")]


def test_tool_specs_offer_the_built_ins_then_the_custom_tools() -> None:
    names = [spec.name for spec in tool_specs("safe-read-only", [LOOKUP])]
    assert names == ["end_call", "send_dtmf", "consult", "lookup_order"]
    assert [spec.name for spec in tool_specs("none")] == ["end_call", "send_dtmf"]
    with pytest.raises(RealtimeError, match='"end_call" is a built-in tool'):
        tool_specs("owner", [ToolSpec("end_call", "mine")])


def test_instructions_pick_the_persona_and_add_the_phone_rules() -> None:
    own = build_instructions(instructions="You are Ada.", system_prompt="You are Bob.")
    assert own.startswith("You are Ada.") and "You are Bob." not in own
    assert build_instructions(system_prompt="You are Bob.").startswith("You are Bob.")
    default = build_instructions(consult=False)
    assert default.startswith(PHONE_PROMPT) and "consult" not in default
    assert "end_call" in default and "goodbye" in default
    assert "brief" in default
    assert "simple things yourself" in build_instructions(consult_policy="auto")
    assert "every substantive question" in build_instructions(consult_policy="substantive")
    assert "before you answer anything" in build_instructions(consult_policy="always")
