"""Streamed calls that hear through ElevenLabs' realtime STT and speak through Cartesia, on each
carrier's emulator: a whole conversation (greeting, the caller's line, our reply, a long line
the caller cuts off, the reply to that), and a Cartesia that fails handing over to the next
engine of `tts.fallback`.

The fakes speak each service's wire protocol; the ElevenLabs fake hears the callee's audio with
an energy VAD and takes the words from the lines the emulated callee said.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.providers.plivo.stack import CALLEE as PLIVO_CALLEE
from tests.providers.plivo.stack import plivo_stack
from tests.providers.streaming_support import said_via_stream
from tests.providers.telnyx.stack import CALLEE as TELNYX_CALLEE
from tests.providers.telnyx.stack import telnyx_stack
from tests.providers.twilio.stack import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    free_port,
    serving,
)
from tests.support import CallStackMixin, wait_until
from voice_call.models import CallRecord, Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.cartesia import FakeCartesia
from voice_call.sim.common import EmulatedCall
from voice_call.sim.elevenlabs import FakeElevenLabs, SttScript
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.voice import synthetic_speech

EL_KEY, CARTESIA_KEY = "el-test", "car-test"
GREETING = "Hello, this is the clinic."
LINE = "Tuesday works for me."
BARGE = "Sorry, can I stop you there?"
LONG = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(6))


class CalleeLines:
    """The STT fake's words: the lines the emulated callees said, each handed out once."""

    def __init__(self, lines_of: Callable[[EmulatedCall], Iterable[str]]) -> None:
        self.lines_of = lines_of
        self.calls: Callable[[], Iterable[EmulatedCall]] = lambda: ()
        self.given = 0
        self.queued: list[str] = []  # said outside the callee's script, handed out first

    def __call__(self, segment: int) -> str:
        if self.queued:
            return self.queued.pop(0)
        said = [line for call in self.calls() for line in self.lines_of(call)]
        if self.given >= len(said):
            return ""  # noise, not a line
        self.given += 1
        return str(said[self.given - 1])


def speech_config(
    el: FakeElevenLabs, cartesia: FakeCartesia, key: str = CARTESIA_KEY, **tts: Any
) -> dict[str, Any]:
    return {
        "elevenlabsApiKey": EL_KEY,
        "cartesiaApiKey": CARTESIA_KEY,
        "responder": {"provider": "echo"},
        "streaming": {
            "enabled": True,
            "provider": "elevenlabs",
            "providers": {
                "elevenlabs": {
                    "url": el.stt_url,
                    "vadSilenceThresholdSecs": 0.35,
                    "vadThreshold": 0.3,
                }
            },
        },
        "tts": {
            "provider": "cartesia",
            "providers": {"cartesia": {"url": cartesia.ws_url, "apiKey": key}},
            **tts,
        },
    }


@dataclass
class Call:
    """One carrier's conversation, seen the same way whichever carrier carries it."""

    stack: CallStackMixin
    begin: Callable[[], Awaitable[str]]  # starts the conversation, answers its id
    callee: Callable[[str], Awaitable[EmulatedCall]]  # the emulated far end of a call
    # makes the callee say BARGE now, over our audio; None: its script does that by itself
    barge: Callable[[str], Awaitable[None]] | None = None
    call_id: str = ""

    async def start(self) -> str:
        self.call_id = await self.begin()
        return self.call_id

    async def heard(self, turns: int) -> None:
        far = await self.callee(self.call_id)

        async def enough() -> bool:
            return len(far.callee.heard) >= turns

        await wait_until(enough, 20)


@asynccontextmanager
async def twilio(
    tmp_path: Path, script: CalleeScript, config: dict[str, Any], lines: CalleeLines
) -> AsyncIterator[Call]:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    emu = TwilioEmulator(
        ACCOUNT_SID,
        AUTH_TOKEN,
        script=script,
        time_scale=1.0,
        voice_url=webhook,
        status_callback=webhook,
        speech=synthetic_speech,
    )
    async with emu, serving(emu, tmp_path, port, config) as stack:
        lines.lines_of, lines.calls = said_via_stream, lambda: emu.calls.values()

        async def far(call_id: str) -> EmulatedCall:
            return stack.emulated(await stack.record(call_id))

        async def barge(call_id: str) -> None:
            await (await far(call_id)).extra["stream"].barge_in(BARGE)

        yield Call(stack, lambda: stack.start_call("conversation", GREETING), far, barge)


