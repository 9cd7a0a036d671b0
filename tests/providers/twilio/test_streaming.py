"""Twilio conversations over a Media Stream: our server, the Twilio emulator and fake OpenAI.

With `streaming.enabled` the conversation's TwiML is `<Connect><Stream>`: the greeting and
the replies reach the callee as µ-law audio from our TTS (the fake OpenAI speech endpoint),
and what the callee says comes back through the fake realtime transcription, which pairs
each committed stretch of audio with the line the emulator says it spoke. With streaming off
the same call uses `<Say>` (tests/providers/twilio/test_calls.py).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.providers.streaming_support import (
    KEY,
    CalleeLines,
    said_via_stream,
    streaming_config,
)
from tests.providers.twilio.stack import (
    ACCOUNT_SID,
    APP_NUMBER,
    AUTH_TOKEN,
    CALLER,
    SCALE,
    TwilioStack,
    free_port,
    script,
    serving,
)
from tests.support import wait_until
from voice_call.audio.g711 import FRAME_BYTES
from voice_call.models import Speaker
from voice_call.sim.common import AppFrame
from voice_call.sim.openai.server import (
    ChatScript,
    FakeOpenAI,
    SpeechScript,
    TranscriptionScript,
)
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.voice import synthetic_speech

GREETING = "Hello, this is the clinic."
LINE = "Tuesday works for me."


@asynccontextmanager
async def streaming_stack(
    tmp_path: Path,
    lines: tuple[str, ...],
    chat: ChatScript | None = None,
    scale: float = SCALE,
    **overrides: Any,
) -> AsyncIterator[TwilioStack]:
    source = CalleeLines(said_via_stream)
    transcription = TranscriptionScript(source=source, first_delta_ms=20, per_word_ms=10)
    speech = SpeechScript(first_byte_ms=30, per_chunk_ms=20, chunk_bytes=4800)
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    async with (
        FakeOpenAI(KEY, chat=chat, speech=speech, transcription=transcription) as fake,
        TwilioEmulator(
            ACCOUNT_SID,
            AUTH_TOKEN,
            script=script(replies=lines, reply_delay_ms=2000),
            time_scale=scale,
            voice_url=webhook,
            status_callback=webhook,
            speech=synthetic_speech,
        ) as emu,
    ):
        source.calls = lambda: emu.calls.values()
        if chat is not None:  # the OpenAI responder, on the fake's chat completions
            overrides["responder"] = {"provider": "openai", "baseUrl": fake.url, "apiKey": KEY}
            overrides["responseModel"] = "openai/gpt-test"
        async with serving(emu, tmp_path, port, {**streaming_config(fake), **overrides}) as stack:
            yield stack


async def test_a_streamed_conversation_speaks_and_listens_over_the_stream(
    tmp_path: Path,
) -> None:
    async with streaming_stack(tmp_path, (LINE,)) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(
            call_id,
            lambda r: [e.text for e in r.transcript] == [GREETING, LINE, f"You said: {LINE}"],
            timeout=20,
        )
        call = stack.emulated(record)
        # the stream carried the audio both ways; nothing went through <Say> or live updates
        assert call.extra["said_via_stream"] == [LINE]
        audio = call.extra["audio_in"]
        assert audio and len(audio) % FRAME_BYTES == 0
        assert not [h for h in call.callee.heard if not h.startswith("[audio ")]
        assert not stack.updates(record.provider_call_id)
        # the conversation's TwiML connects the stream, the token in a <Parameter>
        body = stack.hooks("voice", call.id)[0].response_body
        assert "<Connect><Stream" in body and '<Parameter name="token"' in body
        assert call.callee.heard[0].startswith("[audio ")  # the greeting, as stream audio
        assert [e.speaker for e in record.transcript] == [Speaker.BOT, Speaker.USER, Speaker.BOT]
        await stack.call("voicecall.end", callId=call_id)
        ended = await stack.wait_ended(call_id)
        assert ended.end_reason is not None and ended.end_reason.value == "hangup-bot"
        await asyncio.wait_for(call.ended.wait(), 5)
        assert len(call.callee.heard) >= 2  # the greeting, then the echoed reply


async def test_an_inbound_call_is_answered_onto_the_stream(tmp_path: Path) -> None:
    greeting = "Thanks for calling the clinic."
    routes = {APP_NUMBER: {"inboundGreeting": greeting}}
    async with streaming_stack(tmp_path, (LINE,), inboundPolicy="open", numbers=routes) as stack:
        call = await stack.emu.place_inbound(CALLER, APP_NUMBER)

        async def registered() -> bool:
            return await stack.by_sid(call.id) is not None

        await wait_until(registered)
        found = await stack.by_sid(call.id)
        assert found is not None
        record = await stack.wait_record(
            found.call_id,
            lambda r: [e.text for e in r.transcript] == [greeting, LINE, f"You said: {LINE}"],
            timeout=20,
        )
        # accepted: the Voice URL answers with a Redirect, and the answered request connects
        assert "type=answered" in stack.hooks("voice", call.id)[0].response_body
        assert "<Connect><Stream" in stack.hooks("redirect", call.id)[0].response_body
        assert call.extra["said_via_stream"] == [LINE]
        assert not stack.updates(call.id)
        await stack.call("voicecall.end", callId=record.call_id)
        await asyncio.wait_for(call.ended.wait(), 5)


async def test_a_line_cut_off_keeps_only_what_was_heard(tmp_path: Path) -> None:
    long_text = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(6))
    async with streaming_stack(tmp_path, (LINE,)) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        await stack.wait_record(call_id, lambda r: len(r.transcript) == 3, timeout=20)
        session = stack.runtime.media.get(call_id)
        assert session is not None
        before = session.audio_frames
        speaking = asyncio.create_task(
            stack.call("voicecall.speak", callId=call_id, message=long_text)
        )

        async def a_second_played() -> bool:
            return session.audio_frames - before >= 60

        await wait_until(a_second_played)
        session.clear()  # what a barge-in does
        await speaking
        record = await stack.record(call_id)
        said = record.transcript[-1]
        assert said.speaker == Speaker.BOT and long_text.startswith(said.text)
        assert 0 < len(said.text) < len(long_text)
        rows = await stack.runtime.store.events(call_id=call_id)
        ended = [row.data for row in rows if row.type == "call.playback-ended"]
        assert ended[-1]["isFinal"] is False and ended[-1]["text"] == said.text
        assert any(data["isFinal"] is True for data in ended)  # the lines played whole
        spoke = [row.data for row in rows if row.type == "bot.spoke"][-1]
        assert spoke == {**spoke, "text": long_text, "heard": said.text}
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_an_agent_drives_turns_over_the_stream(tmp_path: Path) -> None:
    prompt = "When would suit you?"
    async with streaming_stack(tmp_path, ("Hello?", LINE), responder={"provider": "none"}) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        await stack.wait_record(call_id, lambda r: len(r.transcript) == 2, timeout=20)
        reply = await stack.call("voicecall.continue", callId=call_id, message=prompt)
        assert reply["transcript"] == LINE
        record = await stack.record(call_id)
        assert [e.text for e in record.transcript] == [GREETING, "Hello?", prompt, LINE]
        assert not stack.updates(record.provider_call_id)  # no <Gather>: the stream listens
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_keys_on_a_streamed_call_are_tones_in_the_stream(tmp_path: Path) -> None:
    from voice_call.audio.dtmf import goertzel_digits

    async with streaming_stack(tmp_path, (LINE,)) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(call_id, lambda r: len(r.transcript) == 3, timeout=20)
        call = stack.emulated(record)
        before = len(call.extra["audio_in"])
        await stack.call("voicecall.dtmf", callId=call_id, digits="1w2#")
        # played whole before the RPC returned, into the stream: a live update (<Play
        # digits>) would have replaced the <Connect><Stream> and ended it
        assert goertzel_digits(bytes(call.extra["audio_in"][before:])) == "12#"
        assert not stack.updates(record.provider_call_id)
        session = stack.runtime.media.get(call_id)
        assert session is not None and not session.closed
        rows = await stack.runtime.store.events(call_id=call_id)
        assert not [r for r in rows if r.type == "bot.spoke" and "DTMF" in str(r.data)]
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_a_reply_s_next_sentence_is_handed_over_while_the_one_before_plays(
    tmp_path: Path,
) -> None:
    sentences = ["Let me look at the calendar for you.", "Tuesday at three is open.", "Book it?"]
    chat = ChatScript(reply=" ".join(sentences), first_token_ms=40, per_token_ms=5)
    async with streaming_stack(tmp_path, (LINE,), chat=chat) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(
            call_id, lambda r: [e.text for e in r.transcript][1:] == [LINE, *sentences], timeout=20
        )
        session = stack.runtime.media.get(call_id)
        assert session is not None
        rows = await stack.runtime.store.events(call_id=call_id)
        kinds = ("bot.speaking", "bot.spoke")
        order = [(r.type, r.data.get("text")) for r in rows if r.type in kinds]
        # each sentence was queued while the one before was still playing ...
        for before, after in itertools.pairwise(sentences):
            assert order.index(("bot.speaking", after)) < order.index(("bot.spoke", before))
        # ... and the transcript keeps them in order, each heard whole
        assert [e.text for e in record.transcript][-3:] == sentences
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_a_streamed_reply_s_figures_are_measured_where_audio_meets_the_carrier(
    tmp_path: Path,
) -> None:
    chat = ChatScript(reply="Tuesday works. See you then.", first_token_ms=80, per_token_ms=5)
    # Real time: the callee's audio arrives at 50 frames a second, as from a carrier.
    async with streaming_stack(tmp_path, (LINE,), chat=chat, scale=1.0) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(call_id, lambda r: bool(r.latency), timeout=20)
        turn = record.latency[-1]
        assert turn.kind.value == "reply" and turn.outcome == "spoken"
        # the fake STT ends an utterance after 300 ms of quiet (silenceDurationMs), the fake
        # TTS answers after 30 ms, the fake model's first token after 80 ms
        assert turn.endpointing_ms is not None and 300 <= turn.endpointing_ms < 2000
        assert turn.tts_first_byte_ms is not None and 30 <= turn.tts_first_byte_ms < 1000
        assert turn.responder_first_token_ms is not None and turn.responder_first_token_ms >= 80
        assert turn.voice_to_voice_ms is not None
        parts = turn.endpointing_ms + turn.responder_first_token_ms + turn.tts_first_byte_ms
        # ours: the reply handed over, queued, paced onto the next 20 ms frame
        overhead = turn.voice_to_voice_ms - parts
        assert 0 <= overhead <= 40, (turn, overhead)
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


def media_frames(call: Any) -> list[AppFrame]:
    frames: list[AppFrame] = call.extra.get("frames_in", [])
    return [f for f in frames if f.event == "media"]


async def test_greeting_frames_are_whole_and_paced_every_20_ms(tmp_path: Path) -> None:
    greeting = " ".join(["Hello, this is the clinic calling about your appointment."] * 3)
    async with streaming_stack(tmp_path, (), responder={"provider": "none"}) as stack:
        call_id = await stack.start_call("conversation", greeting)
        record = await stack.wait_record(call_id, lambda r: len(r.transcript) == 1, timeout=20)
        frames = media_frames(stack.emulated(record))  # the callee says nothing, nor do we
        assert len(frames) >= 50  # a second or more of speech to judge the pacing by
        assert {f.size for f in frames} == {FRAME_BYTES}
        gaps_ms = [(b.at - a.at) * 1000 for a, b in itertools.pairwise(frames)]
        assert abs(statistics.median(gaps_ms) - 20) <= 5
        assert sorted(gaps_ms)[int(len(gaps_ms) * 0.95)] <= 35
        span_ms = (frames[-1].at - frames[0].at) * 1000  # drift-free: as long as the audio
        assert abs(span_ms / len(gaps_ms) - 20) <= 3
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_the_callee_barging_in_stops_our_frames_within_40_ms(tmp_path: Path) -> None:
    long_text = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(6))
    barge = "Sorry, can I stop you there?"
    async with streaming_stack(tmp_path, (LINE,), scale=1.0) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(call_id, lambda r: len(r.transcript) == 3, timeout=20)
        call = stack.emulated(record)
        await wait_until(lambda: _async(len(call.callee.heard) >= 2))  # the echo, heard whole
        before = len(media_frames(call))
        speaking = asyncio.create_task(
            stack.call("voicecall.speak", callId=call_id, message=long_text)
        )
        await wait_until(lambda: _async(len(media_frames(call)) - before >= 50))
        loop = asyncio.get_running_loop()
        await call.extra["stream"].barge_in(barge)  # queued: out within the next 20 ms tick
        barged_at = loop.time()
        await speaking
        frames = media_frames(call)[before:]
        clear = next(f for f in call.extra["frames_in"] if f.event == "clear")
        assert clear.at - barged_at <= 0.040 + 0.020
        assert not [f for f in frames if f.at > clear.at]  # nothing after the clear
        record = await stack.wait_record(
            call_id, lambda r: r.transcript[-1].text == f"You said: {barge}", timeout=20
        )
        cut = record.transcript[3]
        assert cut.speaker == Speaker.BOT and long_text.startswith(cut.text)
        assert 0 < len(cut.text) < len(long_text)
        assert [e.text for e in record.transcript[4:]] == [barge, f"You said: {barge}"]
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def _async(value: bool) -> bool:
    return value
