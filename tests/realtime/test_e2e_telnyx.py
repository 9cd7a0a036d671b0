"""Realtime voice on Telnyx, end to end: our server, the Telnyx emulator and the fake OpenAI
Realtime conversation socket, all over real loopback sockets.

With `realtime.enabled` the Dial carries `stream_url` on `realtime.streamPath` (the call's token
in its query) and bidirectional RTP/PCMU; the stream is bridged to the model, and no Telnyx
`speak` or `transcription_start` is sent while the model is on the line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.providers.telnyx.stack import CALLEE, TelnyxStack, commands, telnyx_stack
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
from tests.support import StolenTime, wait_until
from voice_call.audio.g711 import FRAME_MS
from voice_call.models import CallState
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import AppFrame
from voice_call.sim.openai import FakeOpenAI
from voice_call.sim.openai.conversation import ConversationScript, Reply, ToolCall
from voice_call.sim.telnyx.call import TelnyxCall
from voice_call.sim.voice import synthetic_speech

NATIVE = ("speak", "transcription_start", "transcription_stop")


@dataclass
class Realtime:
    stack: TelnyxStack
    fake: FakeOpenAI
    model: ConversationScript

    async def dial(self, message: str = GREETING) -> tuple[str, TelnyxCall]:
        started = await self.stack.call(
            "voicecall.initiate", to=CALLEE, message=message, mode="conversation"
        )
        call_id = str(started["callId"])
        leg = await self.stack.leg(call_id)
        await wait_until(lambda: connected(self.fake), timeout=20)
        return call_id, leg


def connected(fake: FakeOpenAI) -> bool:
    return bool(fake.conversations and fake.conversations[0].server_events("session.updated"))


@asynccontextmanager
async def realtime_telnyx(
    tmp_path: Path,
    replies: Iterable[Reply] | Callable[[str], Reply],
    callee_lines: tuple[str, ...] = (QUESTION,),
    *,
    model: dict[str, Any] | None = None,
) -> AsyncIterator[Realtime]:
    conversation, source = model_script(replies, lambda call: call.callee.said, **(model or {}))
    # real time: the stream's 20 ms clock is the callee's sense of turns
    script = CalleeScript(replies=callee_lines, answer_delay_ms=20, reply_delay_ms=300)
    async with (
        FakeOpenAI("sk-test", conversation=conversation) as fake,
        telnyx_stack(tmp_path, script=script, time_scale=1.0, **realtime_config(fake)) as stack,
    ):
        source.calls = lambda: stack.emu.calls.values()
        yield Realtime(stack, fake, conversation)


def frames_in(leg: TelnyxCall) -> list[AppFrame]:
    frames: list[AppFrame] = leg.call.extra["frames_in"]
    return frames


async def test_the_greeting_is_heard_and_a_question_gets_an_audio_answer(tmp_path: Path) -> None:
    async with realtime_telnyx(tmp_path, [ANSWER]) as rt:
        call_id, leg = await rt.dial()
        expected = [("bot", GREETING), ("user", QUESTION), ("bot", ANSWER)]
        record = await rt.stack.wait_record(call_id, lambda r: lines(r) == expected, timeout=20)
        # the Dial put the call's audio on the realtime path
        assert leg.stream_on_answer is not None
        assert urlsplit(leg.stream_on_answer.url).path == "/voice/stream/realtime"
        await wait_until(lambda: len(leg.callee.heard) >= 2)
        assert all(h.startswith("[audio ") for h in leg.callee.heard[:2])
        assert rt.fake.conversations[0].said == [GREETING, ANSWER]
        assert not [c for c in commands(leg) if c["action"] in NATIVE]
        assert record.metadata["realtime"] == "openai"
        assert rt.fake.requests == [] and rt.fake.sessions == []  # no TTS, no STT
        status = await rt.stack.call("voicecall.status", callId=call_id, full=True)
        assert both_sides(status["call"]) == {"bot", "user"}
        await rt.stack.call("voicecall.end", callId=call_id)
        ended = await rt.stack.wait_ended(call_id)
        assert ended.end_reason == CallState.HANGUP_BOT


async def test_a_barge_in_clears_the_line_within_40_ms_and_the_model_hears_what_played(
    tmp_path: Path,
) -> None:
    async with realtime_telnyx(tmp_path, [LONG, ANSWER]) as rt:
        call_id, leg = await rt.dial()
        await wait_until(lambda: len(leg.callee.heard) >= 1, timeout=20)  # the greeting
        greeting_ms = int(leg.callee.heard[0].split()[1])
        audio_in: bytearray = leg.call.extra["audio_in"]
        await wait_until(lambda: len(audio_in) // 8 - greeting_ms >= 1100, timeout=20)
        stream = leg.stream
        assert stream is not None
        rt.model.say(BARGE)  # what the callee's words are heard as
        audio = await asyncio.to_thread(synthetic_speech, BARGE)
        with StolenTime() as stolen:
            loop = asyncio.get_running_loop()
            barged_at = loop.time()
            talking = asyncio.create_task(stream.speak(audio))  # over the long answer
            await wait_until(lambda: any(f.event == "clear" for f in frames_in(leg)))
        clear = next(f for f in frames_in(leg) if f.event == "clear")
        slack_s = stolen.ms / 1000
        assert clear.at - barged_at <= 0.040 + FRAME_MS / 1000 + slack_s, stolen.ms
        assert not media_after(frames_in(leg), clear.at)
        session = rt.fake.conversations[0]
        await wait_until(lambda: session.truncations, what="the truncation")
        played_ms = len(audio_in) // 8 - greeting_ms
        told = session.truncations[0].audio_end_ms
        assert abs(played_ms - told) <= 2 * FRAME_MS, (told, played_ms)  # not a mark behind
        await talking
        record = await rt.stack.wait_record(
            call_id, lambda r: ("user", BARGE) in lines(r), timeout=20
        )
        cut = next(e for e in record.transcript if e.text != LONG and LONG.startswith(e.text))
        assert cut.speaker.value == "bot" and 0 < len(cut.text) < len(LONG)
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_end_call_hangs_up_once_the_goodbye_has_played(tmp_path: Path) -> None:
    async with realtime_telnyx(tmp_path, [GOODBYE, ToolCall("end_call")]) as rt:
        call_id, leg = await rt.dial()
        session = rt.fake.conversations[0]
        await wait_until(lambda: GOODBYE in session.said, timeout=20)  # generated, still playing
        bridge = rt.stack.runtime.media.get(call_id)
        assert bridge is not None and bridge.playing
        bridge.model.respond()  # type: ignore[attr-defined]  # its next move: end_call
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.HANGUP_BOT
        spoken = len(synthetic_speech(GREETING)) + len(synthetic_speech(GOODBYE))
        assert len(leg.call.extra["audio_in"]) >= spoken - 2 * 160
        assert lines(record)[-1] == ("bot", GOODBYE)
        assert commands(leg, "hangup")


async def test_consult_answers_through_the_responder(tmp_path: Path) -> None:
    asked = "What are the opening hours on Saturday?"
    consult = ToolCall("consult", {"question": asked}, then=lambda out: json.loads(out)["answer"])
    async with realtime_telnyx(tmp_path, [consult]) as rt:
        call_id, _ = await rt.dial()
        heard = f"You said: {asked}"
        await rt.stack.wait_record(call_id, lambda r: ("bot", heard) in lines(r), timeout=20)
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_a_model_error_mid_call_is_survived_by_reopening_the_session(
    tmp_path: Path,
) -> None:
    later, closed = "And on Sunday?", "No, on Sunday we are closed."
    model = {"fail_after_responses": 2}
    async with realtime_telnyx(tmp_path, [ANSWER, closed], (QUESTION, later), model=model) as rt:
        call_id, _ = await rt.dial()
        record = await rt.stack.wait_record(
            call_id, lambda r: lines(r)[-2:] == [("user", later), ("bot", closed)], timeout=30
        )
        assert not record.terminal and len(rt.fake.conversations) == 2
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)
