"""`tts.fallback`: when the first engine fails before any audio (it cannot be reached, answers
an HTTP error, or is silent past `timeoutMs`), the next one says the sentence and a warning
names the engine that failed, the one tried next and the attempt — on a real streamed call too.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from tests.media.stack import media_server
from voice_call.config import parse_config
from voice_call.media.playback import PlaybackStatus
from voice_call.sim.elevenlabs import FakeElevenLabs
from voice_call.sim.openai import FakeOpenAI, SpeechScript
from voice_call.speech.stack import SpeechStack
from voice_call.speech.tts.base import TtsAudio, TtsError
from voice_call.speech.tts.fake import FakeTts
from voice_call.speech.tts.fallback import FallbackTts

KEY = "sk-test"
EL_KEY = "el-test"
QUICK = SpeechScript(first_byte_ms=0, per_chunk_ms=0, chunk_bytes=4800)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def spoken(stack: SpeechStack, text: str) -> bytes:
    chunks: AsyncGenerator[TtsAudio, None] = stack.voice().engine.synthesize(text)
    return b"".join([chunk.data async for chunk in chunks])


def streaming(tts: dict[str, Any]) -> dict[str, Any]:
    return {"streaming": {"enabled": True, "provider": "fake"}, "tts": tts}


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("tts fallback")]


async def test_an_http_error_hands_the_sentence_to_the_next_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        FakeOpenAI(KEY, speech=QUICK) as openai,
        FakeElevenLabs(EL_KEY, first_byte_ms=0, per_chunk_ms=0) as elevenlabs,
    ):
        tts = {
            "provider": "openai",
            "fallback": ["elevenlabs", "espeak"],
            "providers": {
                "openai": {"apiKey": "sk-wrong", "baseUrl": openai.url},
                "elevenlabs": {"apiKey": EL_KEY, "baseUrl": elevenlabs.url},
                "espeak": {"command": "true"},  # any executable: never reached
            },
        }
        stack = SpeechStack(parse_config(streaming(tts), env={}))
        try:
            with caplog.at_level(logging.WARNING, logger="voice_call.speech"):
                audio = await spoken(stack, "Your table is ready.")
        finally:
            await stack.close()
    assert len(audio) > 16000  # the ElevenLabs voice: half a second and more of 16 kHz PCM
    assert [r.status for r in openai.requests if r.path == "/v1/audio/speech"] == [401]
    assert [r.body["text"] for r in elevenlabs.requests] == ["Your table is ready."]
    [warning] = fallback_warnings(caplog)
    assert warning.startswith('tts fallback: "openai" failed (OpenAI speech refused: HTTP 401')
    assert warning.endswith('trying "elevenlabs" (attempt 2 of 3: openai → elevenlabs → espeak)')


async def test_an_unreachable_engine_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    tts = {
        "provider": "openai",
        "fallback": ["fake"],
        "providers": {"openai": {"apiKey": KEY, "baseUrl": closed_port_url()}},
    }
    stack = SpeechStack(parse_config(streaming(tts), env={}))
    try:
        with caplog.at_level(logging.WARNING, logger="voice_call.speech"):
            assert await spoken(stack, "Hello.")
    finally:
        await stack.close()
    [warning] = fallback_warnings(caplog)
    assert "ConnectError" in warning and 'trying "fake" (attempt 2 of 2' in warning


async def test_a_silent_engine_falls_back_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = SpeechScript(first_byte_ms=5000, per_chunk_ms=0, chunk_bytes=4800)
    async with FakeOpenAI(KEY, speech=slow) as openai:
        tts = {
            "provider": "openai",
            "fallback": ["fake"],
            "timeoutMs": 300,
            "providers": {"openai": {"apiKey": KEY, "baseUrl": openai.url}},
        }
        stack = SpeechStack(parse_config(streaming(tts), env={}))
        try:
            voice = stack.voice()
            assert voice.timeout_s == pytest.approx(0.6)  # a sentence may wait out both engines
            started = asyncio.get_running_loop().time()
            with caplog.at_level(logging.WARNING, logger="voice_call.speech"):
                assert await spoken(stack, "Hello.")
            assert asyncio.get_running_loop().time() - started < 2
        finally:
            await stack.close()
    [warning] = fallback_warnings(caplog)
    assert '"openai" failed (no audio within 0.3 s)' in warning


async def test_when_every_engine_fails_the_sentence_fails() -> None:
    chain = FallbackTts(
        [FakeTts({"error": "first down", "firstChunkMs": 0}), FakeTts({"error": "second down"})],
        1.0,
    )
    with pytest.raises(TtsError, match=r"every TTS engine failed \(fake → fake\); last: second"):
        async for _ in chain.synthesize("Hi."):
            pass


class BreaksMidSentence:
    name = "breaks"

    def __init__(self) -> None:
        self.closed = False

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        yield TtsAudio(b"\x01\x00" * 100, 16000)
        raise TtsError("dropped mid-sentence")

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


async def test_a_failure_after_audio_is_not_handed_on() -> None:
    # The caller heard part of the sentence: a second voice starting it again would be garbled.
    backup = FakeTts({"firstChunkMs": 0})
    chain = FallbackTts([BreaksMidSentence(), backup], 1.0)
    heard: list[TtsAudio] = []
    with pytest.raises(TtsError, match="dropped mid-sentence"):
        async for chunk in chain.synthesize("Hi."):
            heard.append(chunk)
    assert len(heard) == 1 and backup.requests == []


async def test_a_streamed_call_still_plays_when_the_first_engine_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeElevenLabs(EL_KEY, first_byte_ms=0, per_chunk_ms=10) as elevenlabs:
        tts = {
            "provider": "openai",
            "fallback": ["elevenlabs"],
            "providers": {
                "openai": {"baseUrl": closed_port_url()},
                "elevenlabs": {"apiKey": EL_KEY, "baseUrl": elevenlabs.url},
            },
        }
        with caplog.at_level(logging.WARNING, logger="voice_call.speech"):
            async with media_server(tmp_path, "twilio", tts=tts) as media:
                record = await media.new_call()
                client = media.client(record)
                await client.open()
                session = await media.runtime.media.wait_for(record.call_id, 5)
                assert session is not None
                result = await asyncio.wait_for(session.speak("Hello there."), 15)
                await client.close()
    assert result.status is PlaybackStatus.PLAYED and result.heard_text == "Hello there."
    payloads = [base64.b64decode(f.frame["media"]["payload"]) for f in client.media_frames()]
    assert any(p != b"\xff" * len(p) for p in payloads)  # a voice, not only keep-alive silence
    assert [r.body["text"] for r in elevenlabs.requests] == ["Hello there."]
    [warning, *_] = fallback_warnings(caplog)
    assert warning.startswith('tts fallback: "openai" failed') and '"elevenlabs"' in warning
