"""Telnyx calls over a bidirectional media stream: our server, the Telnyx emulator, fake OpenAI.

With `streaming.enabled` the Dial (outbound) or answer (inbound) carries `stream_url` (the
call's token in its query) and bidirectional RTP/PCMU. Once answered, the emulator opens the
socket: what we say reaches the callee as µ-law frames from our TTS (the fake OpenAI speech
endpoint), and the callee's lines come back as audio through the fake realtime transcription,
which pairs each committed stretch of audio with the line the callee chose. No Telnyx `speak`
or `transcription_start` is ever sent. With streaming off the same calls use Telnyx's own voice
(tests/providers/telnyx/test_calls.py).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.providers.streaming_support import KEY, CalleeLines, streaming_config
from tests.providers.telnyx.stack import (
    APP_NUMBER,
    CALLEE,
    CALLER,
    TelnyxStack,
    commands,
    hooks_of,
    telnyx_stack,
)
from tests.support import StolenTime, wait_until
from voice_call.audio.g711 import FRAME_BYTES, FRAME_MS
from voice_call.models import CallState, Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import AppFrame
from voice_call.sim.openai import FakeOpenAI, SpeechScript, TranscriptionScript
from voice_call.sim.telnyx.call import TelnyxCall
from voice_call.sim.telnyx.stream import (
    CallInfo,
    StreamListener,
    StreamParams,
    TelnyxMediaStream,
)
from voice_call.sim.voice import synthetic_speech

GREETING = "Hello, this is the clinic."
LINE = "Tuesday works for me."
NATIVE = ("speak", "transcription_start", "transcription_stop")  # never sent while streaming


@dataclass
class Streamed:
    stack: TelnyxStack
    fake: FakeOpenAI
    transcription: TranscriptionScript

    async def leg(self, call_id: str) -> TelnyxCall:
        return await self.stack.leg(call_id)


@asynccontextmanager
async def streamed_stack(
    tmp_path: Path, replies: tuple[str, ...], **overrides: Any
) -> AsyncIterator[Streamed]:
    source = CalleeLines(lambda call: call.callee.said)
    transcription = TranscriptionScript(source=source, first_delta_ms=20, per_word_ms=10)
    speech = SpeechScript(first_byte_ms=30, per_chunk_ms=20, chunk_bytes=4800)
    # The callee says "hello?" this long after the stream opens unless the greeting starts
    # first; 300 ms of real time leaves the greeting room to start on a loaded machine.
    script = CalleeScript(replies=replies, answer_delay_ms=300, reply_delay_ms=6000)
    async with (
        FakeOpenAI(KEY, speech=speech, transcription=transcription) as fake,
        telnyx_stack(tmp_path, script=script, **{**streaming_config(fake), **overrides}) as stack,
    ):
        source.calls = lambda: stack.emu.calls.values()
        yield Streamed(stack, fake, transcription)


def media_frames(leg: TelnyxCall) -> list[AppFrame]:
    frames: list[AppFrame] = leg.call.extra["frames_in"]
    return [f for f in frames if f.event == "media"]


def assert_stream_fields(params: StreamParams | None, stack: TelnyxStack, call_id: str) -> None:
    """The Dial or answer asked for bidirectional PCMU with the call's token in the URL."""
    assert params is not None
    assert (params.track, params.bidirectional_mode, params.codec) == (
        "inbound_track",
        "rtp",
        "PCMU",
    )
    url = urlsplit(params.url)
    assert (url.scheme, url.port) == ("ws", stack.port)
    (token,) = parse_qs(url.query)["token"]
    assert stack.runtime.media.tokens.check(token, call_id).ok


def token_life_s(params: StreamParams | None) -> float:
    """How long the stream URL's token had left when the test looked."""
    assert params is not None
    (token,) = parse_qs(urlsplit(params.url).query)["token"]
    return int(token.split(".")[1]) - time.time()


async def test_a_streamed_conversation_speaks_and_listens_over_the_stream(
    tmp_path: Path,
) -> None:
    async with streamed_stack(tmp_path, (LINE,)) as streamed:
        stack = streamed.stack
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        record = await stack.wait_record(
            call_id,
            lambda r: [e.text for e in r.transcript] == [GREETING, LINE, f"You said: {LINE}"],
            timeout=20,
        )
        assert [e.speaker for e in record.transcript] == [Speaker.BOT, Speaker.USER, Speaker.BOT]
        leg = await streamed.leg(call_id)
        assert_stream_fields(leg.stream_on_answer, stack, call_id)
        assert 100 < token_life_s(leg.stream_on_answer) <= 120  # streaming.tokenTtlSeconds
        # both ways over the stream: our TTS as whole frames in, the line out as audio
        audio = leg.call.extra["audio_in"]
        assert audio and len(audio) % FRAME_BYTES == 0
        await wait_until(lambda: len(leg.callee.heard) >= 2)  # the echo has finished playing
        assert all(h.startswith("[audio ") for h in leg.callee.heard)
        assert not [c for c in commands(leg) if c["action"] in NATIVE]
        kinds = [h.kind for h in hooks_of(stack.emu, leg.id)]
        assert "streaming.started" in kinds and "call.transcription" not in kinds
        await stack.call("voicecall.end", callId=call_id)
        ended = await stack.wait_ended(call_id)
        assert ended.state == CallState.HANGUP_BOT
        await stack.emu.wait_ended(leg.id, timeout=5)


