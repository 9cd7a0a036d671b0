"""Realtime voice on Twilio, end to end: our server, the Twilio emulator and the fake OpenAI
Realtime conversation socket, all over real loopback sockets.

With `realtime.enabled` a conversation's TwiML is `<Connect><Stream>` to `realtime.streamPath`;
the stream is bridged to the model: the greeting is the model saying our text verbatim, the
callee's words reach the model as audio (the fake pairs each turn with the line the emulator
says the callee spoke) and its answers come back as audio the callee hears.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.providers.streaming_support import said_via_stream
from tests.providers.twilio.stack import (
    ACCOUNT_SID,
    APP_NUMBER,
    AUTH_TOKEN,
    CALLER,
    TwilioStack,
    free_port,
    script,
    serving,
)
from tests.realtime.e2e import (
    ANSWER,
    BARGE,
    GOODBYE,
    GREETING,
    LONG,
    QUESTION,
    both_sides,
    lines,
    media_after,
    model_script,
    realtime_config,
)
from tests.support import StolenTime, merge, wait_until
from voice_call.audio.g711 import FRAME_MS
from voice_call.models import CallState, TurnKind
from voice_call.realtime.bridge import BridgeSettings
from voice_call.sim.common import AppFrame, EmulatedCall
from voice_call.sim.openai import FakeOpenAI
from voice_call.sim.openai.conversation import ConversationScript, Reply, ToolCall
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.voice import synthetic_speech


@dataclass
class Realtime:
    stack: TwilioStack
    fake: FakeOpenAI
    model: ConversationScript

    async def dial(self, message: str = GREETING, *, live: bool = True) -> tuple[str, EmulatedCall]:
        """A conversation, answered; `live`: once its model session is open."""
        call_id = await self.stack.start_call("conversation", message)
        record = await self.stack.wait_state(
            call_id, "answered", "active", "speaking", "listening", timeout=20
        )
        await wait_until(lambda: record.provider_call_id in self.stack.emu.calls)
        if live:
            await wait_until(lambda: connected(self.fake), timeout=20)
        return call_id, self.stack.emulated(record)


@asynccontextmanager
async def realtime_twilio(
    tmp_path: Path,
    replies: Iterable[Reply] | Callable[[str], Reply],
    callee_lines: tuple[str, ...] = (QUESTION,),
    *,
    model: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Realtime]:
    conversation, source = model_script(replies, said_via_stream, **(model or {}))
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    async with (
        FakeOpenAI("sk-test", conversation=conversation) as fake,
        TwilioEmulator(
            ACCOUNT_SID,
            AUTH_TOKEN,
            # real time: the stream's 20 ms clock is the callee's sense of turns
            script=script(replies=callee_lines, answer_delay_ms=20, reply_delay_ms=300),
            voice_url=webhook,
            status_callback=webhook,
            speech=synthetic_speech,
        ) as emu,
    ):
        source.calls = lambda: emu.calls.values()
        config = merge(realtime_config(fake), overrides)
        async with serving(emu, tmp_path, port, config) as stack:
            yield Realtime(stack, fake, conversation)


def frames_in(call: EmulatedCall) -> list[AppFrame]:
    frames: list[AppFrame] = call.extra.get("frames_in", [])
    return frames


async def test_the_greeting_is_heard_and_a_question_gets_an_audio_answer(tmp_path: Path) -> None:
    async with realtime_twilio(tmp_path, [ANSWER]) as rt:
        call_id, call = await rt.dial()
        expected = [("bot", GREETING), ("user", QUESTION), ("bot", ANSWER)]
        record = await rt.stack.wait_record(call_id, lambda r: lines(r) == expected, timeout=20)
        # the stream went to the realtime path, the token in a <Parameter>
        body = rt.stack.hooks("voice", call.id)[0].response_body
        assert "<Connect><Stream" in body and "/voice/stream/realtime" in body
        assert '<Parameter name="token"' in body
        # the callee heard both as stream audio, and the model said the greeting verbatim
        await wait_until(lambda: len(call.callee.heard) >= 2)
        assert all(h.startswith("[audio ") for h in call.callee.heard[:2])
        session = rt.fake.conversations[0]
        assert session.said == [GREETING, ANSWER]
        assert record.metadata["realtime"] == "openai"
        # `status` shows both sides' words, and the answered turn's figures like a streamed one
        status = await rt.stack.call("voicecall.status", callId=call_id, full=True)
        assert both_sides(status["call"]) == {"bot", "user"}
        record = await rt.stack.wait_record(call_id, lambda r: bool(r.latency), timeout=10)
        (turn,) = record.latency
        assert (turn.turn, turn.kind, turn.outcome) == (1, TurnKind.REPLY, "spoken")
        # the caller's last frame → our first: the VAD's 300 ms of silence and the fake's 60 ms
        # first-audio delay are in it, and little else
        assert turn.voice_to_voice_ms is not None and 300 <= turn.voice_to_voice_ms <= 1500
        bridge = rt.stack.runtime.media.get(call_id)
        assert bridge is not None and bridge.voice_to_voice_ms == [turn.voice_to_voice_ms]
        speaking = [e for e in await rt.stack.runtime.store.events(call_id=call_id)
                    if e.type == "call.speaking" and e.data.get("voiceToVoiceMs")]  # fmt: skip
        assert [e.data["voiceToVoiceMs"] for e in speaking] == [turn.voice_to_voice_ms]
        await rt.stack.call("voicecall.end", callId=call_id)
        ended = await rt.stack.wait_ended(call_id)
        assert ended.end_reason == CallState.HANGUP_BOT


async def test_a_barge_in_clears_the_line_within_40_ms_and_the_model_hears_what_played(
    tmp_path: Path,
) -> None:
    async with realtime_twilio(tmp_path, [LONG, ANSWER]) as rt:
        call_id, call = await rt.dial()
        await wait_until(lambda: len(call.callee.heard) >= 1, timeout=20)  # the greeting
        greeting_ms = int(call.callee.heard[0].split()[1])
        # the long answer is playing: 1.1 s of it heard (between two marks), then the callee
        # talks over it
        await wait_until(lambda: len(call.extra["audio_in"]) // 8 - greeting_ms >= 1100, timeout=20)
        stream = call.extra["stream"]
        with StolenTime() as stolen:
            loop = asyncio.get_running_loop()
            await stream.barge_in(BARGE)  # queued: out with the next 20 ms tick
            barged_at = loop.time()
            await wait_until(lambda: any(f.event == "clear" for f in frames_in(call)))
        clear = next(f for f in frames_in(call) if f.event == "clear")
        slack_s = stolen.ms / 1000
        assert clear.at - barged_at <= 0.040 + FRAME_MS / 1000 + slack_s, stolen.ms
        assert not media_after(frames_in(call), clear.at)  # nothing went out after it
        # the model was told how much of its answer the callee heard
        session = rt.fake.conversations[0]
        await wait_until(lambda: session.truncations, what="the truncation")
        played_ms = len(call.extra["audio_in"]) // 8 - greeting_ms
        told = session.truncations[0].audio_end_ms
        assert abs(played_ms - told) <= 2 * FRAME_MS, (told, played_ms)  # not a mark behind
        record = await rt.stack.wait_record(
            call_id, lambda r: any(e.text == BARGE for e in r.transcript), timeout=20
        )
        cut = next(e for e in record.transcript if e.text != LONG and LONG.startswith(e.text))
        assert cut.speaker.value == "bot" and 0 < len(cut.text) < len(LONG)
        # the answer is logged as cut (not final), with what was heard, like a cut reply
        replied = [e for e in await rt.stack.runtime.store.events(call_id=call_id)
                   if e.type == "call.replied"]  # fmt: skip
        assert [(e.data["text"], e.data["isFinal"]) for e in replied] == [(cut.text, False)]
        assert [t.outcome for t in record.latency][:1] == ["interrupted"]
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_a_realtime_call_never_runs_the_ordinary_path(tmp_path: Path) -> None:
    # The echo responder is configured (for consult): on the ordinary path it would answer
    # "You said: …" and our TTS and STT would run on the fake's HTTP and transcription routes.
    async with realtime_twilio(tmp_path, [ANSWER]) as rt:
        call_id, _ = await rt.dial()
        expected = [("bot", GREETING), ("user", QUESTION), ("bot", ANSWER)]
        record = await rt.stack.wait_record(call_id, lambda r: lines(r) == expected, timeout=20)
        assert record.metadata["realtime"] == "openai"
        assert rt.fake.requests == [] and rt.fake.sessions == []  # no TTS, no STT
        session = rt.stack.runtime.media.get(call_id)
        assert type(session).__name__ == "RealtimeSession"
        await rt.stack.call("voicecall.end", callId=call_id)
        record = await rt.stack.wait_ended(call_id)
        assert not [e for e in record.transcript if e.text.startswith("You said")]


async def test_end_call_in_the_goodbye_response_hangs_up_once_the_goodbye_has_played(
    tmp_path: Path,
) -> None:
    # the real model's shape: one response says goodbye, then calls end_call
    async with realtime_twilio(tmp_path, [ToolCall("end_call", say=GOODBYE)]) as rt:
        call_id, call = await rt.dial()
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.HANGUP_BOT
        session = rt.fake.conversations[0]
        (called,) = session.server_events("response.function_call_arguments.done")
        said = session.server_events("response.output_audio.delta")
        assert called["response_id"] == said[-1]["response_id"]  # one response did both
        spoken = len(synthetic_speech(GREETING)) + len(synthetic_speech(GOODBYE))
        assert len(call.extra["audio_in"]) >= spoken - 2 * 160
        assert lines(record)[-1] == ("bot", GOODBYE)


async def test_end_call_hangs_up_once_the_goodbye_has_played(tmp_path: Path) -> None:
    async with realtime_twilio(tmp_path, [GOODBYE, ToolCall("end_call")]) as rt:
        call_id, call = await rt.dial()
        session = rt.fake.conversations[0]
        await wait_until(lambda: GOODBYE in session.said, timeout=20)  # generated, still playing
        bridge = rt.stack.runtime.media.get(call_id)
        assert bridge is not None and bridge.playing
        bridge.model.respond()  # type: ignore[attr-defined]  # its next move: end_call
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.HANGUP_BOT
        assert session.server_events("response.function_call_arguments.done")
        # every frame of the greeting and of the goodbye reached the callee before the hang-up
        spoken = len(synthetic_speech(GREETING)) + len(synthetic_speech(GOODBYE))
        assert len(call.extra["audio_in"]) >= spoken - 2 * 160
        assert lines(record)[-1] == ("bot", GOODBYE)


async def test_consult_answers_through_the_responder(tmp_path: Path) -> None:
    asked = "What are the opening hours on Saturday?"
    consult = ToolCall("consult", {"question": asked}, then=lambda out: json.loads(out)["answer"])
    async with realtime_twilio(tmp_path, [consult]) as rt:
        call_id, _ = await rt.dial()
        heard = f"You said: {asked}"  # the echo responder's answer, spoken by the model
        record = await rt.stack.wait_record(
            call_id, lambda r: ("bot", heard) in lines(r), timeout=20
        )
        outputs = rt.fake.conversations[0].events("conversation.item.create")
        assert json.loads(outputs[0]["item"]["output"]) == {"answer": heard}
        assert ("user", QUESTION) in lines(record)
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_a_model_error_mid_call_is_survived_by_reopening_the_session(
    tmp_path: Path,
) -> None:
    later = "And on Sunday?"
    closed = "No, on Sunday we are closed."
    model = {"fail_after_responses": 2}  # the greeting, the answer, then a server error
    async with realtime_twilio(tmp_path, [ANSWER, closed], (QUESTION, later), model=model) as rt:
        call_id, _ = await rt.dial()
        expected = [
            ("bot", GREETING), ("user", QUESTION), ("bot", ANSWER), ("user", later),
            ("bot", closed),
        ]  # fmt: skip
        record = await rt.stack.wait_record(call_id, lambda r: lines(r) == expected, timeout=30)
        assert not record.terminal
        first, second = rt.fake.conversations
        assert first.server_events("error")
        # the reopened session was given the conversation heard so far (the answer was
        # still playing when the session dropped)
        replayed = [e["item"] for e in second.events("conversation.item.create")]
        texts = [
            part.get("text") or part.get("transcript") for i in replayed for part in i["content"]
        ]
        assert texts[:3] == [GREETING, QUESTION, ANSWER]
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_a_model_lost_for_good_ends_the_call_with_an_apology_and_the_reason(
    tmp_path: Path,
) -> None:
    async with realtime_twilio(tmp_path, [ANSWER], model={"fail_after_responses": 2}) as rt:
        call_id, call = await rt.dial()
        rt.fake.api_key = "sk-revoked"  # connected already: only the reopen is refused
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.ERROR
        error = record.metadata["error"]
        assert "connection lost (close 1011)" in error and "reopening it failed" in error
        # the apology went out in Twilio's own voice, and was heard to its end before the hang-up
        said = [f.get("Twiml", "") for f in rt.stack.updates(call.id)]
        assert any("<Say" in twiml and "Sorry" in twiml for twiml in said), said
        assert BridgeSettings().apology_text in call.callee.heard, call.callee.heard


async def test_the_callers_last_words_are_kept_when_the_model_ends_the_call_first(
    tmp_path: Path,
) -> None:
    # The model answers "Bye!" with end_call at once; the transcription of "Bye!" (slow here)
    # comes after: the call ends only once it is on the record.
    model = {"first_delta_ms": 600}
    replies = [ANSWER, ToolCall("end_call")]
    async with realtime_twilio(tmp_path, replies, (QUESTION, "Bye!"), model=model) as rt:
        call_id, _ = await rt.dial()
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.HANGUP_BOT
        assert lines(record)[-1] == ("user", "Bye!")


def connected(fake: FakeOpenAI) -> bool:
    return bool(fake.conversations and fake.conversations[0].server_events("session.updated"))


async def test_a_model_that_refuses_the_call_ends_it_with_an_apology_and_the_reason(
    tmp_path: Path,
) -> None:
    async with realtime_twilio(tmp_path, [ANSWER]) as rt:
        rt.fake.api_key = "sk-other"  # our key is refused when the call's session opens
        call_id, call = await rt.dial(live=False)
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.ERROR
        assert "Incorrect API key" in record.metadata["error"]
        said = [f.get("Twiml", "") for f in rt.stack.updates(call.id)]
        assert any("<Say" in twiml for twiml in said), said


async def test_an_inbound_call_is_answered_by_the_model(tmp_path: Path) -> None:
    welcome = "Thanks for calling the clinic."
    routes = {APP_NUMBER: {"inboundGreeting": welcome}}
    async with realtime_twilio(tmp_path, [ANSWER], inboundPolicy="open", numbers=routes) as rt:
        call = await rt.stack.emu.place_inbound(CALLER, APP_NUMBER)
        await wait_until(lambda: _registered(rt.stack, call.id), timeout=20)
        found = await rt.stack.by_sid(call.id)
        assert found is not None
        expected = [("bot", welcome), ("user", QUESTION), ("bot", ANSWER)]
        record = await rt.stack.wait_record(
            found.call_id, lambda r: lines(r) == expected, timeout=20
        )
        assert record.metadata["realtime"] == "openai"
        assert "/voice/stream/realtime" in rt.stack.hooks("redirect", call.id)[0].response_body
        await rt.stack.call("voicecall.end", callId=record.call_id)
        await rt.stack.wait_ended(record.call_id)


async def _registered(stack: TwilioStack, sid: str) -> bool:
    return await stack.by_sid(sid) is not None
