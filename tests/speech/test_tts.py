"""Text-to-speech for calls: settings resolution, each engine against its fake, sentences."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voice_call.asgi_server import BackgroundServer
from voice_call.config import ConfigError, parse_config
from voice_call.sim.elevenlabs import FakeElevenLabs
from voice_call.sim.openai import FakeOpenAI, SpeechScript
from voice_call.speech.sentences import split_sentences
from voice_call.speech.stack import SpeechStack, SpeechUnavailable
from voice_call.speech.tts.base import TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.elevenlabs import ElevenLabsTts
from voice_call.speech.tts.espeak import EspeakTts
from voice_call.speech.tts.fake import FakeTts
from voice_call.speech.tts.openai import OpenAITts
from voice_call.speech.tts.settings import deep_merge, resolve_tts

KEY = "sk-test"


async def collect(chunks: AsyncGenerator[TtsAudio, None]) -> list[TtsAudio]:
    return [chunk async for chunk in chunks]


# --------------------------------------------------------------------------- settings


def test_plugin_tts_deep_merges_over_the_global_section_and_a_route_over_both() -> None:
    core = {"provider": "openai", "openai": {"voice": "alloy", "model": "tts-1"}, "timeoutMs": 5000}
    plugin = {"providers": {"openai": {"voice": "coral"}}}
    route = {"providers": {"openai": {"speed": 1.25}}}
    settings = resolve_tts(core, plugin, route, openai_api_key="sk-global")
    assert settings.provider == "openai"
    assert settings.options == {
        "voice": "coral",
        "model": "tts-1",
        "speed": 1.25,
        "apiKey": "sk-global",
    }
    assert settings.timeout_s == 5.0 and settings.warnings == []
    assert core == {
        "provider": "openai",
        "openai": {"voice": "alloy", "model": "tts-1"},
        "timeoutMs": 5000,
    }


def test_deep_merge_replaces_non_objects_and_copies() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [2]}, "d": {"x": 1}})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": {"x": 1}}
    merged["a"]["b"] = 9
    assert base["a"]["b"] == 1


def test_default_engine_follows_the_keys_and_falls_back_to_espeak() -> None:
    assert resolve_tts({}, {}, openai_api_key="sk").provider == "openai"
    assert resolve_tts({}, {}, elevenlabs_api_key="el").provider == "elevenlabs"
    plugin_key = {"providers": {"elevenlabs": {"apiKey": "el"}}}
    assert resolve_tts({}, plugin_key, openai_api_key="sk").provider == "elevenlabs"
    assert resolve_tts(None, None).provider == "espeak"
    assert resolve_tts({}, {}).timeout_s == 8.0


def test_edge_is_ignored_for_calls_with_a_warning() -> None:
    settings = resolve_tts({"provider": "edge"}, {}, openai_api_key="sk")
    assert settings.provider == "openai"
    assert "Edge TTS" in settings.warnings[0] and "ignored" in settings.warnings[0]


def test_bad_tts_settings_name_the_fix() -> None:
    with pytest.raises(TtsUnavailable, match=r'tts\.provider: must be one of .*"typecast"'):
        resolve_tts({}, {"provider": "typecast"})
    with pytest.raises(TtsUnavailable, match=r"tts\.timeoutMs: must be greater than 0"):
        resolve_tts({}, {"timeoutMs": 0})
    with pytest.raises(TtsUnavailable, match="needs an API key"):
        OpenAITts({})
    with pytest.raises(TtsUnavailable, match=r"tts.providers.openai.voice: expected a string"):
        OpenAITts({"apiKey": "k", "voice": 3})
    with pytest.raises(TtsUnavailable, match=r"mp3_44100_128.*cannot go on a phone line"):
        ElevenLabsTts({"apiKey": "k", "outputFormat": "mp3_44100_128"})


# --------------------------------------------------------------------------- OpenAI


async def test_openai_streams_pcm_and_names_the_format() -> None:
    script = SpeechScript(first_byte_ms=0, per_chunk_ms=0, chunk_bytes=4800)
    async with FakeOpenAI(KEY, speech=script) as fake:
        engine = OpenAITts({"apiKey": KEY, "baseUrl": fake.url, "voice": "coral"})
        try:
            await engine.warm()
            chunks = await collect(engine.synthesize("Hello there."))
        finally:
            await engine.close()
    assert chunks and all(c.rate == 24000 and c.encoding == "pcm16" for c in chunks)
    assert sum(len(c.data) for c in chunks) > 24000  # about a second of audio
    speech = [r for r in fake.requests if r.path == "/v1/audio/speech"]
    assert speech[0].body == {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there.",
        "voice": "coral",
        "response_format": "pcm",
    }


async def test_openai_refusal_is_a_tts_error() -> None:
    async with FakeOpenAI(KEY) as fake:
        engine = OpenAITts({"apiKey": "sk-wrong", "baseUrl": fake.url})
        try:
            with pytest.raises(TtsError, match="HTTP 401"):
                await collect(engine.synthesize("Hi."))
        finally:
            await engine.close()
    unreachable = OpenAITts({"apiKey": KEY, "baseUrl": "http://127.0.0.1:9/v1"})
    with pytest.raises(TtsError, match="ConnectError"):
        await collect(unreachable.synthesize("Hi."))
    await unreachable.close()


# --------------------------------------------------------------------------- ElevenLabs


@pytest.mark.parametrize(
    ("output_format", "rate", "encoding"),
    [(None, 16000, "pcm16"), ("ulaw_8000", 8000, "ulaw"), ("pcm_22050", 22050, "pcm16")],
)
async def test_elevenlabs_asks_for_raw_audio_explicitly(
    output_format: str | None, rate: int, encoding: str
) -> None:
    async with FakeElevenLabs("el-key", first_byte_ms=0, per_chunk_ms=0) as fake:
        options: dict[str, Any] = {"apiKey": "el-key", "baseUrl": fake.url, "voiceId": "v1"}
        if output_format:
            options["outputFormat"] = output_format
        engine = ElevenLabsTts(options)
        try:
            chunks = await collect(engine.synthesize("Hello."))
        finally:
            await engine.close()
    assert chunks and {(c.rate, c.encoding) for c in chunks} == {(rate, encoding)}
    request = fake.requests[-1]
    assert request.path == "/v1/text-to-speech/v1/stream"
    assert request.query == {"output_format": output_format or "pcm_16000"}
    assert "mpeg" not in request.headers.get("accept", "")


async def test_an_mp3_reply_is_refused_not_played() -> None:
    async def mp3(request: Request) -> Response:
        return Response(b"ID3\x03fake-mp3", media_type="audio/mpeg")

    app = Starlette(routes=[Route("/v1/text-to-speech/{voice}/stream", mp3, methods=["POST"])])
    async with BackgroundServer(app, lifespan="off") as server:
        engine = ElevenLabsTts({"apiKey": "k", "baseUrl": server.url})
        try:
            with pytest.raises(TtsError, match="audio/mpeg although pcm_16000 was asked"):
                await collect(engine.synthesize("Hi."))
        finally:
            await engine.close()


# --------------------------------------------------------------------------- espeak-ng

FAKE_ESPEAK = """#!{python}
import struct, sys
args = sys.argv[1:]
assert "--stdout" in args and "--stdin" in args, args
text = sys.stdin.read().strip()
if text == "fail":
    sys.stderr.write("voice not found")
    sys.exit(1)