async def test_an_agent_drives_turns_over_the_stream(tmp_path: Path) -> None:
    prompt = "When would suit you?"
    lines = ("Hello?", LINE)
    async with streamed_stack(tmp_path, lines, responder={"provider": "none"}) as streamed:
        stack = streamed.stack
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_record(call_id, lambda r: len(r.transcript) == 2, timeout=20)
        reply = await stack.call("voicecall.continue", callId=call_id, message=prompt)
        assert reply["transcript"] == LINE
        record = await stack.record(call_id)
        assert [e.text for e in record.transcript] == [GREETING, "Hello?", prompt, LINE]
        leg = await streamed.leg(call_id)
        assert not [c for c in commands(leg) if c["action"] in NATIVE]  # the stream listens
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_a_dial_that_may_ring_longer_than_a_token_lives_gets_a_longer_token(
    tmp_path: Path,
) -> None:
    # 5 minutes of ringing against the default 120 s token: the socket opens after the answer.
    async with streamed_stack(tmp_path, (), ringTimeoutMs=300_000) as streamed:
        stack = streamed.stack
        assert stack.config.streaming.token_ttl_seconds == 120
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        leg = await streamed.leg(call_id)
        assert leg.timeout_secs == 300
        assert_stream_fields(leg.stream_on_answer, stack, call_id)
        assert 300 < token_life_s(leg.stream_on_answer) <= 330
        await wait_until(lambda: len(leg.callee.heard) >= 1)  # and the stream carried it
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_greeting_frames_are_whole_and_paced_every_20_ms(tmp_path: Path) -> None:
    greeting = " ".join(["Hello, this is the clinic calling about your appointment."] * 3)
    async with streamed_stack(tmp_path, (), responder={"provider": "none"}) as streamed:
        stack = streamed.stack
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=greeting, mode="conversation"
        )
        call_id = started["callId"]
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            leg = await streamed.leg(call_id)
            await wait_until(lambda: len(leg.callee.heard) >= 1, timeout=20)
        frames = media_frames(leg)  # the greeting's: the callee says nothing, so nor do we
        assert len(frames) >= 50  # a second or more of speech to judge the pacing by
        assert {f.size for f in frames} == {FRAME_BYTES}
        gaps_ms = [(b.at - a.at) * 1000 for a, b in itertools.pairwise(frames)]
        assert abs(statistics.median(gaps_ms) - FRAME_MS) <= 5
        p95_ms = sorted(gaps_ms)[int(len(gaps_ms) * 0.95)]
        assert p95_ms <= FRAME_MS + 15 + stolen.ms, (p95_ms, stolen.ms)
        # drift-free: the whole run took as long as its audio lasts
        span_ms = (frames[-1].at - frames[0].at) * 1000
        drift_ms = abs(span_ms / len(gaps_ms) - FRAME_MS)
        assert drift_ms <= 3 + stolen.ms / len(gaps_ms), (drift_ms, stolen.ms)
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_a_caller_barging_in_stops_our_frames_and_keeps_what_was_heard(
    tmp_path: Path,
) -> None:
    long_text = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(6))
    barge = "Sorry, can I stop you there?"
    async with streamed_stack(tmp_path, (LINE,)) as streamed:
        stack = streamed.stack
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_record(call_id, lambda r: len(r.transcript) == 3, timeout=20)
        leg = await streamed.leg(call_id)
        await wait_until(lambda: len(leg.callee.heard) >= 2)  # the echo was heard whole
        stream = leg.stream
        assert stream is not None
        before = len(media_frames(leg))
        speaking = asyncio.create_task(
            stack.call("voicecall.speak", callId=call_id, message=long_text)
        )
        await wait_until(lambda: len(media_frames(leg)) - before >= 50)  # a second played
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            streamed.transcription.say(barge)
            audio = await asyncio.to_thread(synthetic_speech, barge)
            barged_at = asyncio.get_running_loop().time()
            talking = asyncio.create_task(stream.speak(audio))  # the callee talks over it
            await speaking
            await talking
        talked_at = asyncio.get_running_loop().time()
        # Our reply was playing when the callee spoke; its frames stopped and the clear came
        # within 40 ms, and nothing more went out while the callee talked.
        slack_s = stolen.ms / 1000
        frames = media_frames(leg)[before:]
        assert any(barged_at - 0.1 - slack_s < f.at <= barged_at for f in frames), stolen.ms
        late = [f for f in frames if barged_at + 0.040 + slack_s < f.at < talked_at]
        assert not late, stolen.ms
        received: list[AppFrame] = leg.call.extra["frames_in"]
        clear = next(f for f in received if f.event == "clear" and f.at > barged_at)
        assert clear.at - barged_at <= 0.040 + slack_s, stolen.ms
        record = await stack.wait_record(
            call_id, lambda r: r.transcript[-1].text == f"You said: {barge}", timeout=20
        )
        cut = record.transcript[3]
        assert cut.speaker == Speaker.BOT and long_text.startswith(cut.text)
        assert 0 < len(cut.text) < len(long_text)
        assert [e.text for e in record.transcript[4:]] == [barge, f"You said: {barge}"]
        assert not [c for c in commands(leg) if c["action"] in NATIVE]
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_an_inbound_call_is_answered_onto_the_stream(tmp_path: Path) -> None:
    greeting = "Thanks for calling the clinic."
    routes = {APP_NUMBER: {"inboundGreeting": greeting}}
    async with streamed_stack(tmp_path, (LINE,), inboundPolicy="open", numbers=routes) as streamed:
        stack = streamed.stack
        emulated = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        leg = stack.emu.leg(emulated.id)
        await wait_until(lambda: bool(commands(leg, "answer")))
        record = await stack.runtime.store.find_by_provider_call_id("telnyx", leg.id)
        assert record is not None
        record = await stack.wait_record(
            record.call_id,
            lambda r: [e.text for e in r.transcript] == [greeting, LINE, f"You said: {LINE}"],
            timeout=20,
        )
        (answer,) = commands(leg, "answer")
        assert answer["body"]["stream_bidirectional_mode"] == "rtp"
        assert_stream_fields(leg.stream_on_answer, stack, record.call_id)
        assert leg.call.extra["audio_in"]
        assert not [c for c in commands(leg) if c["action"] in NATIVE]
        await stack.emu.remote_hangup(leg.id)  # the caller hangs up
        ended = await stack.wait_ended(record.call_id)
        assert ended.state == CallState.COMPLETED


