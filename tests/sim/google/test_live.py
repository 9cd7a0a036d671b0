"""The fake Gemini Live service, spoken to with a bare WebSocket client: the protocol's edges."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support import wait_until
from voice_call.sim.google import FakeGeminiLive, FunctionCall, LiveScript, Reply
from voice_call.sim.google.live import VERBATIM

KEY = "gemini-test-key"
SCALE = 0.02
SETUP = {"setup": {"model": "models/gemini-3.1-flash-live-preview"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiLive]:
    script = LiveScript(first_audio_ms=200, chunk_ms=40)
    async with FakeGeminiLive(KEY, script=script, time_scale=SCALE) as service:
        yield service


async def session(
    fake: FakeGeminiLive, setup: dict[str, Any] | None = SETUP, *, key: str | None = KEY
) -> ClientConnection:
    url = fake.url + (f"?key={key}" if key is not None else "")
    ws = await connect(url, proxy=None)
    if setup is not None:
        await ws.send(json.dumps(setup))
        assert await message(ws) == {"setupComplete": {}}
    return ws


async def message(ws: ClientConnection) -> dict[str, Any]:
    raw = await ws.recv()
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


async def until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Messages up to and including the first whose content has `kind`."""
    seen = []
    async with asyncio.timeout(10):
        while True:
            event = await message(ws)
            seen.append(event)
            content = event.get("serverContent", {})
            if kind in event or kind in content:
                return seen


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            await ws.recv()
    close = caught.value.rcvd
    assert close is not None
    return close.code, close.reason


def audio(samples: np.ndarray, mime: str = "audio/pcm;rate=16000") -> str:
    data = base64.b64encode(samples.astype("<i2").tobytes()).decode()
    return json.dumps({"realtimeInput": {"audio": {"data": data, "mimeType": mime}}})


def loud(ms: int, rate: int = 16000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)


def quiet(ms: int, rate: int = 16000) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def transcript(events: list[dict[str, Any]], kind: str) -> str:
    return "".join(
        e["serverContent"][kind]["text"] for e in events if kind in e.get("serverContent", {})
    )


# ---- authentication and setup ----


@pytest.mark.parametrize("key", ["wrong", None], ids=["wrong-key", "no-key"])
async def test_a_bad_key_closes_with_policy_violation(
    fake: FakeGeminiLive, key: str | None
) -> None:
    ws = await session(fake, None, key=key)
    assert await closed_with(ws) == (1008, "API key not valid. Please pass a valid API key.")


async def test_the_key_may_come_in_the_api_key_header(fake: FakeGeminiLive) -> None:
    async with connect(fake.url, proxy=None, additional_headers={"x-goog-api-key": KEY}) as ws:
        await ws.send(json.dumps(SETUP))
        assert await message(ws) == {"setupComplete": {}}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
async def test_server_messages_are_binary_frames_unless_told_otherwise(binary: bool) -> None:
    async with FakeGeminiLive(KEY, binary_frames=binary) as fake:
        ws = await session(fake, None)
        await ws.send(json.dumps(SETUP))
        assert isinstance(await ws.recv(), bytes) is binary
        await ws.close()


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ({"realtimeInput": {}}, "The first message must be a setup message."),
        (
            {"setup": {"model": "models/m", "voice": "Kore"}},
            "Invalid JSON payload received. Unknown name \"voice\" at 'setup': Cannot find field.",
        ),
        ({"setup": {"model": "gemini"}}, "model: must be of the form models/{model}."),
        (
            {"setup": {"model": "models/m"}, "realtimeInput": {}},
            "Request contains an invalid argument.",
        ),
        ({"hello": {}}, 'Invalid JSON payload received. Unknown name "hello": Cannot find field.'),
        (
            {
                "setup": {
                    "model": "models/m",
                    "realtimeInputConfig": {
                        "automaticActivityDetection": {"startOfSpeechSensitivity": "HIGH"}
                    },
                }
            },
            "Invalid value at 'setup.realtime_input_config.automatic_activity_detection"
            '.start_of_speech_sensitivity\', "HIGH"',
        ),
    ],
    ids=["not-setup", "unknown-field", "bad-model-name", "two-messages", "unknown-message", "enum"],
)
async def test_a_bad_setup_closes_with_invalid_argument(
    fake: FakeGeminiLive, first: dict[str, Any], reason: str
) -> None:
    ws = await session(fake, None)
    await ws.send(json.dumps(first))
    assert await closed_with(ws) == (1007, reason)


