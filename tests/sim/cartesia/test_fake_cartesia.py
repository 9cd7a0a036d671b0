"""The fake Cartesia TTS socket, spoken to raw: handshake refusals, contexts, errors, timing."""

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
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voice_call.sim.cartesia import FakeCartesia
from voice_call.sim.voice import synthetic_speech

KEY = "car-test"
HEADERS = {"X-API-Key": KEY, "Cartesia-Version": "2025-04-16"}


@asynccontextmanager
async def socket(
    fake: FakeCartesia, headers: dict[str, str] = HEADERS, query: str = ""
) -> AsyncIterator[ClientConnection]:
    async with connect(fake.ws_url + query, additional_headers=headers, proxy=None) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Messages up to and including the first of type `kind`."""
    messages = [await receive(ws)]
    while messages[-1]["type"] != kind:
        messages.append(await receive(ws))
    return messages


def request(text: str, context: str = "c1", **fields: Any) -> str:
    body = {
        "model_id": "sonic-2",
        "transcript": text,
        "voice": {"mode": "id", "id": "v1"},
        "language": "en",
        "context_id": context,
        "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
    }
    return json.dumps({**body, **fields})


def audio(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["data"]) for m in messages if m["type"] == "chunk")


def quick() -> FakeCartesia:
    return FakeCartesia(KEY, first_byte_ms=0, per_chunk_ms=0)


async def test_a_transcript_streams_ulaw_chunks_then_done() -> None:
    async with quick() as fake, socket(fake) as ws:
        await ws.send(request("Hello there."))
        messages = await until(ws, "done")
    assert audio(messages) == synthetic_speech("Hello there.")
    chunk = messages[0]
    assert set(chunk) == {
        "type",
        "data",
        "done",
        "status_code",
        "step_time",
        "flush_id",
        "context_id",
    }
    assert (chunk["status_code"], chunk["done"], chunk["context_id"]) == (206, False, "c1")
    assert messages[-1] == {"type": "done", "done": True, "status_code": 206, "context_id": "c1"}
    assert fake.sockets[0].received == [json.loads(request("Hello there."))]


async def test_continuations_flush_and_count_flush_ids_on_one_context() -> None:
    async with quick() as fake, socket(fake) as ws:
        await ws.send(request("One. ", **{"continue": True}))
        await ws.send(request("", **{"continue": True, "flush": True}))
        first = await until(ws, "flush_done")
        await ws.send(request("Two.", **{"continue": False}))
        second = await until(ws, "done")
    assert {m["flush_id"] for m in first if m["type"] == "chunk"} == {1}
    assert first[-1] == {
        "type": "flush_done",
        "done": False,
        "flush_done": True,
        "flush_id": 1,
        "status_code": 206,
        "context_id": "c1",
    }
    assert {m["flush_id"] for m in second if m["type"] == "chunk"} == {2}
    assert audio(first) == synthetic_speech("One. ") and audio(second) == synthetic_speech("Two.")


async def test_contexts_run_side_by_side() -> None:
    fake = FakeCartesia(KEY, first_byte_ms=0, per_chunk_ms=20, time_scale=1.0)
    async with fake, socket(fake) as ws:
        await ws.send(request("A first long sentence to say.", "a"))
        await ws.send(request("A second long sentence to say.", "b"))
        messages = [await receive(ws) for _ in range(6)]
    assert {m["context_id"] for m in messages} == {"a", "b"}


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"model_id": "tacotron"}, "Invalid model"),
        ({"voice": {"mode": "embedding", "embedding": []}}, "voice must be"),
        ({"output_format": {"container": "mp3"}}, "container"),
        (
            {"output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 8000}},
            "encoding",
        ),
        ({"transcript": 5}, "transcript must be a string"),
    ],
)
async def test_an_invalid_request_gets_an_error_frame_and_the_socket_stays_open(
    fields: dict[str, Any], error: str
) -> None:
    async with quick() as fake, socket(fake) as ws:
        await ws.send(request("Hi.", "bad", **fields))
        refusal = await receive(ws)
        await ws.send(request("Hi.", "good"))
        assert (await until(ws, "done"))[-1]["context_id"] == "good"
    assert refusal["type"] == "error" and refusal["done"] is True
    assert refusal["status_code"] == 400 and refusal["context_id"] == "bad"
    assert error in refusal["error"]


async def test_a_context_keeps_its_settings_and_ends_for_good() -> None:
    async with quick() as fake, socket(fake) as ws:
        await ws.send(request("One. ", **{"continue": True}))
        await ws.send(request("Two.", language="de"))
        changed = await until(ws, "error")
        await ws.send(request("Three."))
        finished = await receive(ws)
    assert "keep language the same" in changed[-1]["error"]
    assert "already finished" in finished["error"]


async def test_cancel_stops_a_context_s_audio() -> None:
    fake = FakeCartesia(KEY, first_byte_ms=0, per_chunk_ms=30, time_scale=1.0)
    async with fake, socket(fake) as ws:
        await ws.send(request("A long sentence that takes a while to say out loud."))
        await receive(ws)
        await ws.send(json.dumps({"context_id": "c1", "cancel": True}))
        await ws.send(request("Next.", "c2"))
        after = await until(ws, "done")
    assert after[-1]["context_id"] == "c2"
    chunks = [m for m in fake.sockets[0].sent if m["type"] == "chunk" and m["context_id"] == "c1"]
    assert len(chunks) < 10


async def test_the_scripted_error_answers_every_request() -> None:
    async with quick() as fake, socket(fake) as ws:
        fake.script.error = "Internal server error"
        await ws.send(request("Hi."))
        refusal = await receive(ws)
    assert (refusal["status_code"], refusal["error"]) == (500, "Internal server error")


async def test_first_byte_ms_is_scaled_by_time_scale() -> None:
    async with FakeCartesia(KEY, first_byte_ms=4000, time_scale=0.05) as fake, socket(fake) as ws:
        started = time.monotonic()
        await ws.send(request("Hi."))
        await receive(ws)
        waited = time.monotonic() - started
    assert 0.2 <= waited < 1.0  # 4 s × 0.05


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({"X-API-Key": "car-wrong", "Cartesia-Version": "2025-04-16"}, "", 401),
        ({"Cartesia-Version": "2025-04-16"}, "", 401),
        ({"X-API-Key": KEY}, "", 400),
        ({}, f"?api_key={KEY}&cartesia_version=2025-04-16", 101),
        ({"Authorization": f"Bearer {KEY}", "Cartesia-Version": "2025-04-16"}, "", 101),
    ],
)
async def test_the_handshake_checks_the_key_and_the_version(
    headers: dict[str, str], query: str, status: int
) -> None:
    async with quick() as fake:
        if status == 101:
            async with socket(fake, headers, query) as ws:
                await ws.send(request("Hi."))
                assert (await until(ws, "done"))[-1]["type"] == "done"
        else:
            with pytest.raises(InvalidStatus) as refused:
                async with socket(fake, headers, query):
                    pass
            assert refused.value.response.status_code == status
            assert "error" in json.loads(refused.value.response.body or b"{}")
    assert fake.sockets[0].refused == (None if status == 101 else status)


async def test_drop_closes_the_socket_with_the_given_code() -> None:
    async with quick() as fake, socket(fake) as ws:
        await fake.drop(1011)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert fake.sockets[0].closed
