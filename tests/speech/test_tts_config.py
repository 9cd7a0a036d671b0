"""What the `tts` settings do on a call, seen at the fake speech services: the plugin's
`speakerVoice` / `speakerVoiceId` names reach the request, ElevenLabs `voiceSettings` go out in
the API's own spelling, and OpenClaw's `messages.tts` counts only where calls use it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from voice_call.config import parse_config
from voice_call.sim.elevenlabs import FakeElevenLabs
from voice_call.sim.openai import FakeOpenAI, SpeechScript
from voice_call.speech.stack import SpeechStack, SpeechUnavailable
from voice_call.speech.tts.base import TtsAudio

KEY = "sk-test"
EL_KEY = "el-test"
QUICK = SpeechScript(first_byte_ms=0, per_chunk_ms=0, chunk_bytes=4800)


async def spoken(stack: SpeechStack, text: str, route: Any = None) -> bytes:
    chunks: AsyncGenerator[TtsAudio, None] = stack.voice(route).engine.synthesize(text)
    return b"".join([chunk.data async for chunk in chunks])


def streaming(tts: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"streaming": {"enabled": True, "provider": "fake"}, "tts": tts, **top}


async def test_speaker_voice_reaches_openai() -> None:
    async with FakeOpenAI(KEY, speech=QUICK) as fake:
        openai = {"apiKey": KEY, "baseUrl": fake.url, "speakerVoice": "nova"}
        config = parse_config(streaming({"providers": {"openai": openai}}), env={})
        stack = SpeechStack(config)
        try:
            assert await spoken(stack, "Hello there.")
        finally:
            await stack.close()
    [request] = [r for r in fake.requests if r.path == "/v1/audio/speech"]
    assert request.status == 200 and request.body["voice"] == "nova"


async def test_speaker_voice_id_and_voice_settings_reach_elevenlabs() -> None:
    async with FakeElevenLabs(EL_KEY, first_byte_ms=0, per_chunk_ms=0) as fake:
        block = {
            "apiKey": EL_KEY,
            "baseUrl": fake.url,
            "speakerVoiceId": "voice-from-docs",
            "voiceSettings": {"stability": 0.4, "similarityBoost": 0.8, "useSpeakerBoost": True},
        }
        config = parse_config(
            streaming({"provider": "elevenlabs", "providers": {"elevenlabs": block}}), env={}
        )
        stack = SpeechStack(config)
        try:
            assert await spoken(stack, "Hello there.")
        finally:
            await stack.close()
    [request] = fake.requests
    assert request.path == "/v1/text-to-speech/voice-from-docs/stream" and request.status == 200
    assert request.body["voice_settings"] == {
        "stability": 0.4,
        "similarity_boost": 0.8,
        "use_speaker_boost": True,
    }


async def test_a_number_route_speaker_voice_wins_for_its_calls() -> None:
    async with FakeOpenAI(KEY, speech=QUICK) as fake:
        raw = streaming(
            {"providers": {"openai": {"apiKey": KEY, "baseUrl": fake.url, "voice": "alloy"}}},
            numbers={"+15550001111": {"tts": {"providers": {"openai": {"speakerVoice": "echo"}}}}},
        )
        config = parse_config(raw, env={})
        stack = SpeechStack(config)
        try:
            await spoken(stack, "Default line.")
            await spoken(stack, "Routed line.", config.numbers["+15550001111"].tts)
        finally:
            await stack.close()
    voices = [r.body["voice"] for r in fake.requests if r.path == "/v1/audio/speech"]
    assert voices == ["alloy", "echo"]


# --- OpenClaw's messages.tts -----------------------------------------------------------------


def openclaw(config: dict[str, Any], core_tts: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": {"entries": {"voice-call": {"config": config}}},
        "messages": {"tts": core_tts},
    }


async def test_core_tts_counts_only_where_calls_use_it(caplog: pytest.LogCaptureFixture) -> None:
    core = {
        "provider": "openai",
        "auto": "always",  # OpenClaw's chat-reply switch: not ours
        "maxTextLength": 4000,
        "providers": {
            "openai": {"speakerVoice": "fable", "responseFormat": "mp3"},
            "edge": {"voice": "en-US-AriaNeural"},  # another engine: left to OpenClaw
        },
    }
    async with FakeOpenAI(KEY, speech=QUICK) as fake:
        ours = streaming({"providers": {"openai": {"apiKey": KEY, "baseUrl": fake.url}}})
        config = parse_config(openclaw(ours, core), env={})
        with caplog.at_level(logging.WARNING, logger="voice_call.speech"):
            stack = SpeechStack(config)
        try:
            await spoken(stack, "Hello.")
        finally:
            await stack.close()
    [request] = [r for r in fake.requests if r.path == "/v1/audio/speech"]
    assert request.body["voice"] == "fable" and request.body["response_format"] == "pcm"
    assert stack.warnings == [
        "messages.tts.providers.openai.responseFormat: not used for calls — ignored"
    ]
    assert "responseFormat: not used for calls" in caplog.text


def test_a_bad_core_value_fails_only_for_the_engine_in_use() -> None:
    core = {"providers": {"openai": {"speed": "fast"}, "elevenlabs": {"apiKey": "el"}}}
    used = parse_config(
        openclaw(streaming({"provider": "openai"}, openaiApiKey="sk"), core), env={}
    )
    with pytest.raises(SpeechUnavailable) as caught:
        SpeechStack(used)
    assert str(caught.value) == (
        'messages.tts.providers.openai.speed: expected a number, got "fast"'
        " — write a number without quotes"
    )
    other = parse_config(openclaw(streaming({"provider": "elevenlabs"}), core), env={})
    assert SpeechStack(other).voice().engine.name == "elevenlabs"


def test_a_core_provider_calls_cannot_use_is_skipped_with_a_warning() -> None:
    core = {"provider": "azure", "fallback": ["azure", "fake"]}
    config = parse_config(openclaw(streaming({}, openaiApiKey="sk"), core), env={})
    stack = SpeechStack(config)
    assert stack.voice().engine.name == "fallback"  # openai (the key's default), then fake
    assert [engine.name for engine in stack.voice().engine.engines] == ["openai", "fake"]
    assert stack.warnings == [
        'messages.tts.provider "azure" cannot speak on calls — using the default engine for'
        " calls (set tts.provider to openai, elevenlabs or espeak)",
        "messages.tts.fallback: 'azure' cannot speak on calls — skipped",
    ]