pcm = b"".join(struct.pack("<h", (i * 97) % 2000 - 1000) for i in range(220 * len(text)))
fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
header = b"RIFF" + struct.pack("<I", 0x7FFFFFFF) + b"WAVE"
header += b"fmt " + struct.pack("<I", 16) + fmt
header += b"LIST" + struct.pack("<I", 4) + b"INFO"
header += b"data" + struct.pack("<I", 0x7FFFFFFF)
sys.stdout.buffer.write(header + pcm)
"""


@pytest.fixture
def fake_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "espeak-ng"
    exe.write_text(FAKE_ESPEAK.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    return exe


async def test_espeak_streams_its_wav_as_pcm(fake_espeak: Path) -> None:
    engine = EspeakTts({"voice": "en-gb"})
    chunks = await collect(engine.synthesize("Hello"))
    assert {c.rate for c in chunks} == {22050}
    assert sum(len(c.data) for c in chunks) == 220 * 5 * 2
    with pytest.raises(TtsError, match="voice not found"):
        await collect(engine.synthesize("fail"))


def test_missing_espeak_is_a_clear_error_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TtsUnavailable, match=r"espeak-ng is not installed.*apt install espeak-ng"):
        EspeakTts({})
    config = parse_config({"streaming": {"enabled": True, "provider": "fake"}}, env={})
    with pytest.raises(SpeechUnavailable, match="espeak-ng is not installed"):
        SpeechStack(config)  # no TTS key: the offline voice is needed, and missing


def test_speech_stack_needs_an_stt_key() -> None:
    config = parse_config({"streaming": {"enabled": True}, "tts": {"provider": "fake"}}, env={})
    with pytest.raises(SpeechUnavailable, match=r"streaming\.providers\.openai\.apiKey: required"):
        SpeechStack(config)
    bad = {"streaming": {"enabled": True, "providers": {"openai": {"vadThreshold": 3}}}}
    with pytest.raises(ConfigError, match="vadThreshold: must be at most 1"):
        parse_config({**bad, "openaiApiKey": "sk", "tts": {"provider": "fake"}}, env={})


# --------------------------------------------------------------------------- fake and sentences


async def test_fake_engine_is_deterministic_and_can_fail() -> None:
    engine = FakeTts({"msPerChar": 50, "rate": 16000, "firstChunkMs": 0})
    first = b"".join(c.data for c in await collect(engine.synthesize("abc")))
    again = b"".join(c.data for c in await collect(engine.synthesize("abc")))
    assert first == again and len(first) == 3 * 800 * 2
    failing = FakeTts({"error": "synthesis exploded", "firstChunkMs": 0})
    with pytest.raises(TtsError, match="exploded"):
        await collect(failing.synthesize("x"))


def test_sentences_split_for_an_early_first_frame() -> None:
    assert split_sentences("Sure.  Tuesday at three works!  Is that OK? Bye") == [
        "Sure.",
        "Tuesday at three works!",
        "Is that OK?",
        "Bye",
    ]
    assert split_sentences("Dr. Smith and J. R. Doe, e.g. them. So am I. Yes.") == [
        "Dr. Smith and J. R. Doe, e.g. them.",
        "So am I.",
        "Yes.",
    ]
    assert split_sentences("Pi is 3.14 today.") == ["Pi is 3.14 today."]
    assert split_sentences("   ") == []
    long = "word " * 100 + "end, " + "more " * 60
    parts = split_sentences(long, max_chars=200)
    assert all(len(p) <= 200 for p in parts) and " ".join(parts).split() == long.split()