@asynccontextmanager
async def telnyx(
    tmp_path: Path, script: CalleeScript, config: dict[str, Any], lines: CalleeLines
) -> AsyncIterator[Call]:
    async with telnyx_stack(tmp_path, script=script, time_scale=1.0, **config) as stack:
        lines.lines_of, lines.calls = (lambda c: c.callee.said), lambda: stack.emu.calls.values()

        async def begin() -> str:
            started = await stack.call(
                "voicecall.initiate", to=TELNYX_CALLEE, message=GREETING, mode="conversation"
            )
            return str(started["callId"])

        async def far(call_id: str) -> EmulatedCall:
            return (await stack.leg(call_id)).call

        async def barge(call_id: str) -> None:
            stream = (await stack.leg(call_id)).stream
            assert stream is not None
            lines.queued.append(BARGE)  # a line of its own, not one of the script's
            await stream.speak(synthetic_speech(BARGE))

        yield Call(stack, begin, far, barge)


@asynccontextmanager
async def plivo(
    tmp_path: Path, script: CalleeScript, config: dict[str, Any], lines: CalleeLines
) -> AsyncIterator[Call]:
    async with plivo_stack(tmp_path, script, time_scale=1.0, config=config) as stack:
        lines.lines_of, lines.calls = said_via_stream, lambda: stack.emulator.calls.values()

        async def begin() -> str:
            started = await stack.call(
                "voicecall.initiate", to=PLIVO_CALLEE, message=GREETING, mode="conversation"
            )
            return str(started["callId"])

        async def far(call_id: str) -> EmulatedCall:
            return stack.carrier_call(await stack.record(call_id))

        yield Call(stack, begin, far)


CARRIERS = {"twilio": twilio, "telnyx": telnyx, "plivo": plivo}


@asynccontextmanager
async def conversation(
    tmp_path: Path, carrier: str, script: CalleeScript, **tts: Any
) -> AsyncIterator[tuple[Call, FakeElevenLabs, FakeCartesia]]:
    """The fakes and the carrier's stack; the test starts the call (`call.start()`)."""
    lines = CalleeLines(said_via_stream)
    transcription = SttScript(source=lines, first_partial_ms=20, per_word_ms=10, commit_ms=20)
    async with (
        FakeElevenLabs(EL_KEY, transcription=transcription) as el,
        FakeCartesia(CARTESIA_KEY, first_byte_ms=30, per_chunk_ms=20, chunk_ms=40) as cartesia,
        CARRIERS[carrier](tmp_path, script, speech_config(el, cartesia, **tts), lines) as call,
    ):
        yield call, el, cartesia


def said(cartesia: FakeCartesia, words: str) -> bool:
    """Cartesia was asked for a transcript holding `words`."""
    return any(words in m.get("transcript", "") for s in cartesia.sockets for m in s.received)


