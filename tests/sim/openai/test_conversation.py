"""The fake OpenAI Realtime conversation socket, driven by a plain `websockets` client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from pydantic import TypeAdapter

from tests.support import wait_until
from voice_call.audio.g711 import SILENCE_BYTE, frames
from voice_call.sim.ai_http import speech_pcm16
from voice_call.sim.openai.conversation import SAY_PREFIX
from voice_call.sim.openai.server import ConversationScript, FakeOpenAI, ToolCall
from voice_call.sim.voice import synthetic_speech

KEY = "sk-test-key"
PCMU = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
}


class Client:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))

    async def next(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = json.loads(await self.ws.recv())
                self.seen.append(event)
                if event["type"] == kind:
                    return event

    async def error(self) -> dict[str, Any]:
        return (await self.next("error"))["error"]

    async def configure(self, session: dict[str, Any] = PCMU) -> dict[str, Any]:
        await self.send({"type": "session.update", "session": session})
        return (await self.next("session.updated"))["session"]

    async def speak(self, text: str) -> None:
        for frame in frames(synthetic_speech(text) + bytes([SILENCE_BYTE]) * 6000):
            audio = base64.b64encode(frame).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": audio})


@asynccontextmanager
async def conversation(fake: FakeOpenAI, key: str = KEY) -> AsyncIterator[Client]:
    url = fake.conversation_url + "?model=gpt-realtime"
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        client = Client(ws)
        await client.next("session.created")
        yield client


def fake_with(script: ConversationScript | None = None, scale: float = 0.05) -> FakeOpenAI:
    return FakeOpenAI(KEY, conversation=script or ConversationScript(), time_scale=scale)


def joined_audio(events: list[dict[str, Any]]) -> bytes:
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    return b"".join(base64.b64decode(e["delta"]) for e in deltas)


async def test_a_whole_conversation_speaks_the_sdk_s_event_shapes() -> None:
    script = ConversationScript(
        ["Hello, Acme here.", ToolCall("lookup", {"order": "A1"}), "Anything else?"],
        caller=["where is my order"],
    )
    async with fake_with(script) as fake, conversation(fake) as client:
        await client.configure()
        await client.send({"type": "response.create"})
        await client.next("response.done")
        await client.speak("where is my order")
        call = await client.next("response.function_call_arguments.done")
        assert (call["name"], json.loads(call["arguments"])) == ("lookup", {"order": "A1"})
        await client.next("response.done")
        item = {"type": "function_call_output", "call_id": call["call_id"], "output": '"shipped"'}
        await client.send({"type": "conversation.item.create", "item": item})
        await client.send({"type": "response.create"})
        done = await client.next("response.done")
        session = fake.conversations[0]
    assert done["response"]["status"] == "completed"
    assert session.said == ["Hello, Acme here.", "shipped"]  # the output said by default
    assert [e["error"] for e in session.server_events("error")] == []
    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    for event in session.sent:
        adapter.validate_python(event)
    kinds = [e["type"] for e in session.sent]
    turn = kinds.index("input_audio_buffer.speech_started")
    assert kinds[turn : turn + 4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    assert session.transcripts == ["where is my order"]
    assert "conversation.item.input_audio_transcription.completed" in kinds


@pytest.mark.parametrize(
    ("fmt", "chunk_bytes", "audio"),
    [
        ({"type": "audio/pcmu"}, 800, synthetic_speech("Hi there.")),
        ({"type": "audio/pcm", "rate": 24000}, 4800, speech_pcm16("Hi there.", 24000)),
    ],
)
async def test_answers_are_real_speech_in_the_asked_format_in_100_ms_chunks(
    fmt: dict[str, Any], chunk_bytes: int, audio: bytes
) -> None:
    async with fake_with(ConversationScript(["Hi there."])) as fake, conversation(fake) as c:
        await c.configure({"type": "realtime", "audio": {"output": {"format": fmt}}})
        await c.send({"type": "response.create"})
        await c.next("response.done")
    chunks = [
        base64.b64decode(e["delta"]) for e in c.seen if e["type"] == "response.output_audio.delta"
    ]
    assert b"".join(chunks) == audio
    assert {len(chunk) for chunk in chunks[:-1]} == {chunk_bytes}
    words = [e["delta"] for e in c.seen if e["type"] == "response.output_audio_transcript.delta"]
    assert words == ["Hi", " there."]


async def test_the_say_wording_is_said_verbatim_and_a_reply_function_hears_the_caller() -> None:
    script = ConversationScript(lambda heard: f"You said {heard}.", caller=["blue"])
    async with fake_with(script) as fake, conversation(fake) as client:
        await client.configure()
        response = {"instructions": SAY_PREFIX + "Please hold."}
        await client.send({"type": "response.create", "response": response})
        await client.next("response.done")
        await client.speak("blue")
        await client.next("response.done")
        assert fake.conversations[0].said == ["Please hold.", "You said blue."]


async def test_first_audio_comes_after_the_configured_delay_and_is_recorded() -> None:
    script = ConversationScript(["Hello."], first_audio_ms=400)
    async with fake_with(script, scale=1.0) as fake, conversation(fake) as client:
        await client.configure()
        await client.send({"type": "response.create"})
        created = await client.next("response.created")
        started = time.monotonic()
        await client.next("response.output_audio.delta")
        waited = time.monotonic() - started
        session = fake.conversations[0]
    assert 0.35 <= waited < 2.0
    (first,) = session.first_audio
    assert first.response_id == created["response"]["id"]
    assert started < first.at <= started + waited  # when it left, on our clock


async def test_speech_during_an_answer_cancels_it_unless_interrupt_response_is_off() -> None:
    script = ConversationScript(["A long answer here.", "Next."], per_chunk_ms=2000)
    async with fake_with(script) as fake, conversation(fake) as client:
        await client.configure()
        await client.send({"type": "response.create"})
        await client.next("response.output_audio.delta")
        await client.speak("wait")
        done = await client.next("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        await client.next("response.done")  # the caller's turn got its own answer
    off = ConversationScript(["Kept going.", "Next."], per_chunk_ms=200)
    async with fake_with(off) as fake, conversation(fake) as client:
        detection = {"type": "server_vad", "interrupt_response": False, "create_response": False}
        await client.configure({"type": "realtime", "audio": {"input": {
            "format": {"type": "audio/pcmu"}, "turn_detection": detection}}})  # fmt: skip
        await client.send({"type": "response.create"})
        await client.next("response.output_audio.delta")
        await client.speak("wait")
        done = await client.next("response.done")
        assert done["response"]["status"] == "completed"
        session = fake.conversations[0]
        await wait_until(lambda: session.server_events("input_audio_buffer.committed"))
        assert len(session.server_events("response.created")) == 1  # create_response off


async def test_a_whole_turn_in_one_append_cuts_the_answer_and_still_gets_its_own() -> None:
    script = ConversationScript(
        ["A long answer here.", "Next."], caller=["wait"], per_chunk_ms=2000
    )
    async with fake_with(script) as fake, conversation(fake) as client:
        await client.configure()
        await client.send({"type": "response.create"})
        await client.next("response.output_audio.delta")
        turn = synthetic_speech("wait") + bytes([SILENCE_BYTE]) * 6000
        audio = base64.b64encode(turn).decode()
        await client.send({"type": "input_audio_buffer.append", "audio": audio})
        cut = await client.next("response.done")
        answer = await client.next("response.done")
    assert cut["response"]["status"] == "cancelled"
    assert answer["response"]["status"] == "completed"
    assert fake.conversations[0].said == ["Next."]


async def test_a_second_response_while_one_is_active_is_refused() -> None:
    async with fake_with(ConversationScript(per_chunk_ms=500)) as fake, conversation(fake) as c:
        await c.configure()
        await c.send({"type": "response.create"})
        await c.next("response.created")
        await c.send({"type": "response.create", "event_id": "evt_second"})
        error = await c.error()
        assert error["code"] == "conversation_already_has_active_response"
        assert error["event_id"] == "evt_second"
        await c.next("response.done")


async def test_cancel_with_no_active_response_is_the_documented_error() -> None:
    async with fake_with() as fake, conversation(fake) as client:
        await client.send({"type": "response.cancel"})
        assert (await client.error())["code"] == "response_cancel_not_active"


async def test_truncate_checks_the_item_and_the_audio_sent() -> None:
    script = ConversationScript(["one two three four"])
    async with fake_with(script) as fake, conversation(fake) as client:
        await client.configure()
        await client.send({"type": "response.create"})
        done = await client.next("response.done")
        item_id = done["response"]["output"][0]["id"]
        sent_ms = len(joined_audio(client.seen)) // 8
        truncate = {"type": "conversation.item.truncate", "content_index": 0}
        await client.send({**truncate, "item_id": "item_nope", "audio_end_ms": 10})
        assert (await client.error())["param"] == "item_id"
        await client.send({**truncate, "item_id": item_id, "audio_end_ms": sent_ms + 1})
        error = await client.error()
        assert error["param"] == "audio_end_ms"
        assert (
            f"Audio content of {sent_ms}ms is already shorter than {sent_ms + 1}ms"
            in (error["message"])
        )
        await client.send({**truncate, "item_id": item_id, "audio_end_ms": sent_ms // 2})
        truncated = await client.next("conversation.item.truncated")
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, sent_ms // 2)
        (cut,) = fake.conversations[0].truncations
    assert cut.audio_end_ms == sent_ms // 2
    assert cut.heard == "one two"


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ('["a list"]', "invalid_json", None),
        ({"type": "response.nope"}, "invalid_value", "type"),
        ({"event_id": "x"}, "missing_required_parameter", "type"),
        (
            {"type": "session.update", "session": {"type": "realtime", "modalities": ["audio"]}},
            "unknown_parameter",
            "session.modalities",
        ),
        (
            {"type": "session.update", "session": {"type": "transcription"}},
            "invalid_value",
            "session.type",
        ),
        (
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}},
                },
            },
            "invalid_value",
            "session.audio.output.format.rate",
        ),
        (
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "create_response": "yes"}
                        }
                    },
                },
            },
            "invalid_type",
            "session.audio.input.turn_detection.create_response",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "beta wording"}],
                },
            },
            "invalid_value",
            "item.content[0].type",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "call_x", "output": "1"},
            },
            "invalid_value",
            "item.call_id",
        ),
        (
            {"type": "response.create", "response": {"instructions": 5}},
            "invalid_type",
            "response.instructions",
        ),
    ],
)
async def test_a_bad_client_event_gets_an_error_event_and_the_socket_stays_open(
    event: dict[str, Any] | str, code: str, param: str | None
) -> None:
    async with fake_with() as fake, conversation(fake) as client:
        before = await client.configure()
        await client.send(event)
        error = await client.error()
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        )
        # still open, and a refused update changed nothing
        assert await client.configure({"type": "realtime"}) == before


async def test_a_bad_key_gets_an_error_event_then_a_close() -> None:
    async with fake_with() as fake:
        url = fake.conversation_url + "?model=gpt-realtime"
        headers = {"Authorization": "Bearer sk-wrong"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            event = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        assert event["type"] == "error"
        assert event["error"]["code"] == "invalid_api_key"
        assert ws.close_code == 1008


async def test_a_server_error_after_n_responses_closes_the_socket() -> None:
    script = ConversationScript(fail_after_responses=1)
    async with fake_with(script) as fake, conversation(fake) as client:
        await client.send({"type": "response.create"})
        error = await client.error()
        with pytest.raises(websockets.ConnectionClosed):
            await client.next("never")
        assert error["type"] == "server_error"
        assert client.ws.close_code == 1011
        await wait_until(lambda: fake.conversations[0].closed, what="the record closed")


async def test_rate_limited_responses_fail_with_the_limits_reported() -> None:
    async with fake_with(ConversationScript(rate_limited=True)) as fake, conversation(fake) as c:
        await c.send({"type": "response.create"})
        limits = await c.next("rate_limits.updated")
        done = await c.next("response.done")
        assert {limit["remaining"] for limit in limits["rate_limits"]} == {0}
        assert done["response"]["status"] == "failed"
        assert done["response"]["status_details"]["error"]["code"] == "rate_limit_exceeded"


async def test_the_transcription_route_is_unchanged_beside_the_conversation_route() -> None:
    async with fake_with() as fake:
        async with websockets.connect(
            fake.realtime_url, additional_headers={"Authorization": f"Bearer {KEY}"}
        ) as ws:
            created = json.loads(await ws.recv())
        assert created["session"]["type"] == "transcription"
        assert fake.sessions and not fake.conversations
