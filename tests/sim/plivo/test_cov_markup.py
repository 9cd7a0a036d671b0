"""The Plivo emulator's XML runner, the verbs and errors test_lifecycle.py leaves out: Play,
scheduled Hangup, unsupported verbs, empty/oversized/unparsable replies, GetInput edge cases."""

from __future__ import annotations

from tests.sim.plivo.app import FakeApp, running, sdk_call
from voice_call.sim.callee import CalleeScript
from voice_call.sim.plivo.markup import MAX_XML_BYTES


async def test_play_is_heard_as_a_marker_once_per_loop() -> None:
    app = FakeApp()
    app.replies["/answer"] = (
        "<Response><Play loop='2'> https://cdn.example/hold.mp3 </Play>"
        "<Play loop='often'>https://cdn.example/once.mp3</Play><Hangup/></Response>"
    )
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    # a loop that is not a number is read as the default, 1
    assert call.callee.heard == ["[play https://cdn.example/hold.mp3]"] * 2 + [
        "[play https://cdn.example/once.mp3]"
    ]
    assert app.of("/hangup")[0].params["HangupCauseCode"] == "4000"


async def test_the_callee_may_hang_up_after_a_play() -> None:
    app = FakeApp(
        replies={"/answer": "<Response><Play>https://x/a.mp3</Play><Speak>no</Speak></Response>"}
    )
    async with running(app, script=CalleeScript(hangup_after_turns=0)) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert call.callee.heard == ["[play https://x/a.mp3]"]
    assert call.callee.hung_up
    assert app.of("/hangup")[0].params["HangupSource"] == "Callee"


async def test_an_unsupported_verb_is_recorded_and_skipped() -> None:
    xml = "<Response><Record/><Speak>hi</Speak><Conference>room</Conference></Response>"
    app = FakeApp(replies={"/answer": xml})
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert call.extra["unsupported"] == ["Record", "Conference"]
    assert call.callee.heard == ["hi"]
    assert app.of("/hangup")[0].params["HangupCauseCode"] == "4010"  # end of the XML


async def test_an_empty_reply_ends_the_call_as_the_end_of_the_xml() -> None:
    app = FakeApp(replies={"/answer": "  \n"})
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert "xml_errors" not in call.extra
    assert app.of("/hangup")[0].params["HangupCauseCode"] == "4010"


async def test_oversized_and_unparsable_replies_end_the_call_as_invalid_xml() -> None:
    big = "<Response><Speak>" + "a" * MAX_XML_BYTES + "</Speak></Response>"
    for reply, why in ((big, "larger than 100 KB"), ("<Response><Speak>", "unparsable XML")):
        app = FakeApp(replies={"/answer": reply})
        async with running(app) as emu:
            call = await emu.wait_ended(await sdk_call(emu, app))
        assert any(why in error for error in call.extra["xml_errors"]), call.extra
        assert call.callee.heard == []
        hangup = app.of("/hangup")[0].params
        assert (hangup["HangupCauseCode"], hangup["HangupSource"]) == ("7011", "Error")


async def test_a_scheduled_hangup_ends_the_call_while_the_xml_goes_on() -> None:
    app = FakeApp(
        replies={"/answer": "<Response><Hangup schedule='2'/><Wait length='600'/></Response>"}
    )
    async with running(app) as emu:
        await emu.wait_ended(await sdk_call(emu, app))
    hangup = app.of("/hangup")[0].params
    assert (hangup["HangupCauseCode"], hangup["HangupSource"]) == ("4000", "Answer XML")
    assert int(hangup["Duration"]) < 600  # not after the Wait


async def test_get_input_without_action_is_invalid_xml() -> None:
    app = FakeApp(
        replies={"/answer": "<Response><GetInput><Speak>hm</Speak></GetInput></Response>"}
    )
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert call.extra["xml_errors"] == ["GetInput without action"]
    assert call.callee.heard == []


async def test_get_input_plays_its_prompt_and_times_out_without_scripted_keys() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/keys")}" inputType="dtmf" '
        'executionTimeout="2"><Play>https://x/menu.mp3</Play></GetInput>'
        "<Speak>Nothing pressed</Speak></Response>"
    )
    async with running(app) as emu:  # no dtmf_replies: the callee presses nothing
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert app.of("/keys") == []
    assert call.callee.heard == ["[play https://x/menu.mp3]", "Nothing pressed"]


async def test_finish_on_key_none_keeps_every_key_pressed() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/keys")}" inputType="dtmf" '
        'finishOnKey="none"><Speak>Enter</Speak></GetInput></Response>'
    )
    async with running(app, dtmf_replies=("12#34",)) as emu:
        await emu.wait_ended(await sdk_call(emu, app))
    assert app.of("/keys")[0].params["Digits"] == "12#34"
