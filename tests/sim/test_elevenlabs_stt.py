"""The fake ElevenLabs realtime STT socket, spoken to raw: its messages, refusals and timing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.speech.test_stt_realtime import SILENT, loud_frame
from voice_call.sim.elevenlabs import FakeElevenLabs, SttScript

KEY = "el-test"
QUERY = "?model_id=scribe_v2_realtime&audio_format=ulaw_8000"


@asynccontextmanager
async def socket(
    fake: FakeElevenLabs, query: str = QUERY, key: str | None = KEY
) -> AsyncIterator[ClientConnection]:
    headers = {"xi-api-key": key} if key is not None else {}
    async with connect(fake.stt_url + query, additional_headers=headers, proxy=None) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


def chunk(audio: bytes, **fields: Any) -> str:
    body = {"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(audio).decode()}
    return json.dumps({**body, "commit": False, "sample_rate": 8000, **fields})


async def talk(ws: ClientConnection, speech: int = 15, quiet: int = 40) -> None:
    for index in range(speech):
        await ws.send(chunk(loud_frame(index)))
    for _ in range(quiet):
        await ws.send(chunk(SILENT))


async def test_the_session_starts_with_its_config_echoed() -> None:
    async with FakeElevenLabs(KEY) as fake, socket(fake, QUERY + "&language_code=en") as ws:
        started = await receive(ws)
    assert started["message_type"] == "session_started" and started["session_id"]
    assert started["config"] == {
        "model_id": "scribe_v2_realtime",
        "audio_format": "ulaw_8000",
        "sample_rate": 8000,
        "commit_strategy": "manual",
        "vad_silence_threshold_secs": 1.5,
        "vad_threshold": 0.4,
        "min_speech_duration_ms": 100,
        "min_silence_duration_ms": 100,
        "language_code": "en",
        "include_timestamps": False,
    }


async def test_vad_commits_partials_then_the_transcript_and_records_everything() -> None:
    script = SttScript(["see you tuesday"], first_partial_ms=0, per_word_ms=0, commit_ms=0)
    query = QUERY + "&commit_strategy=vad&vad_silence_threshold_secs=0.4&include_timestamps=true"
    async with FakeElevenLabs(KEY, transcription=script) as fake, socket(fake, query) as ws:
        await receive(ws)
        await talk(ws)
        messages = [await receive(ws) for _ in range(5)]
    assert [m["message_type"] for m in messages] == [
        "partial_transcript",
        "partial_transcript",
        "partial_transcript",
        "committed_transcript",
        "committed_transcript_with_timestamps",
    ]
    assert [m["text"] for m in messages] == ["see", "see you", "see you tuesday"] + [
        "see you tuesday"
    ] * 2
    words = messages[-1]["words"]
    assert [w["text"] for w in words] == ["see", "you", "tuesday"]
    assert 0 <= words[0]["start"] < words[-1]["end"] <= 0.4  # 300 ms of speech, in seconds
    [session] = fake.stt_sessions
    assert len(session.received) == 55 and session.sent[1:] == messages


async def test_a_manual_commit_ends_the_segment_without_waiting_for_quiet() -> None:
    script = SttScript(["right now"], first_partial_ms=0, per_word_ms=0, commit_ms=0)
    async with FakeElevenLabs(KEY, transcription=script) as fake, socket(fake) as ws:
        await receive(ws)
        await ws.send(chunk(loud_frame(), commit=True))
        assert [await receive(ws) for _ in range(3)] == [
            {"message_type": "partial_transcript", "text": "right"},
            {"message_type": "partial_transcript", "text": "right now"},
            {"message_type": "committed_transcript", "text": "right now"},
        ]


async def test_the_first_partial_waits_first_partial_ms_scaled_by_time_scale() -> None:
    script = SttScript(["hello"], first_partial_ms=4000, per_word_ms=0, commit_ms=0)
    fake = FakeElevenLabs(KEY, transcription=script, time_scale=0.05)
    async with fake, socket(fake) as ws:
        await receive(ws)
        started = time.monotonic()
        await ws.send(chunk(loud_frame()))
        partial = await receive(ws)
        waited = time.monotonic() - started
    assert partial == {"message_type": "partial_transcript", "text": "hello"}
    assert 0.2 <= waited < 1.0  # 4 s × 0.05


@pytest.mark.parametrize(("key", "error"), [("el-wrong", "Invalid API key"), (None, "Missing")])
async def test_a_wrong_or_missing_key_gets_auth_error_and_a_1008_close(
    key: str | None, error: str
) -> None:
    async with FakeElevenLabs(KEY) as fake, socket(fake, key=key) as ws:
        refusal = await receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert refusal["message_type"] == "auth_error" and error in refusal["error"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_the_token_query_authenticates_too() -> None:
    async with FakeElevenLabs(KEY) as fake, socket(fake, QUERY + f"&token={KEY}", None) as ws:
        assert (await receive(ws))["message_type"] == "session_started"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?audio_format=ulaw_8000", "model_id is required"),
        ("?model_id=m&audio_format=mp3_44100", "audio_format must be one of"),
        ("?model_id=m&commit_strategy=auto", "commit_strategy"),
        ("?model_id=m&vad_silence_threshold_secs=9", "between 0.3 and 3.0"),
    ],
)
async def test_a_bad_setting_gets_input_error_and_a_1008_close(query: str, error: str) -> None:
    async with FakeElevenLabs(KEY) as fake, socket(fake, query) as ws:
        refusal = await receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert refusal["message_type"] == "input_error" and error in refusal["error"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "Invalid JSON"),
        (json.dumps({"message_type": "commit"}), "Unknown message_type"),
        (json.dumps({"message_type": "input_audio_chunk", "audio_base_64": "%"}), "base64"),
        (chunk(SILENT, sample_rate=16000), "sample_rate 16000"),
    ],
)
async def test_a_bad_message_gets_input_error_and_the_socket_stays_open(
    message: str, error: str
) -> None:
    async with FakeElevenLabs(KEY) as fake, socket(fake) as ws:
        await receive(ws)
        await ws.send(message)
        answer = await receive(ws)
        await ws.send(chunk(SILENT))
        await ws.ping()
    assert answer["message_type"] == "input_error" and error in answer["error"]


async def test_drop_closes_open_sockets_with_the_given_code() -> None:
    async with FakeElevenLabs(KEY) as fake, socket(fake) as ws:
        await receive(ws)
        await fake.drop_stt(1011)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert fake.stt_sessions[0].close_code == 1011