async def test_a_streamed_notify_call_says_its_message_as_audio_then_hangs_up(
    tmp_path: Path,
) -> None:
    message = "Your prescription is ready for pickup at the counter."
    async with streamed_stack(tmp_path, ()) as streamed:
        stack = streamed.stack
        started = await stack.call("voicecall.initiate", to=CALLEE, message=message, mode="notify")
        call_id = started["callId"]
        leg = await streamed.leg(call_id)
        await stack.emu.wait_ended(leg.id, timeout=15)
        record = await stack.wait_ended(call_id)
        assert record.state == CallState.HANGUP_BOT
        assert [e.text for e in record.transcript] == [message]
        assert commands(leg, "speak") == []  # said once, as our audio
        # played whole: every frame we sent reached the callee, and the end mark came back
        assert len(leg.call.extra["audio_in"]) == sum(f.size for f in media_frames(leg)) > 0
        rows = await stack.runtime.store.events(call_id=call_id)
        played = [row.data for row in rows if row.type == "call.playback-ended"]
        assert played == [{**played[0], "text": message, "isFinal": True}]
        # then hung up by us right away, not on the manager's fallback (10 s and more)
        hangup = next(h for h in hooks_of(stack.emu, leg.id) if h.kind == "call.hangup")
        assert hangup.params["data"]["payload"]["hangup_source"] == "caller"
        assert leg.call.ended_at is not None and leg.call.answered_at is not None
        assert leg.call.ended_at - leg.call.answered_at < 8


async def test_a_stream_without_a_good_token_is_refused_and_opens_no_stt(tmp_path: Path) -> None:
    async with streamed_stack(tmp_path, ()) as streamed:
        stack = streamed.stack
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        leg = await streamed.leg(call_id)
        await wait_until(lambda: leg.stream is not None)
        assert leg.stream_on_answer is not None
        good = leg.stream_on_answer.url
        base, token = good.split("?token=")
        head, signature = token.rsplit(".", 1)
        forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        sessions = len(streamed.fake.sessions)
        cases = {
            "missing stream token": (base, leg.id),
            "invalid stream token": (f"{base}?token={forged}", leg.id),
            "stream token is for another call": (good, "v3:another-leg"),
        }
        for reason, (url, call_control_id) in cases.items():
            info = CallInfo(stack.emu.user_id, call_control_id, "session", CALLEE, APP_NUMBER, None)
            params = StreamParams(url=url, bidirectional_mode="rtp")
            stream = TelnyxMediaStream(
                params, info, StreamListener(), bytearray(), time_scale=0.05, send_silence=True
            )
            await stream.open()
            assert await asyncio.wait_for(stream.wait_closed(), 8) == (1008, reason)
            await stream.close()
        assert len(streamed.fake.sessions) == sessions  # no STT session for any of them
        assert stack.runtime.media.live == 1  # the call's own stream is untouched
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)
