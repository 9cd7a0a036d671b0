"""Deepgram Aura text-to-speech against the fake `/v1/speak`, and how config picks it."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx
import pytest

from voice_call.config import ConfigError, parse_config
from voice_call.sim.deepgram import FakeDeepgram, SpeakScript
from voice_call.sim.voice import synthetic_speech
from voice_call.speech.stack import SpeechStack, SpeechUnavailable
from voice_call.speech.tts.base import TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.deepgram import DeepgramTts
from voice_call.speech.tts.settings import resolve_tts

KEY = "dg-test"


def quick() -> SpeakScript:
    return SpeakScript(first_byte_ms=0, per_chunk_ms=0)


async def collect(chunks: AsyncGenerator[TtsAudio, None]) -> list[TtsAudio]:
    return [chunk async for chunk in chunks]


async def test_deepgram_streams_ulaw_at_8_khz_with_no_header_to_strip() -> None:
    async with FakeDeepgram(KEY, speak=quick()) as fake:
        engine = DeepgramTts({"apiKey": KEY, "baseUrl": fake.url, "model": "aura-2-orion-en"})
        try:
            await engine.warm()
            chunks = await collect(engine.synthesize("Hello there."))
        finally:
            await engine.close()
    assert len(chunks) > 1 and {(c.rate, c.encoding) for c in chunks} == {(8000, "ulaw")}
    # what the phone line plays, byte for byte: no WAV header, no resampling
    assert b"".join(c.data for c in chunks) == synthetic_speech("Hello there.")
    speak = next(r for r in fake.requests if r.path == "/v1/speak")
    assert speak.query == {
        "model": "aura-2-orion-en",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "container": "none",
    }
    assert speak.body == {"text": "Hello there."}
    assert speak.headers["authorization"] == f"Token {KEY}" and speak.status == 200


async def test_a_refusal_or_an_outage_is_a_tts_error_and_no_key_is_refused_at_build() -> None:
    async with FakeDeepgram(KEY, speak=quick()) as fake:
        wrong = DeepgramTts({"apiKey": "dg-wrong", "baseUrl": fake.url})
        with pytest.raises(TtsError, match=r"HTTP 401 .*Invalid credentials"):
            await collect(wrong.synthesize("Hi."))
        await wrong.close()
        fake.speak.fail = (503, "SERVICE_UNAVAILABLE", "Overloaded.")
        failing = DeepgramTts({"apiKey": KEY, "baseUrl": fake.url})
        with pytest.raises(TtsError, match="HTTP 503"):
            await collect(failing.synthesize("Hi."))
        await failing.close()
    unreachable = DeepgramTts({"apiKey": KEY, "baseUrl": "http://127.0.0.1:9"})
    with pytest.raises(TtsError, match="ConnectError"):
        await collect(unreachable.synthesize("Hi."))
    await unreachable.close()
    with pytest.raises(TtsUnavailable, match="Deepgram needs an API key — set deepgramApiKey"):
        DeepgramTts({})


async def test_the_fake_refuses_mp3_and_wraps_raw_audio_in_wav_unless_told_none() -> None:
    async with (
        FakeDeepgram(KEY, speak=quick()) as fake,
        httpx.AsyncClient(base_url=fake.url) as http,
    ):
        auth = {"Authorization": f"Token {KEY}"}
        mp3 = await http.post("/v1/speak", headers=auth, json={"text": "Hi."})
        assert mp3.status_code == 400 and "MP3" in mp3.json()["err_msg"]
        wav = await http.post("/v1/speak?encoding=mulaw", headers=auth, json={"text": "Hi."})
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        assert wav.content[44:] == synthetic_speech("Hi.")
        empty = await http.post("/v1/speak?encoding=mulaw&container=none", headers=auth, json={})
        assert empty.status_code == 400 and set(empty.json()) == {
            "err_code",
            "err_msg",
            "request_id",
        }
        bearer = await http.post(
            "/v1/speak?encoding=mulaw", headers={"Authorization": f"Bearer {KEY}"}, json={}
        )
        assert bearer.status_code == 401 and bearer.json()["err_code"] == "INVALID_AUTH"


def test_a_deepgram_key_alone_does_not_change_the_default_voice() -> None:
    """Deepgram is spoken only when named: a key kept for its STT keeps the seed's choice."""
    assert resolve_tts(None, None, deepgram_api_key="dg").provider == "espeak"
    both = resolve_tts(None, None, openai_api_key="sk", deepgram_api_key="dg")
    assert both.provider == "openai"
    named = resolve_tts(None, {"provider": "deepgram"}, deepgram_api_key="dg")
    assert (named.provider, named.options) == ("deepgram", {"apiKey": "dg"})


async def test_config_picks_deepgram_with_the_key_from_the_environment() -> None:
    async with FakeDeepgram(KEY, speak=quick()) as fake:
        raw = {
            "streaming": {"enabled": True, "provider": "fake"},
            "tts": {"provider": "deepgram", "providers": {"deepgram": {"baseUrl": fake.url}}},
        }
        config = parse_config(raw, env={"DEEPGRAM_API_KEY": KEY})
        assert config.deepgram_api_key == KEY
        stack = SpeechStack(config)
        try:
            engine = stack.voice().engine
            assert isinstance(engine, DeepgramTts) and engine.model == "aura-2-thalia-en"
            audio = b"".join(c.data for c in await collect(engine.synthesize("Yes.")))
        finally:
            await stack.close()
    assert audio == synthetic_speech("Yes.")
    with pytest.raises(SpeechUnavailable, match="Deepgram needs an API key"):
        SpeechStack(parse_config({**raw, "tts": {"provider": "deepgram"}}, env={}))
    with pytest.raises(ConfigError, match=r'"deepgram" has no API key — set tts\.providers'):
        parse_config({**raw, "tts": {"provider": "fake", "fallback": ["deepgram"]}}, env={})
    with pytest.raises(ConfigError, match=r"tts\.providers\.deepgram\.voice: unknown key"):
        parse_config({**raw, "tts": {"providers": {"deepgram": {"voice": "x"}}}}, env={})
