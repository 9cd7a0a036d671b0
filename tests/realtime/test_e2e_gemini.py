"""Realtime voice with Gemini Live on Twilio, end to end: our server, the Twilio emulator and
the fake Gemini Live service over real loopback sockets. The call's audio is resampled both ways
(µ-law 8 kHz ↔ 16 kHz in, 24 kHz out); the rest is the same bridge as with OpenAI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.providers.twilio.stack import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TwilioStack,
    free_port,
    script,
    serving,
)
from tests.realtime.e2e import ANSWER, GREETING, QUESTION, both_sides, lines
from tests.support import wait_until
from voice_call.models import CallState
from voice_call.sim.google.live import LiveScript
from voice_call.sim.google.server import FakeGeminiLive
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.voice import synthetic_speech

GEMINI_KEY = "gemini-test-key"


@asynccontextmanager
async def gemini_twilio(tmp_path: Path) -> AsyncIterator[tuple[TwilioStack, FakeGeminiLive]]:
    live = LiveScript(caller=[QUESTION], replies=[ANSWER], first_audio_ms=60, chunk_ms=40)
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    async with (
        FakeGeminiLive(GEMINI_KEY, script=live) as fake,
        TwilioEmulator(
            ACCOUNT_SID,
            AUTH_TOKEN,
            script=script(replies=(QUESTION,), answer_delay_ms=20, reply_delay_ms=300),
            voice_url=webhook,
            status_callback=webhook,
            speech=synthetic_speech,
        ) as emu,
    ):
        google = {"apiKey": GEMINI_KEY, "url": fake.url}
        config = {
            "inboundPolicy": "allowlist",
            "realtime": {
                "enabled": True,
                "provider": "google",
                "toolPolicy": "none",
                "providers": {"google": google},
            },
        }
        async with serving(emu, tmp_path, port, config) as stack:
            yield stack, fake


async def test_a_gemini_live_call_greets_and_answers_on_twilio(tmp_path: Path) -> None:
    async with gemini_twilio(tmp_path) as (stack, fake):
        call_id = await stack.start_call("conversation", GREETING)
        expected = [("bot", GREETING), ("user", QUESTION), ("bot", ANSWER)]
        record = await stack.wait_record(call_id, lambda r: lines(r) == expected, timeout=30)
        assert record.metadata["realtime"] == "google"
        call = stack.emulated(record)
        await wait_until(lambda: len(call.callee.heard) >= 2)
        assert all(h.startswith("[audio ") for h in call.callee.heard[:2])
        [session] = fake.sessions
        assert session.setup is not None and session.audio_in  # our audio reached the model
        status = await stack.call("voicecall.status", callId=call_id, full=True)
        assert both_sides(status["call"]) == {"bot", "user"}
        await stack.call("voicecall.end", callId=call_id)
        ended = await stack.wait_ended(call_id)
        assert ended.end_reason == CallState.HANGUP_BOT
