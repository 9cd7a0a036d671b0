"""The fake ElevenLabs streaming TTS, driven with httpx as a provider would drive it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support import StolenTime
from voice_call.sim.ai_http import speech_pcm16
from voice_call.sim.elevenlabs import FakeElevenLabs
from voice_call.sim.voice import synthetic_speech

KEY = "el-test-key"
TEXT = "Thanks for calling, goodbye."
PATH = "/v1/text-to-speech/voice123/stream"


async def stream(
    fake: FakeElevenLabs, output_format: str | None, text: str = TEXT
) -> tuple[list[bytes], float, httpx.Response]:
    """POST and read the body chunk by chunk; returns (chunks, seconds to first byte, response)."""
    params = {"output_format": output_format} if output_format else {}
    async with httpx.AsyncClient(base_url=fake.url) as http:
        started = time.monotonic()
        async with http.stream(
            "POST",
            PATH,
            params=params,
            json={"text": text, "model_id": "eleven_flash_v2_5"},
            headers={"xi-api-key": KEY},
        ) as response:
            chunks, first = [], 0.0
            async for chunk in response.aiter_raw():
                first = first or time.monotonic() - started
                chunks.append(chunk)
    return chunks, first, response


async def test_ulaw_8000_is_raw_mulaw_streamed_after_the_first_byte_delay() -> None:
    fake = FakeElevenLabs(KEY, first_byte_ms=200, per_chunk_ms=10, chunk_ms=100)
    async with fake:
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            chunks, first, response = await stream(fake, "ulaw_8000")
    assert response.status_code == 200
    audio = b"".join(chunks)
    assert audio == synthetic_speech(TEXT)  # the callee voice, byte for byte: 8 kHz µ-law
    assert len(chunks) > 1 and all(len(c) <= 800 for c in chunks)  # 100 ms chunks
    assert 0.19 <= first < 0.8 + stolen.ms / 1000, (first, stolen.ms)
    assert fake.requests[0].query == {"output_format": "ulaw_8000"}
    assert fake.requests[0].body["text"] == TEXT and fake.requests[0].status == 200


@pytest.mark.parametrize("rate", [16000, 22050, 24000])
async def test_pcm_formats_have_the_length_the_text_implies(rate: int) -> None:
    async with FakeElevenLabs(KEY, first_byte_ms=0, per_chunk_ms=0) as fake:
        chunks, _, response = await stream(fake, f"pcm_{rate}")
    audio = b"".join(chunks)
    assert response.status_code == 200
    assert audio == speech_pcm16(TEXT, rate)
    seconds = len(synthetic_speech(TEXT)) / 8000
    assert abs(len(audio) - seconds * rate * 2) <= 4


async def test_time_scale_shrinks_the_delays() -> None:
    fake = FakeElevenLabs(KEY, first_byte_ms=4000, per_chunk_ms=1000, chunk_ms=500, time_scale=0.01)
    async with fake:
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            started = time.monotonic()
            chunks, first, _ = await stream(fake, "pcm_16000")
            took_s = time.monotonic() - started
    slack_s = stolen.ms / 1000
    assert first < 1.0 + slack_s and len(chunks) > 2  # unscaled: 4 s to the first byte
    assert took_s < 2.0 + slack_s, (took_s, stolen.ms)


async def test_mp3_is_refused_so_the_format_must_be_explicit() -> None:
    async with FakeElevenLabs(KEY, first_byte_ms=0) as fake:
        for output_format in (None, "mp3_44100_128", "mp3_22050_32"):
            _, _, response = await stream(fake, output_format)
            assert response.status_code == 400
        async with httpx.AsyncClient(base_url=fake.url) as http:
            body = (await http.post(PATH, json={"text": "hi"}, headers={"xi-api-key": KEY})).json()
            assert "raw formats" in body["detail"]["message"]
            unknown = await http.post(
                PATH,
                params={"output_format": "wav_99"},
                json={"text": "hi"},
                headers={"xi-api-key": KEY},
            )
            assert unknown.status_code == 422
            assert unknown.json()["detail"][0]["loc"] == ["query", "output_format"]


async def test_auth_and_body_errors_use_elevenlabs_shapes() -> None:
    async with (
        FakeElevenLabs(KEY, voice_ids={"voice123"}) as fake,
        httpx.AsyncClient(base_url=fake.url) as http,
    ):
        query = {"output_format": "ulaw_8000"}
        wrong = await http.post(
            PATH, params=query, json={"text": "hi"}, headers={"xi-api-key": "nope"}
        )
        assert wrong.status_code == 401
        assert wrong.json() == {
            "detail": {"status": "invalid_api_key", "message": "Invalid API key"}
        }
        missing = await http.post(PATH, params=query, json={"text": "hi"})
        assert missing.status_code == 401
        assert missing.json()["detail"]["status"] == "needs_authorization"
        no_text = await http.post(
            PATH, params=query, json={"model_id": "x"}, headers={"xi-api-key": KEY}
        )
        assert no_text.status_code == 422
        problem = no_text.json()["detail"][0]
        assert (problem["type"], problem["loc"]) == ("missing", ["body", "text"])
        not_json = await http.post(PATH, params=query, content=b"{", headers={"xi-api-key": KEY})
        assert not_json.status_code == 422
        other_voice = await http.post(
            "/v1/text-to-speech/someone-else/stream",
            params=query,
            json={"text": "hi"},
            headers={"xi-api-key": KEY},
        )
        assert other_voice.status_code == 404
        assert other_voice.json()["detail"]["status"] == "voice_not_found"
        assert [r.status for r in fake.requests] == [401, 401, 422, 422, 404]


async def test_the_non_streaming_endpoint_returns_the_same_audio_whole() -> None:
    async with (
        FakeElevenLabs(KEY, first_byte_ms=0, per_chunk_ms=0) as fake,
        httpx.AsyncClient(base_url=fake.url) as http,
    ):
        whole = await http.post(
            "/v1/text-to-speech/voice123",
            params={"output_format": "ulaw_8000"},
            json={"text": TEXT},
            headers={"xi-api-key": KEY},
        )
    assert whole.status_code == 200
    assert whole.content == synthetic_speech(TEXT)
    assert int(whole.headers["content-length"]) == len(whole.content)
