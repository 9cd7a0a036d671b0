"""The fake OpenAI API, driven by the official `openai` SDK and a plain `websockets` client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from typing import Any

import httpx
import openai
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam

from tests.support import StolenTime
from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE, frames
from voice_call.sim.ai_http import speech_pcm16
from voice_call.sim.openai.server import (
    ChatScript,
    FakeOpenAI,
    SpeechScript,
    TranscriptionScript,
    echo_last_user,
)
from voice_call.sim.voice import speech_audio

KEY = "sk-test-key"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def client(fake: FakeOpenAI, key: str = KEY) -> openai.AsyncOpenAI:
    """Use as `async with client(fake) as api:` so its connections close inside the loop."""
    return openai.AsyncOpenAI(base_url=fake.url, api_key=key, max_retries=0)


# --- chat completions -------------------------------------------------------------------------


async def test_stream_arrives_token_by_token_with_the_configured_delays() -> None:
    script = ChatScript(reply="Hello there, how are you?", first_token_ms=500, per_token_ms=100)
    async with FakeOpenAI(KEY, chat=script) as fake, client(fake) as api:
        started = time.monotonic()
        stream = await api.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
        seen: list[tuple[float, Any]] = []
        async for chunk in stream:
            seen.append((time.monotonic() - started, chunk))
    first = seen[0][1]
    assert first.object == "chat.completion.chunk"
    assert first.choices[0].delta.role == "assistant"
    content = [
        (t, c.choices[0].delta.content) for t, c in seen if c.choices and c.choices[0].delta.content
    ]
    assert [text for _, text in content] == ["Hello", " there,", " how", " are", " you?"]
    ttft = content[0][0]
    assert 0.48 <= ttft < 1.0, ttft
    # Four per-token waits between the first and last token; a single gap may absorb jitter.
    span = content[-1][0] - content[0][0]
    assert 0.38 <= span < 1.0, [t for t, _ in content]
    finish = [c for _, c in seen if c.choices and c.choices[0].finish_reason]
    assert finish[-1].choices[0].finish_reason == "stop"
    last = seen[-1][1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 5
    assert {c.id for _, c in seen} == {first.id}


async def test_time_scale_shrinks_every_delay() -> None:
    script = ChatScript(reply="one two three", first_token_ms=2000, per_token_ms=1000)
    async with FakeOpenAI(KEY, chat=script, time_scale=0.05) as fake, client(fake) as api:
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            started = time.monotonic()
            stream = await api.chat.completions.create(
                model="m",
                messages=HELLO,
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            took_s = time.monotonic() - started
    assert text == "one two three"
    assert 0.18 <= took_s < 1.5 + stolen.ms / 1000, (took_s, stolen.ms)  # unscaled: 4 s


async def test_non_stream_cycles_the_scripted_replies() -> None:
    script = ChatScript(reply=["first", "second"], first_token_ms=0, per_token_ms=0)
    async with FakeOpenAI(KEY, chat=script) as fake, client(fake) as api:
        replies = []
        for _ in range(3):
            done = await api.chat.completions.create(model="gpt-4o", messages=HELLO)
            assert done.object == "chat.completion"
            assert done.choices[0].finish_reason == "stop"
            assert done.usage is not None and done.usage.completion_tokens == 1
            replies.append(done.choices[0].message.content)
        assert replies == ["first", "second", "first"]
        assert [r.status for r in fake.requests] == [200, 200, 200]
        assert fake.requests[0].body["model"] == "gpt-4o"
        assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_reply_function_sees_the_messages_and_max_tokens_truncates() -> None:
    script = ChatScript(reply=echo_last_user, first_token_ms=0, per_token_ms=0)
    async with FakeOpenAI(KEY, chat=script) as fake, client(fake) as api:
        messages: Any = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "call me back at noon"}]},
        ]
        done = await api.chat.completions.create(model="m", messages=messages)
        assert done.choices[0].message.content == "call me back at noon"
        cut = await api.chat.completions.create(model="m", messages=messages, max_tokens=2)
        assert cut.choices[0].message.content == "call me"
        assert cut.choices[0].finish_reason == "length"


async def test_wrong_key_and_bad_bodies_get_openai_errors() -> None:
    async with FakeOpenAI(KEY, chat=ChatScript(first_token_ms=0)) as fake, client(fake) as api:
        async with client(fake, "sk-wrong-key-123") as intruder:
            with pytest.raises(openai.AuthenticationError) as denied:
                await intruder.chat.completions.create(
                    model="m",
                    messages=HELLO,
                )
        assert denied.value.code == "invalid_api_key"
        assert "sk-wrong-key-123" not in str(denied.value)  # echoed masked
        with pytest.raises(openai.BadRequestError) as bad:
            await api.chat.completions.create(model="m", messages=[])
        assert bad.value.code == "empty_array" and bad.value.param == "messages"
        async with httpx.AsyncClient(base_url=fake.url) as http:
            auth = {"Authorization": f"Bearer {KEY}"}
            broken = await http.post("/chat/completions", content=b"{not json", headers=auth)
            assert broken.status_code == 400
            assert set(broken.json()["error"]) == {"message", "type", "param", "code"}
            anonymous = await http.post("/chat/completions", json={})
            assert anonymous.status_code == 401
            unknown = await http.post("/nothing/here", json={}, headers=auth)
            assert unknown.status_code == 404 and "error" in unknown.json()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Bodies close to valid ones reach the deeper checks that random JSON rarely would.
NEAR_VALID = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("m"), JSON),
        "messages": st.one_of(JSON, st.lists(JSON, max_size=3)),
    },
    optional={
        "stream": JSON,
        "stream_options": st.one_of(JSON, st.fixed_dictionaries({"include_usage": JSON})),
        "max_tokens": JSON,
        "max_completion_tokens": JSON,
        "n": JSON,
    },
)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool"]), "content": JSON}
    ),
    min_size=1,
    max_size=3,
)
VALID = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": MESSAGES},
    optional={
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "max_tokens": st.integers(min_value=-2, max_value=5),
    },
)
BODIES = st.one_of(
    st.binary(max_size=40),
    st.one_of(JSON, NEAR_VALID, VALID).map(lambda body: json.dumps(body).encode()),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_arbitrary_bodies_never_get_a_5xx(body: bytes) -> None:
    fake = FakeOpenAI(KEY, chat=ChatScript(reply=echo_last_user), time_scale=0)

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=fake.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
            return await http.post(
                "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {KEY}"}
            )

    response = asyncio.run(post())
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n")
    else:
        assert response.json()["object"] == "chat.completion"


# --- audio speech -----------------------------------------------------------------------------


async def test_speech_streams_pcm_of_the_expected_length() -> None:
    text = "Your appointment is at noon."
    speech = SpeechScript(first_byte_ms=100, per_chunk_ms=5, chunk_bytes=4800)
    async with FakeOpenAI(KEY, speech=speech) as fake, client(fake) as api:
        started = time.monotonic()
        chunks: list[bytes] = []
        first_at = None
        async with api.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=text, response_format="pcm"
        ) as response:
            async for chunk in response.iter_bytes():
                first_at = first_at or time.monotonic() - started
                chunks.append(chunk)
    audio = b"".join(chunks)
    assert audio == speech_pcm16(text, 24000)
    # 90 ms a character, 45 ms a space, at 24 kHz × 2 bytes
    expected_ms = 90 * len(text.replace(" ", "")) + 45 * text.count(" ")
    assert abs(len(audio) - expected_ms * 48) <= 4
    assert len(chunks) > 1
    assert first_at is not None and first_at >= 0.09


async def test_speech_wav_has_a_proper_riff_header_and_mp3_is_refused() -> None:
    speech = SpeechScript(first_byte_ms=0, per_chunk_ms=0)
    async with FakeOpenAI(KEY, speech=speech) as fake, client(fake) as api:
        wav = await api.audio.speech.create(
            model="tts-1", voice="alloy", input="hi there", response_format="wav"
        )
        with wave.open(io.BytesIO(wav.content)) as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
                24000,
                1,
                2,
            )
            assert reader.readframes(reader.getnframes()) == speech_pcm16("hi there", 24000)
        with pytest.raises(openai.BadRequestError) as refused:
            await api.audio.speech.create(model="tts-1", voice="alloy", input="hi")  # mp3 default
        assert refused.value.param == "response_format"
        assert "pcm" in str(refused.value)


# --- realtime transcription -------------------------------------------------------------------


async def connect(fake: FakeOpenAI, *, beta: bool = True, key: str = KEY) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    if beta:
        headers["OpenAI-Beta"] = "realtime=v1"
    return await websockets.connect(fake.realtime_url, additional_headers=headers)


async def recv(ws: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return event


async def until(ws: Any, kind: str) -> list[dict[str, Any]]:
    events = [await recv(ws)]
    while events[-1]["type"] != kind:
        events.append(await recv(ws))
    return events


def append(audio: bytes) -> str:
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
    )


async def speak(ws: Any, ulaw: bytes, silence_ms: int = 600) -> None:
    """Stream µ-law as 20 ms frames (faster than real time: the VAD runs on audio time)."""
    for frame in frames(ulaw) + [bytes([SILENCE_BYTE]) * FRAME_BYTES] * (silence_ms // 20):
        await ws.send(append(frame))


async def test_ulaw_speech_then_silence_is_transcribed_word_by_word() -> None:
    script = TranscriptionScript(
        ["I would like to book a table"], first_delta_ms=50, per_word_ms=10
    )
    async with FakeOpenAI(KEY, transcription=script) as fake, await connect(fake) as ws:
        created = await recv(ws)
        assert created["type"] == "transcription_session.created"
        await ws.send(
            json.dumps(
                {
                    "type": "transcription_session.update",
                    "session": {
                        "input_audio_format": "g711_ulaw",
                        "input_audio_transcription": {
                            "model": "gpt-4o-transcribe",
                            "language": "en",
                        },
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    },
                }
            )
        )
        updated = await recv(ws)
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["input_audio_format"] == "g711_ulaw"
        assert updated["session"]["turn_detection"]["silence_duration_ms"] == 300
        speech = speech_audio("hello there")
        await ws.send(append(bytes([SILENCE_BYTE]) * 4000))  # 500 ms of quiet first
        await speak(ws, speech)
        events = await until(ws, "conversation.item.input_audio_transcription.completed")
    kinds = [e["type"] for e in events]
    head = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]
    assert kinds[:4] == head
    deltas = [e for e in events if e["type"].endswith("transcription.delta")]
    assert kinds[4:] == [d["type"] for d in deltas] + [kinds[-1]]
    assert len(deltas) == 7
    completed = events[-1]
    assert completed["transcript"] == "I would like to book a table"
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]
    item_id = events[0]["item_id"]
    assert all(e.get("item_id", e.get("item", {}).get("id")) == item_id for e in events)
    assert events[2]["previous_item_id"] is None
    speech_ms = len(speech) // 8
    # speech began at 500 ms; the start reported includes the 300 ms prefix padding
    assert 200 <= events[0]["audio_start_ms"] <= 220
    # it stopped once 300 ms of quiet followed the last loud 10 ms window (syllables fade out)
    assert 500 + speech_ms + 250 <= events[1]["audio_end_ms"] <= 500 + speech_ms + 350
    assert completed["usage"]["type"] == "tokens"
    assert len({e["event_id"] for e in events}) == len(events)


async def test_ga_dialect_pcm16_subprotocol_auth_and_say() -> None:
    fake = FakeOpenAI(KEY, transcription=TranscriptionScript(first_delta_ms=0, per_word_ms=0))
    async with fake:
        protocols: Any = ["realtime", f"openai-insecure-api-key.{KEY}"]
        async with websockets.connect(fake.realtime_url, subprotocols=protocols) as ws:
            assert ws.subprotocol == "realtime"
            created = await recv(ws)
            assert created["type"] == "session.created"
            assert created["session"]["type"] == "transcription"
            update = {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": 24000},
                            "transcription": {"model": "gpt-4o-mini-transcribe"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 200},
                        }
                    },
                },
            }
            await ws.send(json.dumps(update))
            updated = await recv(ws)
            assert updated["type"] == "session.updated"
            assert updated["session"]["audio"]["input"]["format"] == {
                "type": "audio/pcm",
                "rate": 24000,
            }
            for line in ("yes please", "no thanks"):
                fake.transcription.say(line)
                pcm = speech_pcm16("abc def", 24000) + bytes(24000 * 2 * 300 // 1000)
                for i in range(0, len(pcm), 960):  # 20 ms at 24 kHz
                    await ws.send(append(pcm[i : i + 960]))
                events = await until(ws, "conversation.item.input_audio_transcription.completed")
                assert "conversation.item.added" in [e["type"] for e in events]
                assert events[-1]["transcript"] == line
            # A beta event on a GA socket is an unknown type: error, socket stays open.
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {}}))
            error = await recv(ws)
            assert error["type"] == "error" and error["error"]["param"] == "type"
    assert fake.sessions[0].dialect == "ga" and fake.sessions[0].closed
    assert fake.sessions[0].transcripts == ["yes please", "no thanks"]


async def test_malformed_events_get_error_events_and_the_socket_stays_open() -> None:
    async with FakeOpenAI(KEY) as fake, await connect(fake) as ws:
        await recv(ws)  # created
        await ws.send("{this is not json")
        error = await recv(ws)
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        await ws.send(
            json.dumps({"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "e1"})
        )
        bad_audio = await recv(ws)
        assert bad_audio["error"]["param"] == "audio" and bad_audio["error"]["event_id"] == "e1"
        await ws.send(
            json.dumps(
                {"type": "transcription_session.update", "session": {"input_audio_format": "mp3"}}
            )
        )
        bad_format = await recv(ws)
        assert bad_format["error"]["param"] == "session.input_audio_format"
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        empty = await recv(ws)
        assert empty["error"]["code"] == "input_audio_buffer_commit_empty"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert (await recv(ws))["type"] == "input_audio_buffer.cleared"


async def test_manual_commit_without_vad_and_whisper_sends_one_delta() -> None:
    script = TranscriptionScript(source=lambda turn: f"turn {turn.index} {turn.audio_ms}ms")
    script.first_delta_ms = 0
    async with FakeOpenAI(KEY, transcription=script) as fake, await connect(fake) as ws:
        await recv(ws)
        session = {
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": None,
        }
        await ws.send(json.dumps({"type": "transcription_session.update", "session": session}))
        assert (await recv(ws))["session"]["turn_detection"] is None
        await ws.send(append(speech_audio("hi")))  # no VAD: no speech_started
        await ws.send(append(bytes([SILENCE_BYTE]) * 800))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = await until(ws, "conversation.item.input_audio_transcription.completed")
    kinds = [e["type"] for e in events]
    assert kinds == [
        "input_audio_buffer.committed",
        "conversation.item.created",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    expected_ms = (len(speech_audio("hi")) + 800) // 8
    assert events[-1]["transcript"] == f"turn 0 {expected_ms}ms"
    assert events[2]["delta"] == events[-1]["transcript"]
    assert events[-1]["usage"] == {"type": "duration", "seconds": expected_ms / 1000}


async def test_realtime_answers_a_wrong_key_with_an_error_event_and_closes() -> None:
    async with FakeOpenAI(KEY) as fake, await connect(fake, key="sk-nope") as ws:
        refused = await recv(ws)
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "invalid_api_key"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert fake.sessions[0].received == []
