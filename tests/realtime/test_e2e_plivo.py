"""Realtime voice on Plivo, end to end: our server, the Plivo emulator and the fake OpenAI
Realtime conversation socket, all over real loopback sockets.

With `realtime.enabled` a conversation's answer XML is a bidirectional `<Stream>` to
`realtime.streamPath` (its token in the URL); the stream is bridged to the model. The emulator
runs in real time: its 20 ms ticks are the callee's sense of turns.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.providers.plivo.stack import CALLEE, PlivoStack, plivo_stack
from tests.providers.streaming_support import said_via_stream
from tests.realtime.e2e import (
    ANSWER,
    GOODBYE,
    GREETING,
    LONG,
    QUESTION,
    both_sides,
    lines,
    model_script,
    realtime_config,
)
from tests.support import wait_until
from voice_call.audio.g711 import FRAME_MS
from voice_call.models import CallState
from voice_call.realtime.bridge import RealtimeSession
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import EmulatedCall
from voice_call.sim.openai import FakeOpenAI
from voice_call.sim.openai.conversation import ConversationScript, Reply, ToolCall
from voice_call.sim.plivo.stream import StreamLog
from voice_call.sim.voice import synthetic_speech


@dataclass
class Realtime:
    stack: PlivoStack
    fake: FakeOpenAI
    model: ConversationScript

    async def dial(self, message: str = GREETING) -> tuple[str, EmulatedCall]:
        started = await self.stack.call(
            "voicecall.initiate", to=CALLEE, message=message, mode="conversation"
        )
        call_id = str(started["callId"])
        await wait_until(lambda: self.stack.runtime.media.get(call_id) is not None, timeout=20)
        return call_id, self.stack.carrier_call(await self.stack.record(call_id))


@asynccontextmanager
async def realtime_plivo(
    tmp_path: Path,
    replies: Iterable[Reply] | Callable[[str], Reply],
    callee_lines: tuple[str, ...] = (QUESTION,),
    *,
    reply_delay_ms: int = 300,
    model: dict[str, Any] | None = None,
) -> AsyncIterator[Realtime]:
    conversation, source = model_script(replies, said_via_stream, **(model or {}))
    script = CalleeScript(answer_delay_ms=200, replies=callee_lines, reply_delay_ms=reply_delay_ms)
    async with (
        FakeOpenAI("sk-test", conversation=conversation) as fake,
        plivo_stack(tmp_path, script, time_scale=1.0, config=realtime_config(fake)) as stack,
    ):
        source.calls = lambda: stack.emulator.calls.values()
        yield Realtime(stack, fake, conversation)


class SpeechStarts:
    """The bridge as the model's listener, noting when the model heard the caller start."""

    def __init__(self, bridge: RealtimeSession) -> None:
        self.bridge = bridge
        self.at: list[float] = []

    def on_speech_started(self) -> None:
        self.at.append(time.monotonic())
        self.bridge.on_speech_started()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bridge, name)


def arrivals(log: StreamLog, event: str) -> list[float]:
    return [at for name, at in zip(log.received, log.received_at, strict=True) if name == event]


async def test_the_greeting_is_heard_and_a_question_gets_an_audio_answer(tmp_path: Path) -> None:
    async with realtime_plivo(tmp_path, [ANSWER]) as rt:
        call_id, call = await rt.dial()
        expected = [("bot", GREETING), ("user", QUESTION), ("bot", ANSWER)]
        record = await rt.stack.wait_record(call_id, lambda r: lines(r) == expected, timeout=20)
        [log] = call.extra["streams"]
        assert urlsplit(log.url).path == "/voice/stream/realtime"
        answer_xml = rt.stack.hooks("answer", record.provider_call_id)[0].response_body
        assert ET.fromstring(answer_xml)[0].get("bidirectional") == "true"
        await wait_until(lambda: len(call.callee.heard) >= 2)
        assert all(h.startswith("[audio ") for h in call.callee.heard[:2])
        assert rt.fake.conversations[0].said == [GREETING, ANSWER]
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
    # The callee answers the greeting 1.2 s after it ends: over the long line said by then.
    async with realtime_plivo(tmp_path, [ANSWER], reply_delay_ms=1200) as rt:
        call_id, call = await rt.dial()
        bridge = rt.stack.runtime.media.get(call_id)
        assert isinstance(bridge, RealtimeSession)
        starts = SpeechStarts(bridge)
        bridge.model.listener = starts  # type: ignore[assignment]
        await wait_until(lambda: len(call.callee.heard) >= 1, timeout=20)  # the greeting
        greeting_ms = int(call.callee.heard[0].split()[1])
        cut = await rt.stack.call("voicecall.speak", callId=call_id, message=LONG)
        assert cut  # returned once the callee cut it off
        [log] = call.extra["streams"]
        assert starts.at and bridge.barge_ins >= 1 and log.cleared >= 1
        began = starts.at[0]
        [cleared_at, *_] = [t for t in arrivals(log, "clearAudio") if t >= began]
        assert cleared_at - began <= 0.040
        plays = arrivals(log, "playAudio")
        assert [t for t in plays if began - 0.1 < t < began]  # we were talking over them
        assert [t for t in plays if cleared_at < t < began + 1.0] == []
        session = rt.fake.conversations[0]
        await wait_until(lambda: session.truncations, what="the truncation")
        played_ms = len(call.extra["heard_audio"]) // 8 - greeting_ms
        told = session.truncations[0].audio_end_ms
        assert abs(played_ms - told) <= 2 * FRAME_MS, (told, played_ms)  # not a mark behind
        record = await rt.stack.wait_record(
            call_id, lambda r: lines(r)[-2:] == [("user", QUESTION), ("bot", ANSWER)], timeout=20
        )
        heard = lines(record)[1][1]
        assert LONG.startswith(heard) and 0 < len(heard) < len(LONG)
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_end_call_hangs_up_once_the_goodbye_has_played(tmp_path: Path) -> None:
    async with realtime_plivo(tmp_path, [GOODBYE, ToolCall("end_call")]) as rt:
        call_id, call = await rt.dial()
        session = rt.fake.conversations[0]
        await wait_until(lambda: GOODBYE in session.said, timeout=20)  # generated, still playing
        bridge = rt.stack.runtime.media.get(call_id)
        assert isinstance(bridge, RealtimeSession) and bridge.playing
        bridge.model.respond()  # its next move: end_call
        record = await rt.stack.wait_ended(call_id, timeout=20)
        assert record.end_reason == CallState.HANGUP_BOT
        spoken = len(synthetic_speech(GREETING)) + len(synthetic_speech(GOODBYE))
        assert len(call.extra["heard_audio"]) >= spoken - 2 * 160
        assert lines(record)[-1] == ("bot", GOODBYE)


async def test_consult_answers_through_the_responder(tmp_path: Path) -> None:
    asked = "What are the opening hours on Saturday?"
    consult = ToolCall("consult", {"question": asked}, then=lambda out: json.loads(out)["answer"])
    async with realtime_plivo(tmp_path, [consult]) as rt:
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
    async with realtime_plivo(tmp_path, [ANSWER, closed], (QUESTION, later), model=model) as rt:
        call_id, _ = await rt.dial()
        record = await rt.stack.wait_record(
            call_id, lambda r: lines(r)[-2:] == [("user", later), ("bot", closed)], timeout=30
        )
        assert not record.terminal and len(rt.fake.conversations) == 2
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)
