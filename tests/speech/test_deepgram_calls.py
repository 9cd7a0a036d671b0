"""Streamed calls that hear through Deepgram and speak through Deepgram, on each carrier's
emulator: our server, the carrier emulator and the fake Deepgram (`voice_call.sim.deepgram`).

The callee's audio reaches the fake's `/v1/listen` socket as it left the carrier (µ-law 8 kHz);
its energy VAD finds each line and the words come from what the emulator says the callee said.
Our replies come from `/v1/speak` as µ-law 8 kHz and go out as they came. Each conversation
includes the callee talking over a long reply (a barge-in). Then the fallback chain: a Deepgram
that refuses our key at connect, and one that dies mid-call, hand over to the OpenAI fake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.providers.plivo.stack import CALLEE as PLIVO_CALLEE
from tests.providers.plivo.stack import plivo_stack
from tests.providers.streaming_support import KEY, CalleeLines, said_via_stream
from tests.providers.telnyx.stack import CALLEE as TELNYX_CALLEE
from tests.providers.telnyx.stack import telnyx_stack
from tests.providers.twilio.stack import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TwilioStack,
    free_port,
    script,
    serving,
)
from tests.support import merge, wait_until
from voice_call.models import CallRecord, Speaker
from voice_call.sim.ai_http import speech_pcm16
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import EmulatedCall
from voice_call.sim.deepgram import FakeDeepgram, ListenScript, ListenTurn, SpeakScript
from voice_call.sim.openai import FakeOpenAI, SpeechScript, TranscriptionScript
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.voice import synthetic_speech
from voice_call.speech import stack as speech_stack

DG_KEY = "dg-test"
GREETING = "Hello, this is the clinic."
LINE = "Tuesday works for me."
BARGE = "Sorry, can I stop you there?"
LONG = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(6))


def deepgram_config(fake: FakeDeepgram, *, tts: bool = True, key: str = DG_KEY) -> dict[str, Any]:
    config: dict[str, Any] = {
        "deepgramApiKey": key,
        "responder": {"provider": "echo"},
        "streaming": {
            "enabled": True,
            "provider": "deepgram",
            "providers": {"deepgram": {"url": fake.listen_url, "endpointingMs": 300}},
        },
        "tts": {"provider": "fake", "providers": {"fake": {"msPerChar": 20}}},
    }
    if tts:
        config["tts"] = {"provider": "deepgram", "providers": {"deepgram": {"baseUrl": fake.url}}}
    return config


def fake_deepgram(lines: CalleeLines) -> FakeDeepgram:
    def source(turn: ListenTurn) -> str:
        return lines(turn)  # type: ignore[arg-type]  # CalleeLines ignores the turn

    listen = ListenScript(source=source, first_result_ms=20, per_word_ms=10, final_ms=10)
    # spoken 2.5 times as fast as the default voice, as the OpenAI carriers' tests do
    fast = lambda text, rate: speech_pcm16(text, rate, speed=2.5)  # noqa: E731
    speak = SpeakScript(first_byte_ms=30, per_chunk_ms=20, chunk_ms=100, audio=fast)
    return FakeDeepgram(DG_KEY, listen=listen, speak=speak)


def texts(record: CallRecord) -> list[str]:
    return [entry.text for entry in record.transcript]


def assert_deepgram_carried_the_call(fake: FakeDeepgram, *, tts: bool = True) -> None:
    stream = fake.streams[0]
    assert stream.refused is None and stream.audio_bytes > 8000  # over a second of the callee
    assert (stream.query["encoding"], stream.query["sample_rate"]) == ("mulaw", "8000")
    assert stream.query["model"] == "nova-3" and stream.query["vad_events"] == "true"
    kinds = {event["type"] for event in stream.sent}
    assert {"SpeechStarted", "Results"} <= kinds
    speaks = [r for r in fake.requests if r.path == "/v1/speak"]
    if tts:
        assert speaks and all(r.status == 200 for r in speaks)
        assert {r.query["encoding"] for r in speaks} == {"mulaw"}
        assert {r.body["text"] for r in speaks} >= {GREETING, f"You said: {LINE}"}
    else:
        assert not speaks


def assert_barged_in(record: CallRecord, start: int) -> None:
    """The long reply was cut where the callee spoke over it, and their words were answered."""
    cut = record.transcript[start]
    assert cut.speaker == Speaker.BOT and LONG.startswith(cut.text)
    assert 0 < len(cut.text) < len(LONG)
    assert texts(record)[start + 1 :] == [BARGE, f"You said: {BARGE}"]


# --------------------------------------------------------------------------- Twilio


@asynccontextmanager
async def twilio(
    tmp_path: Path, fake: FakeDeepgram, lines: CalleeLines, config: dict[str, Any]
) -> AsyncIterator[TwilioStack]:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    async with TwilioEmulator(
        ACCOUNT_SID,
        AUTH_TOKEN,
        script=script(replies=(LINE,), reply_delay_ms=2000),
        time_scale=1.0,
        voice_url=webhook,
        status_callback=webhook,
        speech=synthetic_speech,
    ) as emu:
        lines.calls = lambda: emu.calls.values()
        async with serving(emu, tmp_path, port, config) as stack:
            yield stack


def media_frames(call: EmulatedCall) -> int:
    return len([f for f in call.extra.get("frames_in", []) if f.event == "media"])


async def twilio_barge_in(stack: TwilioStack, call_id: str, call: EmulatedCall) -> None:
    before = media_frames(call)
    speaking = asyncio.create_task(stack.call("voicecall.speak", callId=call_id, message=LONG))
    await wait_until(lambda: media_frames(call) - before >= 50)  # a second of it played
    await call.extra["stream"].barge_in(BARGE)
    await speaking


async def test_twilio_a_whole_conversation_hears_and_speaks_through_deepgram(
    tmp_path: Path,
) -> None:
    lines = CalleeLines(said_via_stream)
    async with (
        fake_deepgram(lines) as fake,
        twilio(tmp_path, fake, lines, deepgram_config(fake)) as stack,
    ):
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(
            call_id, lambda r: texts(r) == [GREETING, LINE, f"You said: {LINE}"], timeout=20
        )
        call = stack.emulated(record)
        await wait_until(lambda: len(call.callee.heard) >= 2)  # the echo, heard whole
        await twilio_barge_in(stack, call_id, call)
        record = await stack.wait_record(
            call_id, lambda r: texts(r)[-1] == f"You said: {BARGE}", timeout=20
        )
        assert_barged_in(record, 3)
        session = stack.runtime.media.get(call_id)
        assert session is not None and session.barge_ins >= 1
        assert call.extra["said_via_stream"] == [LINE, BARGE]
        assert_deepgram_carried_the_call(fake)
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)
        # the stream closed the Deepgram way: CloseStream, the last Metadata, a normal close
        await wait_until(lambda: fake.streams[0].closed)
    assert fake.streams[0].received[-1] == {"type": "CloseStream"}
    assert fake.streams[0].close_code == 1000


# --------------------------------------------------------------------------- Telnyx


async def test_telnyx_a_whole_conversation_hears_and_speaks_through_deepgram(
    tmp_path: Path,
) -> None:
    lines = CalleeLines(lambda call: call.callee.said)
    callee = CalleeScript(replies=(LINE,), answer_delay_ms=300, reply_delay_ms=6000)
    async with (
        fake_deepgram(lines) as fake,
        telnyx_stack(tmp_path, script=callee, **deepgram_config(fake)) as stack,
    ):
        lines.calls = lambda: stack.emu.calls.values()
        started = await stack.call(
            "voicecall.initiate", to=TELNYX_CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_record(
            call_id, lambda r: texts(r) == [GREETING, LINE, f"You said: {LINE}"], timeout=20
        )
        leg = await stack.leg(call_id)
        await wait_until(lambda: len(leg.callee.heard) >= 2)
        stream = leg.stream
        assert stream is not None
        frames: list[Any] = leg.call.extra["frames_in"]
        before = len([f for f in frames if f.event == "media"])
        speaking = asyncio.create_task(stack.call("voicecall.speak", callId=call_id, message=LONG))
        await wait_until(lambda: len([f for f in frames if f.event == "media"]) - before >= 50)
        fake.listen.say(BARGE)  # the callee's words, out of band
        await stream.speak(await asyncio.to_thread(synthetic_speech, BARGE))
        await speaking
        record = await stack.wait_record(
            call_id, lambda r: texts(r)[-1] == f"You said: {BARGE}", timeout=20
        )
        assert_barged_in(record, 3)
        assert any(f.event == "clear" for f in frames)
        assert_deepgram_carried_the_call(fake)
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


# --------------------------------------------------------------------------- Plivo


async def test_plivo_a_whole_conversation_hears_and_speaks_through_deepgram(
    tmp_path: Path,
) -> None:
    """The callee answers the greeting 1.2 s after it ends: over the long line we start then."""
    lines = CalleeLines(said_via_stream)
    callee = CalleeScript(answer_delay_ms=200, replies=(LINE,), reply_delay_ms=1200)
    async with (
        fake_deepgram(lines) as fake,
        plivo_stack(tmp_path, callee, time_scale=1.0, config=deepgram_config(fake)) as stack,
    ):
        lines.calls = lambda: stack.emulator.calls.values()
        started = await stack.call(
            "voicecall.initiate", to=PLIVO_CALLEE, message=GREETING, mode="conversation"
        )
        call_id = str(started["callId"])
        await wait_until(lambda: stack.runtime.media.get(call_id) is not None)
        session = stack.runtime.media.get(call_id)
        assert session is not None
        carrier = stack.carrier_call(await stack.record(call_id))
        await wait_until(lambda: len(carrier.callee.heard) >= 1)  # the greeting played out
        cut = await stack.call("voicecall.speak", callId=call_id, message=LONG)
        assert cut  # returned once the callee cut it off
        record = await stack.wait_record(
            call_id, lambda r: texts(r)[-1:] == [f"You said: {LINE}"], timeout=20
        )
        assert session.barge_ins >= 1
        heard = [e for e in record.transcript if e.speaker == Speaker.BOT and e.text != GREETING]
        assert LONG.startswith(heard[0].text) and 0 < len(heard[0].text) < len(LONG)
        assert texts(record)[-2:] == [LINE, f"You said: {LINE}"]
        assert_deepgram_carried_the_call(fake)
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


# --------------------------------------------------------------------------- fallback


def with_openai_fallback(fake: FakeDeepgram, openai: FakeOpenAI, key: str) -> dict[str, Any]:
    openai_block = {"url": openai.realtime_url, "silenceDurationMs": 300, "vadThreshold": 0.3}
    return merge(
        deepgram_config(fake, tts=False, key=key),
        {
            "openaiApiKey": KEY,
            "streaming": {"fallback": ["openai"], "providers": {"openai": openai_block}},
        },
    )


@asynccontextmanager
async def fallback_call(
    tmp_path: Path, dg_key: str
) -> AsyncIterator[tuple[TwilioStack, FakeDeepgram, FakeOpenAI]]:
    lines = CalleeLines(said_via_stream)
    transcription = TranscriptionScript(source=lines, first_delta_ms=20, per_word_ms=10)
    speech = SpeechScript(first_byte_ms=30, per_chunk_ms=20, chunk_bytes=4800)
    async with (
        fake_deepgram(lines) as fake,
        FakeOpenAI(KEY, speech=speech, transcription=transcription) as openai,
        twilio(tmp_path, fake, lines, with_openai_fallback(fake, openai, dg_key)) as stack,
    ):
        yield stack, fake, openai


async def test_a_deepgram_that_refuses_our_key_hands_the_call_to_openai(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fallback_call(tmp_path, "dg-revoked") as (stack, fake, openai):
        with caplog.at_level(logging.WARNING, "voice_call.speech"):
            call_id = await stack.start_call("conversation", GREETING)
            record = await stack.wait_record(
                call_id, lambda r: texts(r) == [GREETING, LINE, f"You said: {LINE}"], timeout=20
            )
        assert fake.streams and {s.refused for s in fake.streams} == {401}
        assert openai.sessions and openai.sessions[-1].transcripts == [LINE]
        assert '"deepgram" failed (Deepgram refused the stream: HTTP 401' in caplog.text
        assert 'trying "openai" (attempt 2 of 2: deepgram → openai)' in caplog.text
        await stack.call("voicecall.end", callId=record.call_id)
        await stack.wait_ended(call_id)


async def test_a_deepgram_that_dies_mid_call_hands_the_rest_of_it_to_openai(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # reconnects 10 ms apart, not 1 s: the test waits for them to run out
    settings = speech_stack._STT_SETTINGS["deepgram"]
    monkeypatch.setitem(
        speech_stack._STT_SETTINGS, "deepgram", lambda c: replace(settings(c), backoff_s=0.01)
    )
    async with fallback_call(tmp_path, DG_KEY) as (stack, fake, openai):
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(
            call_id, lambda r: texts(r) == [GREETING, LINE, f"You said: {LINE}"], timeout=20
        )
        assert fake.streams[0].transcripts == [LINE] and not openai.sessions
        call = stack.emulated(record)
        with caplog.at_level(logging.WARNING, "voice_call.speech"):
            fake.listen.refuse(503, "Service unavailable.")  # Deepgram goes down for good
            await fake.drop_streams(1011, "INTERNAL_SERVER_ERROR")
            await wait_until(lambda: openai.sessions, timeout=20)
        assert '"deepgram" failed (Deepgram connection lost; reconnecting failed)' in caplog.text
        assert 'trying "openai" (attempt 2 of 2: deepgram → openai)' in caplog.text
        await wait_until(lambda: len(call.callee.heard) >= 2)
        await twilio_barge_in(stack, call_id, call)
        record = await stack.wait_record(
            call_id, lambda r: texts(r)[-1] == f"You said: {BARGE}", timeout=20
        )
        assert_barged_in(record, 3)  # the call went on, heard by OpenAI now
        assert openai.sessions[-1].transcripts[-1] == BARGE
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)
