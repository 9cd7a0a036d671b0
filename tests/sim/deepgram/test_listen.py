"""The fake Deepgram's `/v1/listen` socket, driven with a raw WebSocket client: the handshake
refusals, the event sequence an utterance produces, and the control messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.speech.test_stt_realtime import SILENT, loud_frame
from voice_call.sim.deepgram import FakeDeepgram, ListenScript

KEY = "dg-test"
QUERY = "?encoding=mulaw&sample_rate=8000&channels=1&interim_results=true&endpointing=200"
FULL = QUERY + "&utterance_end_ms=1000&vad_events=true"


def quick(*lines: str) -> ListenScript:
    return ListenScript(lines, first_result_ms=0, per_word_ms=0, final_ms=0)


@asynccontextmanager
async def socket(fake: FakeDeepgram, query: str = FULL) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Token {KEY}"}
    async with connect(fake.listen_url + query, additional_headers=headers) as ws:
        yield ws


async def events_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while not seen or seen[-1]["type"] != kind:
            seen.append(json.loads(await ws.recv()))
    return seen


async def speak(ws: ClientConnection, frames: int = 25, quiet: int = 0) -> None:
    for index in range(frames):
        await ws.send(loud_frame(index))
    for _ in range(quiet):
        await ws.send(SILENT)


@pytest.mark.parametrize(
    ("headers", "query", "status", "code"),
    [
        ({"Authorization": "Token dg-wrong"}, QUERY, 401, "INVALID_AUTH"),
        ({"Authorization": f"Bearer {KEY}"}, QUERY, 401, "INVALID_AUTH"),
        ({}, QUERY, 401, "INVALID_AUTH"),
        ({"Authorization": f"Token {KEY}"}, "?encoding=mulaw", 400, "Bad Request"),
        ({"Authorization": f"Token {KEY}"}, "?sample_rate=8000", 400, "Bad Request"),
        ({"Authorization": f"Token {KEY}"}, QUERY + "&endpointing=soon", 400, "Bad Request"),
        (
            {"Authorization": f"Token {KEY}"},
            "?encoding=mulaw&sample_rate=8000&utterance_end_ms=1000",
            400,
            "Bad Request",
        ),
    ],
)
async def test_a_bad_key_or_parameter_is_refused_at_the_handshake(
    headers: dict[str, str], query: str, status: int, code: str
) -> None:
    async with FakeDeepgram(KEY) as fake:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(fake.listen_url + query, additional_headers=headers):
                pass
    response = refused.value.response
    body = json.loads(response.body or b"")
    assert response.status_code == status and body["err_code"] == code
    assert response.headers["dg-error"] == body["err_msg"] and body["request_id"]
    assert fake.streams[0].refused == status and fake.streams[0].closed


async def test_an_utterance_is_speech_started_interims_a_final_and_an_utterance_end() -> None:
    async with FakeDeepgram(KEY, listen=quick("yes please"), time_scale=0.05) as fake:
        async with socket(fake) as ws:
            await speak(ws, quiet=0)
            started, *interims = await events_until(ws, "Results")
            assert started == {"type": "SpeechStarted", "channel": [0], "timestamp": 0.0}
            await speak(ws, frames=0, quiet=15)  # 300 ms of quiet: past endpointing
            more = await events_until(ws, "Results")
            while not more[-1]["is_final"]:
                more += await events_until(ws, "Results")
            results = interims + more
            await speak(ws, frames=0, quiet=60)  # a second more: past utterance_end_ms
            *_, utterance_end = await events_until(ws, "UtteranceEnd")
            await ws.send(json.dumps({"type": "CloseStream"}))
            *_, metadata = await events_until(ws, "Metadata")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1000
    interim = [r for r in results if not r["is_final"]]
    final = results[-1]
    assert [r["channel"]["alternatives"][0]["transcript"] for r in interim] == ["yes", "yes please"]
    assert (final["is_final"], final["speech_final"]) == (True, True)
    assert final["channel"]["alternatives"][0]["transcript"] == "yes please"
    words = final["channel"]["alternatives"][0]["words"]
    assert [w["punctuated_word"] for w in words] == ["yes", "please"]
    # 25 loud frames: speech from 0 to 0.5 s of stream audio; the endpoint 200 ms later
    assert (final["start"], words[-1]["end"]) == (0.0, 0.5)
    assert utterance_end == {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 0.5}
    assert metadata["duration"] == pytest.approx(2.0, abs=0.02) and metadata["channels"] == 1
    stream = fake.streams[0]
    assert stream.received[0] == {"binary": 160} and stream.received[-1] == {"type": "CloseStream"}
    assert stream.transcripts == ["yes please"] and stream.audio_bytes == 100 * 160


async def test_finalize_ends_the_utterance_early_and_bad_text_closes_the_socket() -> None:
    async with FakeDeepgram(KEY, listen=quick("one two three"), time_scale=0.05) as fake:
        async with socket(fake, QUERY) as ws:  # no vad_events: no SpeechStarted
            await speak(ws)
            await ws.send(json.dumps({"type": "KeepAlive"}))
            await ws.send(json.dumps({"type": "Finalize"}))
            results = await events_until(ws, "Results")
            while not results[-1]["is_final"]:
                results += await events_until(ws, "Results")
            await ws.send("not json")
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
        assert (ws.close_code, ws.close_reason) == (
            1008,
            "DATA-0000: the text message is not a Deepgram control message",
        )
    assert {r["type"] for r in results} == {"Results"}
    final = results[-1]
    assert (final["from_finalize"], final["speech_final"]) == (True, False)
    assert final["channel"]["alternatives"][0]["transcript"] == "one two three"
    assert fake.streams[0].received[-3:] == [
        {"type": "KeepAlive"},
        {"type": "Finalize"},
        {"text": "not json"},
    ]


async def test_refusals_on_demand_end_after_their_count() -> None:
    async with FakeDeepgram(KEY) as fake:
        fake.listen.refuse(429, "Too many requests.", code="TOO_MANY_REQUESTS", count=1)
        with pytest.raises(InvalidStatus) as refused:
            async with socket(fake):
                pass
        assert refused.value.response.status_code == 429
        async with socket(fake) as ws:
            await ws.send(json.dumps({"type": "KeepAlive"}))
            assert await fake.drop_streams(1011, "INTERNAL_SERVER_ERROR") == 1
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1011, "INTERNAL_SERVER_ERROR")
    assert [s.refused for s in fake.streams] == [429, None]