async def test_invalid_json_closes_the_session(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    await ws.send("{not json")
    assert await closed_with(ws) == (1007, "Invalid JSON payload received.")


async def test_an_unknown_model_is_refused() -> None:
    async with FakeGeminiLive(KEY, models=["gemini-3.1-flash-live-preview"]) as fake:
        ws = await session(fake, None)
        await ws.send(json.dumps({"setup": {"model": "models/gemini-nope"}}))
        code, reason = await closed_with(ws)
        assert code == 1008 and reason.startswith("models/gemini-nope is not found")


async def test_a_second_setup_is_refused(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    await ws.send(json.dumps(SETUP))
    assert (await closed_with(ws))[0] == 1007


async def test_audio_in_another_format_is_refused(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    await ws.send(audio(loud(20), mime="audio/pcmu"))
    assert await closed_with(ws) == (1007, "Unsupported audio mime type: 'audio/pcmu'.")


async def test_the_rate_limit_closes_with_the_quota_reason(fake: FakeGeminiLive) -> None:
    fake.rate_limited = True
    ws = await session(fake, None)
    code, reason = await closed_with(ws)
    assert code == 1011 and "quota" in reason


# ---- turns ----


async def test_caller_speech_gets_its_words_then_a_spoken_answer(fake: FakeGeminiLive) -> None:
    fake.script.hear("is the shop open")
    fake.script.reply("Yes, until six.")
    ws = await session(fake)
    await ws.send(audio(loud(400)))
    await ws.send(audio(quiet(600)))
    events = await until(ws, "turnComplete")
    assert transcript(events, "inputTranscription") == "is the shop open"
    assert transcript(events, "outputTranscription") == "Yes, until six."
    parts = [
        p["inlineData"]
        for e in events
        for p in e.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    ]
    assert {p["mimeType"] for p in parts} == {"audio/pcm;rate=24000"}
    pcm = b"".join(base64.b64decode(p["data"]) for p in parts)
    assert len(pcm) // 2 > 24000 * 0.5  # real speech, not a token chunk
    kinds = [next(iter(e["serverContent"])) for e in events if "serverContent" in e]
    assert kinds[-2:] == ["generationComplete", "turnComplete"]
    turn = fake.sessions[0].turns[0]
    assert turn.first_audio_at is not None
    assert turn.first_audio_at - turn.triggered_at >= 200 * SCALE / 1000
    assert fake.sessions[0].audio_rates == {16000}
    assert fake.sessions[0].history == [("user", "is the shop open"), ("model", "Yes, until six.")]


async def test_speech_during_the_answer_interrupts_it() -> None:
    script = LiveScript(replies=["A long answer that keeps going for quite a while yet."])
    async with FakeGeminiLive(KEY, script=script) as fake:  # spoken in real time: ~5 s
        ws = await session(fake)
        await ws.send(audio(loud(300)))
        await ws.send(audio(quiet(600)))
        await until(ws, "modelTurn")
        await ws.send(audio(loud(100)))
        events = await until(ws, "interrupted")
        assert (await message(ws)) == {"serverContent": {"turnComplete": True}}
        assert not any("generationComplete" in e.get("serverContent", {}) for e in events)
        assert fake.sessions[0].turns[0].interrupted


async def test_a_verbatim_client_turn_is_said_word_for_word(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    turn = {"role": "user", "parts": [{"text": VERBATIM + "Your code is 4 2 7."}]}
    await ws.send(json.dumps({"clientContent": {"turns": [turn], "turnComplete": True}}))
    events = await until(ws, "turnComplete")
    assert transcript(events, "outputTranscription") == "Your code is 4 2 7."


async def test_history_without_turn_complete_asks_for_nothing(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    turns = [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello"}]},
    ]
    await ws.send(json.dumps({"clientContent": {"turns": turns, "turnComplete": False}}))
    await wait_until(lambda: fake.sessions[0].history == [("user", "Hi"), ("model", "Hello")])
    assert fake.sessions[0].turns == []


async def test_a_bad_role_closes_the_session(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    turn = {"role": "system", "parts": [{"text": "x"}]}
    await ws.send(json.dumps({"clientContent": {"turns": [turn], "turnComplete": True}}))
    assert await closed_with(ws) == (1007, "Please use a valid role: user, model.")


async def test_a_function_call_waits_for_its_response(fake: FakeGeminiLive) -> None:
    fake.script.reply(Reply("Booked.", call=FunctionCall("book", {"day": "monday"})))
    ws = await session(fake)
    await ws.send(json.dumps({"clientContent": {"turnComplete": True}}))
    events = await until(ws, "toolCall")
    (call,) = events[-1]["toolCall"]["functionCalls"]
    assert (call["name"], call["args"]) == ("book", {"day": "monday"})
    response = {"id": call["id"], "name": "book", "response": {"ok": True}}
    await ws.send(json.dumps({"toolResponse": {"functionResponses": [response]}}))
    events = await until(ws, "turnComplete")
    assert transcript(events, "outputTranscription") == "Booked."


async def test_a_malformed_tool_response_closes_the_session(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    bad = {"toolResponse": {"functionResponses": [{"id": "x", "response": "not an object"}]}}
    await ws.send(json.dumps(bad))
    assert (await closed_with(ws))[0] == 1007


# ---- the session's end ----


async def test_server_error_after_n_responses() -> None:
    async with FakeGeminiLive(KEY, time_scale=SCALE, fail_after_responses=1) as fake:
        ws = await session(fake)
        await ws.send(json.dumps({"clientContent": {"turnComplete": True}}))
        await until(ws, "turnComplete")
        assert await closed_with(ws) == (1011, "Internal error encountered.")


async def test_resumption_handles_restore_the_conversation(fake: FakeGeminiLive) -> None:
    fake.script.reply("Noted.")
    setup = {"setup": {**SETUP["setup"], "sessionResumption": {}}}
    ws = await session(fake, setup)
    turn = {"role": "user", "parts": [{"text": "My name is Bo."}]}
    await ws.send(json.dumps({"clientContent": {"turns": [turn], "turnComplete": True}}))
    events = await until(ws, "sessionResumptionUpdate")
    update = events[-1]["sessionResumptionUpdate"]
    assert update["resumable"] is True
    resumed = {"setup": {**SETUP["setup"], "sessionResumption": {"handle": update["newHandle"]}}}
    await session(fake, resumed)
    assert fake.sessions[1].history == [("user", "My name is Bo."), ("model", "Noted.")]
    bogus = {"setup": {**SETUP["setup"], "sessionResumption": {"handle": "nope"}}}
    ws = await session(fake, None)
    await ws.send(json.dumps(bogus))
    assert (await closed_with(ws))[0] == 1007


async def test_go_away_then_the_close(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    await fake.go_away(0.1)
    assert await message(ws) == {"goAway": {"timeLeft": "0.1s"}}
    assert (await closed_with(ws))[0] == 1000


async def test_the_service_ends_the_session(fake: FakeGeminiLive) -> None:
    ws = await session(fake)
    await fake.end_sessions("Bye.")
    assert await closed_with(ws) == (1000, "Bye.")
    await fake.server_error()  # nothing open: nothing to do
    assert fake.sessions[0].closed
