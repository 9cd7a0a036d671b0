"""The ElevenLabs realtime STT client against the fake ElevenLabs socket, and its config."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.speech.test_stt_realtime import SILENT, Heard, loud_frame
from tests.support import wait_until
from voice_call.config import ConfigError, parse_config
from voice_call.sim.elevenlabs import FakeElevenLabs, SttScript
from voice_call.speech.stack import SpeechStack, SpeechUnavailable
from voice_call.speech.stt.base import SttError
from voice_call.speech.stt.elevenlabs import ElevenLabsStt, ElevenLabsSttSettings, session_url

KEY = "el-test"
QUICK = {"first_partial_ms": 0, "per_word_ms": 0, "commit_ms": 0}


def settings(fake: FakeElevenLabs, **changes: Any) -> ElevenLabsSttSettings:
    base = ElevenLabsSttSettings(api_key=KEY, url=fake.stt_url, vad_silence_threshold_secs=0.4)
    return replace(base, **changes)


async def talk(stt: ElevenLabsStt, speech_frames: int = 15, quiet_frames: int = 30) -> None:
    for index in range(speech_frames):
        stt.send_audio(loud_frame(index))
        await asyncio.sleep(0)
    for _ in range(quiet_frames):
        stt.send_audio(SILENT)
        await asyncio.sleep(0)


async def test_partials_then_the_committed_transcript_from_forwarded_ulaw() -> None:
    script = SttScript(["yes tuesday works"], **QUICK)
    async with FakeElevenLabs(KEY, transcription=script) as fake:
        heard = Heard()
        stt = ElevenLabsStt(settings(fake), heard)
        await stt.connect()
        await talk(stt)
        assert await heard.wait("final") == "yes tuesday works"
        await stt.close()
    # no speech-started event exists: the first partial is the barge-in trigger, once
    kinds = [kind for kind, _ in heard.events]
    assert kinds == ["speech", "partial", "partial", "partial", "final"]
    assert [text for kind, text in heard.events if kind == "partial"] == [
        "yes",
        "yes tuesday",
        "yes tuesday works",
    ]
    [session] = fake.stt_sessions
    assert session.headers["xi-api-key"] == KEY
    assert session.query["audio_format"] == "ulaw_8000"  # µ-law as the carrier sent it
    assert session.query["commit_strategy"] == "vad"
    assert session.query["model_id"] == "scribe_v2_realtime"
    chunks = [m for m in session.received if m["message_type"] == "input_audio_chunk"]
    assert len(chunks) == 45 and {m["sample_rate"] for m in chunks} == {8000}
    assert not any(m["commit"] for m in chunks)  # the service's VAD commits


async def test_the_end_of_speech_is_placed_before_the_vad_s_silence() -> None:
    script = SttScript(["yes please"], **QUICK)
    async with FakeElevenLabs(KEY, transcription=script) as fake:
        heard = Heard()
        stt = ElevenLabsStt(settings(fake, vad_silence_threshold_secs=0.5), heard)
        await stt.connect()
        assert stt.speech_ended_at is None
        await talk(stt)
        await heard.wait("final")
        now = time.monotonic()
        await stt.close()
    assert stt.speech_ended_at is not None
    assert 0.5 <= now - stt.speech_ended_at < 1.5


async def test_a_wrong_key_fails_connect_with_the_reason() -> None:
    async with FakeElevenLabs(KEY) as fake:
        stt = ElevenLabsStt(settings(fake, api_key="el-wrong"), Heard())
        with pytest.raises(SttError, match="refused the session: Invalid API key"):
            await stt.connect()
        await stt.close()
    [session] = fake.stt_sessions
    assert session.sent == [{"message_type": "auth_error", "error": "Invalid API key"}]
    assert session.close_code == 1008


async def test_an_unexpected_close_reconnects_with_backoff() -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    script = SttScript(["after the drop"], **QUICK)
    async with FakeElevenLabs(KEY, transcription=script) as fake:
        heard = Heard()
        stt = ElevenLabsStt(settings(fake), heard, sleep=no_wait)
        await stt.connect()
        await fake.drop_stt(1011)
        await wait_until(lambda: stt.reconnects == 1)
        await talk(stt)
        assert await heard.wait("final") == "after the drop"
        await stt.close()
    assert waits == [1.0] and len(fake.stt_sessions) == 2


async def test_reconnects_run_out_and_report_a_fatal_error() -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    heard = Heard()
    async with FakeElevenLabs(KEY) as fake:
        stt = ElevenLabsStt(
            settings(fake, max_reconnects=3, connect_timeout_s=2), heard, sleep=no_wait
        )
        await stt.connect()
    assert "reconnecting failed" in await heard.wait("fatal")
    assert waits == [1.0, 2.0, 4.0] and not stt.connected
    await stt.close()


async def test_an_error_message_is_reported_and_the_session_goes_on() -> None:
    script = SttScript(["still here"], **QUICK)
    async with FakeElevenLabs(KEY, transcription=script) as fake:
        heard = Heard()
        stt = ElevenLabsStt(settings(fake), heard)
        await stt.connect()
        assert stt._ws is not None
        await stt._ws.send('{"message_type": "input_audio_chunk", "audio_base_64": "%%%"}')
        assert "input_error" in await heard.wait("error")
        await talk(stt)
        assert await heard.wait("final") == "still here"
        await stt.close()


def test_the_session_url_carries_the_settings_and_keeps_a_configured_query() -> None:
    url = session_url(
        ElevenLabsSttSettings(
            api_key=KEY,
            url="wss://eu.example/v1/speech-to-text/realtime?enable_logging=false",
            language="de",
            vad_silence_threshold_secs=1.2,
        )
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {
        "model_id": "scribe_v2_realtime",
        "audio_format": "ulaw_8000",
        "commit_strategy": "vad",
        "vad_silence_threshold_secs": "1.2",
        "vad_threshold": "0.4",
        "min_speech_duration_ms": "100",
        "min_silence_duration_ms": "100",
        "language_code": "de",
        "enable_logging": "false",
    }


# --------------------------------------------------------------------------- config


def streaming(block: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    providers = {"elevenlabs": block} if block is not None else {}
    return {
        "streaming": {"enabled": True, "provider": "elevenlabs", "providers": providers},
        "tts": {"provider": "fake"},
        **top,
    }


async def test_the_stack_hears_through_elevenlabs_with_the_configured_settings() -> None:
    script = SttScript(["hello from the config"], **QUICK)
    async with FakeElevenLabs(KEY, transcription=script) as fake:
        block = {"url": fake.stt_url, "language": "en", "vadSilenceThresholdSecs": 0.4}
        config = parse_config(streaming(block), env={"ELEVENLABS_API_KEY": KEY})
        stack = SpeechStack(config)
        stt = stack.new_stt()
        assert isinstance(stt, ElevenLabsStt)
        heard = Heard()
        stt.listener = heard
        await stt.connect()
        await talk(stt)
        assert await heard.wait("final") == "hello from the config"
        await stt.close()
        await stack.close()
    query = fake.stt_sessions[0].query
    assert query["language_code"] == "en" and query["vad_silence_threshold_secs"] == "0.4"


def test_no_elevenlabs_key_is_reported_at_start_with_the_fix() -> None:
    config = parse_config(streaming(), env={})
    with pytest.raises(SpeechUnavailable, match=r"streaming\.providers\.elevenlabs\.apiKey") as err:
        SpeechStack(config)
    assert "ELEVENLABS_API_KEY" in str(err.value)


@pytest.mark.parametrize(
    ("block", "wrong"),
    [
        ({"url": "https://api.elevenlabs.io"}, "not a WebSocket URL"),
        ({"vadSilenceThresholdSecs": 0.2}, "vadSilenceThresholdSecs"),
        ({"commitStrategy": "manual"}, "commitStrategy"),
    ],
)
def test_bad_elevenlabs_settings_are_refused(block: dict[str, Any], wrong: str) -> None:
    with pytest.raises(ConfigError, match=wrong):
        parse_config(streaming(block, elevenlabsApiKey=KEY), env={})