def texts(record: CallRecord) -> list[str]:
    return [entry.text for entry in record.transcript]


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
async def test_a_conversation_hears_through_elevenlabs_and_speaks_through_cartesia(
    tmp_path: Path, carrier: str
) -> None:
    # Plivo's callee answers our echo by talking over the long line we start after it; the
    # others' wait their turn, so the test makes them barge in
    replies = (LINE, BARGE) if carrier == "plivo" else (LINE,)
    script = CalleeScript(answer_delay_ms=200, replies=replies, reply_delay_ms=1200)
    async with conversation(tmp_path, carrier, script) as (call, el, cartesia):
        stack = call.stack
        call_id = await call.start()
        await stack.wait_record(
            call_id, lambda r: texts(r)[:3] == [GREETING, LINE, f"You said: {LINE}"], 20
        )
        await call.heard(2)  # the greeting and the echo, heard whole
        speaking = asyncio.create_task(stack.call("voicecall.speak", callId=call_id, message=LONG))
        if call.barge is not None:
            await wait_until(lambda: said(cartesia, "Sentence number 1"), 20)
            await call.barge(call_id)
        assert await speaking
        record = await stack.wait_record(
            call_id, lambda r: f"You said: {BARGE}" in texts(r), timeout=20
        )
        # the long line was cut where the caller came in: the transcript keeps what was heard
        spoken = texts(record)
        assert spoken[4:] == [BARGE, f"You said: {BARGE}"], spoken
        assert LONG.startswith(spoken[3]) and 0 < len(spoken[3]) < len(LONG), spoken
        bot, user = Speaker.BOT, Speaker.USER
        assert [e.speaker for e in record.transcript] == [bot, user, bot, bot, user, bot]
        # ElevenLabs heard µ-law 8 kHz as sent, with its own VAD committing each utterance
        [session, *_] = el.stt_sessions
        assert session.query["audio_format"] == "ulaw_8000"
        assert session.query["commit_strategy"] == "vad"
        assert session.headers["xi-api-key"] == EL_KEY
        chunks = [m for m in session.received if m.get("message_type") == "input_audio_chunk"]
        assert chunks and all(m["sample_rate"] == 8000 for m in chunks)
        # Cartesia spoke µ-law 8 kHz over one socket; the long line's sentences shared one
        # context, continued and flushed sentence by sentence, and the cut-off cancelled it
        [socket] = cartesia.sockets
        assert socket.headers["x-api-key"] == CARTESIA_KEY and socket.headers["cartesia-version"]
        requests = [m for m in socket.received if "transcript" in m]
        assert {m["output_format"]["encoding"] for m in requests} == {"pcm_mulaw"}
        long_parts = [m for m in requests if m["transcript"] and m["transcript"] in LONG + " "]
        assert long_parts and len({m["context_id"] for m in long_parts}) == 1
        assert all(m["continue"] for m in long_parts)
        context = long_parts[0]["context_id"]
        flushes = [m for m in requests if m["context_id"] == context and m.get("flush")]
        assert len(flushes) >= len(long_parts) - 1  # the one being spoken may be unflushed
        assert {"context_id": context, "cancel": True} in socket.received
        # the short replies were one sentence each: a context of their own, not continued
        echo = next(m for m in requests if m["transcript"] == f"You said: {LINE}")
        assert echo["continue"] is False and echo["context_id"] != context
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


@pytest.mark.parametrize(
    ("carrier", "failure"),
    [("twilio", "refused key"), ("telnyx", "error frame"), ("plivo", "refused key")],
)
async def test_a_failing_cartesia_hands_the_sentence_to_the_fallback_engine(
    tmp_path: Path, carrier: str, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    script = CalleeScript(answer_delay_ms=200, replies=(LINE,), reply_delay_ms=300)
    key = "not-the-key" if failure == "refused key" else CARTESIA_KEY
    async with conversation(tmp_path, carrier, script, fallback=["fake"], key=key) as (
        call,
        _el,
        cartesia,
    ):
        if failure == "error frame":
            cartesia.script.error = "Internal server error"
        call_id = await call.start()
        record = await call.stack.wait_record(
            call_id, lambda r: texts(r) == [GREETING, LINE, f"You said: {LINE}"], 20
        )
        await call.heard(2)  # both turns were heard, in the fallback engine's voice
        warnings = [r.getMessage() for r in caplog.records if "tts fallback" in r.getMessage()]
        assert warnings and all('"cartesia" failed' in w and '"fake"' in w for w in warnings)
        if failure == "refused key":
            assert cartesia.sockets and {s.refused for s in cartesia.sockets} == {401}
            assert "HTTP 401" in warnings[0]
        else:
            errors = [m for s in cartesia.sockets for m in s.sent if m["type"] == "error"]
            assert errors and "Internal server error" in warnings[0]
        await call.stack.call("voicecall.end", callId=record.call_id)
        await call.stack.wait_ended(record.call_id)
