"""The fake `POST /v1/audio/speech`: each malformed body gets OpenAI's 400 naming the parameter,
and a scripted voice replaces the synthetic one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from voice_call.sim.openai.errors import NOT_JSON, InvalidRequest
from voice_call.sim.openai.server import FakeOpenAI, SpeechScript
from voice_call.sim.openai.speech import MAX_INPUT, parse_speech_request, wav_header

KEY = "sk-test-key"
GOOD: dict[str, Any] = {"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "pcm"}


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"model": 7}, "model", "invalid_type"),
        ({"input": ["hi"]}, "input", "invalid_type"),
        ({"input": "x" * (MAX_INPUT + 1)}, "input", "string_above_max_length"),
        ({"voice": 3}, "voice", "invalid_type"),
        ({"voice": {"name": "alloy"}}, "voice", "invalid_type"),
        ({"response_format": "ogg"}, "response_format", "invalid_value"),
        ({"response_format": "opus"}, "response_format", "unsupported_value"),
        ({"speed": "fast"}, "speed", "invalid_type"),
        ({"speed": True}, "speed", "invalid_type"),
        ({"speed": 0.2}, "speed", "invalid_value"),
        ({"speed": 4.5}, "speed", "invalid_value"),
        ({"stream_format": "sse"}, "stream_format", "unsupported_value"),
    ],
)
def test_each_bad_field_is_refused_by_name(change: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_speech_request({**GOOD, **change})
    assert (refused.value.param, refused.value.code) == (param, code)


@pytest.mark.parametrize("name", ["model", "input", "voice"])
def test_a_missing_required_field_is_named(name: str) -> None:
    body = {k: v for k, v in GOOD.items() if k != name}
    with pytest.raises(InvalidRequest, match=f"Missing required parameter: '{name}'"):
        parse_speech_request(body)


def test_a_good_body_is_read_with_its_defaults() -> None:
    speech = parse_speech_request({**GOOD, "voice": {"id": "voice_123"}, "speed": 2})
    assert (speech.text, speech.response_format, speech.speed) == ("hi", "pcm", 2.0)
    assert isinstance(speech.speed, float)
    assert parse_speech_request({**GOOD, "input": "x" * MAX_INPUT}).text == "x" * MAX_INPUT


async def test_the_route_answers_openai_errors_and_plays_a_scripted_voice() -> None:
    heard: list[tuple[str, float]] = []

    def voice(text: str, speed: float) -> bytes:
        heard.append((text, speed))
        return b"\x01\x00" * 10

    script = SpeechScript(first_byte_ms=0, per_chunk_ms=0, chunk_bytes=8, audio=voice)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with FakeOpenAI(KEY, speech=script) as fake, httpx.AsyncClient(headers=headers) as http:
        url = f"{fake.url}/audio/speech"
        not_json = await http.post(url, content=b"{not json")
        assert not_json.status_code == 400
        assert not_json.json()["error"]["message"] == NOT_JSON
        array = await http.post(url, json=[GOOD])
        assert array.status_code == 400
        assert array.json()["error"]["param"] == "body"
        pcm = await http.post(url, json={**GOOD, "speed": 1.5})
        assert pcm.status_code == 200
        assert pcm.headers["content-type"] == "audio/pcm"
        assert pcm.content == b"\x01\x00" * 10
        wav = await http.post(url, json={**GOOD, "response_format": "wav"})
        assert wav.headers["content-type"] == "audio/wav"
        assert wav.content == wav_header(20) + b"\x01\x00" * 10
    assert heard == [("hi", 1.5), ("hi", 1.0)]


async def test_empty_audio_still_gets_a_wav_header() -> None:
    script = SpeechScript(first_byte_ms=0, per_chunk_ms=0, audio=lambda text, speed: b"")
    headers = {"Authorization": f"Bearer {KEY}"}
    async with FakeOpenAI(KEY, speech=script) as fake, httpx.AsyncClient(headers=headers) as http:
        wav = await http.post(f"{fake.url}/audio/speech", json={**GOOD, "response_format": "wav"})
    assert wav.status_code == 200
    assert wav.content == wav_header(0)
