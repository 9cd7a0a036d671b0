"""How a bridged call ends: the model leaving, a dead line, idleness, a lost model session."""

from __future__ import annotations

import asyncio

from tests.realtime.scripted import BridgeHarness, tone
from tests.support import wait_until
from voice_call.media.playback import PlaybackStatus
from voice_call.media.stream_protocols import Media
from voice_call.models import CallState, EventType
from voice_call.realtime import bridge
from voice_call.realtime.bridge import BridgeSettings

FRAME = b"\xff" * 160


async def test_the_model_ending_its_session_ends_the_call_after_its_last_words() -> None:
    h = await BridgeHarness().start()
    h.model.reply(tone(5), "That's all, bye.", done=False)
    h.model.to.on_closed("session expired")
    h.ack(await h.wait_end_mark())
    await wait_until(lambda: h.control.ended)
    await h.close()
    assert h.control.ended == [CallState.HANGUP_BOT]


async def test_end_call_waits_for_the_callers_last_words_still_being_transcribed() -> None:
    h = await BridgeHarness().start()
    h.model.transcript_pending = True  # the caller's "Bye!" was committed, not transcribed yet
    h.model.to.on_tool_call("call_1", "end_call", {})
    await asyncio.sleep(0.2)
    assert h.control.ended == []  # the call is still up: the record takes the words
    h.model.transcript_pending = False
    h.model.to.on_input_transcript("Bye!", True)
    await wait_until(lambda: h.control.ended)
    await h.close()
    finals = [e.transcript for e in h.of(EventType.SPEECH) if e.is_final]
    assert finals == ["Bye!"] and h.control.ended == [CallState.HANGUP_BOT]


async def test_the_callers_last_words_arriving_while_the_stream_closes_are_delivered() -> None:
    h = await BridgeHarness().start()
    h.model.transcript_pending = True
    closing = asyncio.create_task(h.close())
    await asyncio.sleep(0.1)
    assert not closing.done() and h.model.listener is h.session  # still listening
    h.model.transcript_pending = False
    h.session.on_input_transcript("Bye!", True)
    await asyncio.wait_for(closing, 1)
    assert [e.transcript for e in h.of(EventType.SPEECH) if e.is_final] == ["Bye!"]


async def test_words_that_never_come_hold_the_end_only_briefly() -> None:
    h = await BridgeHarness().start()
    h.model.transcript_pending = True  # and it never clears
    loop = asyncio.get_running_loop()
    began = loop.time()
    h.model.to.on_tool_call("call_1", "end_call", {})
    await wait_until(lambda: h.control.ended)
    assert loop.time() - began <= bridge.LAST_WORDS_WAIT_S + 0.5
    await h.close()


async def test_a_dead_line_ends_the_call_after_the_timeout_and_the_grace() -> None:
    h = BridgeHarness(BridgeSettings(silence_timeout_s=0.3, grace_s=0.2))
    await h.start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    quiet_from = began
    while quiet_from - began < 0.8:  # a live line: media every 20 ms keeps the call up
        h.session.handle(Media(FRAME))
        quiet_from = loop.time()
        await asyncio.sleep(0.02)
    assert h.control.ended == []
    await wait_until(lambda: h.control.ended)
    await h.close()
    assert h.control.ended == [CallState.TIMEOUT]
    assert loop.time() - quiet_from >= 0.5 - 0.002  # the timeout, then the grace


async def test_media_back_within_the_grace_keeps_the_call() -> None:
    h = BridgeHarness(BridgeSettings(silence_timeout_s=0.1, grace_s=0.5))
    await h.start()
    await wait_until(lambda: "silence" in h.session._timers and h.session._timers["silence"]
                     .when() - asyncio.get_running_loop().time() > 0.3)  # fmt: skip
    h.session.handle(Media(FRAME))  # the line came back during the grace
    back = asyncio.get_running_loop().time()
    await wait_until(lambda: h.control.ended, timeout=5)
    await h.close()
    # ended only after a whole new timeout and grace counted from that frame
    assert asyncio.get_running_loop().time() - back >= 0.6 - 0.002
    assert h.control.ended == [CallState.TIMEOUT] and h.session.inbound_frames == 1


async def test_nobody_speaking_for_the_idle_time_hangs_up() -> None:
    h = await BridgeHarness(BridgeSettings(idle_hangup_s=0.2)).start()
    h.session.handle(Media(FRAME))  # media alone is not speech
    await wait_until(lambda: h.control.ended)
    await h.close()
    assert h.control.ended == [CallState.HANGUP_BOT]


async def test_a_dropped_session_reopens_once_with_the_conversation_then_apologises() -> None:
    h = await BridgeHarness(BridgeSettings(apology_text="Sorry, goodbye.")).start()
    h.model.to.on_input_transcript("what time is it", False)
    h.model.to.on_input_transcript("What time is it?", True)
    h.model.reply(tone(5), "It is noon.")
    h.ack(await h.wait_end_mark())
    await wait_until(
        lambda: h.session.history == (("user", "What time is it?"), ("bot", "It is noon."))
    )
    waiting = h.session.speak("Said by a command.")
    h.model.drop("socket closed (1006)")
    await wait_until(lambda: len(h.model.setups) == 2)
    assert h.model.setups[1].history == (("user", "What time is it?"), ("bot", "It is noon."))
    assert h.model.setups[1].instructions == "Be brief."
    lost = await asyncio.wait_for(waiting, 1)
    assert lost.status is PlaybackStatus.FAILED and not lost.audio_sent  # native voice may say it
    assert h.control.apologies == [] and h.control.ended == []
    h.model.drop("socket closed again")
    await wait_until(lambda: h.control.apologies)
    await h.close()
    assert h.control.apologies == [("Sorry, goodbye.", "socket closed again")]
    assert len(h.model.setups) == 2  # once only


async def test_a_session_that_cannot_be_reopened_ends_with_the_apology() -> None:
    h = await BridgeHarness().start()
    h.model.connect_failures = 1
    h.model.drop("server error")
    await wait_until(lambda: h.control.apologies)
    await h.close()
    [(apology, error)] = h.control.apologies
    assert apology == BridgeSettings().apology_text
    assert error == "server error; reopening it failed: the model service refused the session"


async def test_what_a_dropped_session_had_sent_still_plays() -> None:
    h = await BridgeHarness().start()
    h.model.reply(tone(7), "Half of a", done=False)
    h.model.drop()
    end = await h.wait_end_mark()
    await wait_until(lambda: len(h.model.setups) == 2)
    await h.close()
    assert end == "r1.7.end" and len(h.wire.of("media")) == 7
