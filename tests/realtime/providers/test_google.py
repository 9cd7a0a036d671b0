"""The Gemini Live provider against the fake Gemini Live service over a loopback WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.support import wait_until
from voice_call.audio.g711 import SILENCE_BYTE, pcm16_to_ulaw, ulaw_to_pcm16
from voice_call.config.realtime import GeminiLiveOptions
from voice_call.realtime.model import RealtimeError, SessionSetup, ToolSpec
from voice_call.realtime.providers.google import (
    DEFAULT_MODEL,
    DEFAULT_URL,
    GeminiLive,
    GeminiLiveSettings,
    settings_from,
)
from voice_call.sim.google import FakeGeminiLive, FunctionCall, LiveScript, Reply
from voice_call.sim.voice import synthetic_speech

KEY = "gemini-test-key"
SCALE = 0.02
FRAME = 160  # 20 ms of µ-law at 8 kHz


class Heard:
    """A ModelListener that writes everything down."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.events: list[tuple[Any, ...]] = []

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]

    def on_audio(self, ulaw: bytes) -> None:
        if not self.events or self.events[-1][0] != "audio":
            self.events.append(("audio",))
        self.audio += ulaw

    def on_speech_started(self) -> None:
        self.events.append(("speech_started",))

    def on_input_transcript(self, text: str, final: bool) -> None:
        self.events.append(("input", text, final))

    def on_output_transcript(self, delta: str) -> None:
        self.events.append(("output", delta))

    def on_response_done(self) -> None:
        self.events.append(("done",))

    def on_tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self.events.append(("tool", call_id, name, arguments))

    def on_error(self, message: str, fatal: bool) -> None:
        self.events.append(("error", message, fatal))

    def on_closed(self, reason: str) -> None:
        self.events.append(("closed", reason))

    def said(self) -> str:
        return "".join(e[1] for e in self.of("output"))


def tone(freq: float, seconds: float, rate: int, level: float = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level).astype(np.int16)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def frames(ulaw: bytes) -> list[bytes]:
    return [ulaw[i : i + FRAME] for i in range(0, len(ulaw), FRAME)]


def speak(model: GeminiLive, text: str = "hello there", silence_ms: int = 700) -> None:
    """The caller says something, then is quiet long enough for the fake's VAD to end the turn."""
    for frame in frames(synthetic_speech(text) + bytes([SILENCE_BYTE]) * (8 * silence_ms)):
        model.send_audio(frame)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiLive]:
    async with FakeGeminiLive(KEY, script=LiveScript(first_audio_ms=100), time_scale=SCALE) as f:
        yield f


async def opened(
    fake: FakeGeminiLive, setup: SessionSetup | None = None, **settings: Any
) -> tuple[GeminiLive, Heard]:
    model = GeminiLive(GeminiLiveSettings(api_key=KEY, url=fake.url, **settings))
    heard = Heard()
    model.listener = heard
    await model.connect(setup or SessionSetup(instructions="Be brief."))
    return model, heard


def sent_of(fake: FakeGeminiLive, kind: str, session: int = 0) -> list[dict[str, Any]]:
    return [m[kind] for m in fake.sessions[session].received if kind in m]


# ---- settings ----


def test_settings_take_the_block_over_the_defaults_and_the_env_key() -> None:
    assert settings_from(None, "env-key") == GeminiLiveSettings(api_key="env-key")
    assert settings_from(None, "env-key").model == DEFAULT_MODEL == "gemini-3.1-flash-live-preview"
    options = GeminiLiveOptions.model_validate(
        {"apiKey": "own", "url": "ws://127.0.0.1:9/x", "voice": "Puck", "startSensitivity": "low"}
    )
    chosen = settings_from(options, "env-key")
    assert (chosen.api_key, chosen.url, chosen.voice, chosen.start_sensitivity) == (
        "own",
        "ws://127.0.0.1:9/x",
        "Puck",
        "low",
    )
    assert settings_from(GeminiLiveOptions(), "k").url == DEFAULT_URL


def test_no_key_anywhere_is_an_error_naming_the_fix() -> None:
    with pytest.raises(RealtimeError, match=r"realtime\.providers\.google\.apiKey.*GEMINI_API_KEY"):
        settings_from(GeminiLiveOptions(), None)


# ---- session setup ----


async def test_setup_carries_model_voice_instructions_tools_and_vad(fake: FakeGeminiLive) -> None:
    tool = ToolSpec("lookup", "Find a thing.", {"type": "object", "properties": {"q": {}}})
    setup = SessionSetup("Be brief.", tools=(tool,), voice="Puck", language="en-GB")
    model, _ = await opened(
        fake,
        setup,
        silence_duration_ms=600,
        prefix_padding_ms=200,
        start_sensitivity="high",
        end_sensitivity="low",
    )
    assert fake.sessions[0].key == KEY  # the key travels in the query
    assert fake.sessions[0].setup == {
        "model": "models/gemini-3.1-flash-live-preview",
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}},
                "languageCode": "en-GB",
            },
        },
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "lookup",
                        "description": "Find a thing.",
                        "parametersJsonSchema": tool.parameters,
                    }
                ]
            }
        ],
        "realtimeInputConfig": {
            "automaticActivityDetection": {
                "startOfSpeechSensitivity": "START_SENSITIVITY_HIGH",
                "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
                "prefixPaddingMs": 200,
                "silenceDurationMs": 600,
            }
        },
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "sessionResumption": {},
        "contextWindowCompression": {"slidingWindow": {}},
    }
    assert model.connected
    await model.connect(setup)  # idempotent: no second socket
    assert len(fake.sessions) == 1
    await model.close()


async def test_history_is_replayed_as_client_turns_that_do_not_ask_for_an_answer(
    fake: FakeGeminiLive,
) -> None:
    setup = SessionSetup("Be brief.", history=(("user", "Hi, it's Ann."), ("bot", "Hello Ann!")))
    model, _ = await opened(fake, setup)
    await wait_until(lambda: sent_of(fake, "clientContent"))
    assert sent_of(fake, "clientContent")[0] == {
        "turns": [
            {"role": "user", "parts": [{"text": "Hi, it's Ann."}]},
            {"role": "model", "parts": [{"text": "Hello Ann!"}]},
        ],
        "turnComplete": False,
    }
    assert fake.sessions[0].turns == []  # no answer was asked for
    await model.close()


# ---- audio both ways ----


async def test_caller_audio_arrives_as_16k_pcm_with_its_frequency_kept(
    fake: FakeGeminiLive,
) -> None:
    model, _ = await opened(fake)
    ulaw = pcm16_to_ulaw(tone(1000, 1.0, 8000))
    for frame in frames(ulaw):
        model.send_audio(frame)
    record = fake.sessions[0]
    await wait_until(lambda: len(record.audio_in) // 2 >= 15_800, what="1 s of audio at 16 kHz")
    assert record.audio_rates == {16000}
    pcm = np.frombuffer(bytes(record.audio_in), dtype="<i2")
    assert 15_800 <= len(pcm) <= 16_000  # twice the samples, less the filter's held tail
    assert abs(peak_hz(pcm[800:], 16000) - 1000) < 5
    assert all(
        m["audio"]["mimeType"] == "audio/pcm;rate=16000" for m in sent_of(fake, "realtimeInput")
    )
    await model.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary-frames", "text-frames"])
async def test_model_audio_arrives_as_8k_ulaw_with_its_frequency_kept(binary: bool) -> None:
    pcm24 = tone(440, 1.0, 24000).astype("<i2").tobytes()
    script = LiveScript(replies=[Reply("A tone.", audio=pcm24)], first_audio_ms=10)
    async with FakeGeminiLive(KEY, script=script, time_scale=SCALE, binary_frames=binary) as fake:
        model, heard = await opened(fake)
        model.respond()
        await wait_until(lambda: heard.of("done"), what="the response's end")
        assert (
            7_900 <= len(heard.audio) <= 8_016
        )  # a third of the samples (+2 ms priming), tail flushed
        assert abs(peak_hz(ulaw_to_pcm16(bytes(heard.audio))[400:], 8000) - 440) < 5
        assert heard.said() == "A tone."
        assert heard.kinds()[-1] == "done"
        await model.close()


# ---- a turn ----


async def test_the_end_of_a_cut_turn_does_not_end_the_callers_new_words() -> None:
    """A service that reports the caller's first word before the cut turn's turnComplete."""
    script = [
        {"serverContent": {"outputTranscription": {"text": "Our hours are"}}},
        {"serverContent": {"interrupted": True}},
        {"serverContent": {"inputTranscription": {"text": "actually"}}},
        {"serverContent": {"turnComplete": True}},
        {"serverContent": {"inputTranscription": {"text": " wait"}}},
        {"serverContent": {"outputTranscription": {"text": "Sure."}}},
    ]

    async def service(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({"setupComplete": {}}))
        for event in script:
            await ws.send(json.dumps(event))
        await ws.wait_closed()

    async with serve(service, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        model = GeminiLive(GeminiLiveSettings(api_key=KEY, url=f"ws://127.0.0.1:{port}"))
        heard = Heard()
        model.listener = heard
        await model.connect(SessionSetup("x"))
        await wait_until(lambda: heard.said() == "Our hours areSure.")
        await model.close()
    assert heard.events == [
        ("output", "Our hours are"),
        ("speech_started",),
        ("done",),
        ("input", "actually", False),
        ("input", "actually wait", False),
        ("input", "actually wait", True),
        ("output", "Sure."),
    ]


async def test_a_caller_turn_gives_transcripts_audio_and_the_end_of_the_response(
    fake: FakeGeminiLive,
) -> None:
    fake.script.hear("what time is it")
    fake.script.reply("It is noon.")
    model, heard = await opened(fake)
    speak(model)
    await wait_until(lambda: heard.of("done"), what="the model's answer")
    inputs = heard.of("input")
    assert inputs[-1] == ("input", "what time is it", True)
    assert all(not final for _, _, final in inputs[:-1])
    assert [text for _, text, _ in inputs[:-1]] == [
        "what",
        "what time",
        "what time is",
        "what time is it",
    ]
    kinds = heard.kinds()
    assert kinds.index("audio") > kinds.index("input")  # the words are final before the answer
    assert heard.said() == "It is noon."
    assert len(heard.audio) > 0
    assert model.speech_ended_at is not None
    assert fake.sessions[0].turns[0].first_audio_at is not None
    await model.close()


async def test_caller_speech_during_an_answer_is_a_barge_in() -> None:
    story = "Once upon a time there was a very long story that went on and on."
    script = LiveScript(["tell me a story"], [story], first_audio_ms=10)
    async with FakeGeminiLive(KEY, script=script) as fake:  # spoken in real time: ~6 s
        model, heard = await opened(fake)
        speak(model)
        await wait_until(lambda: heard.of("audio"), what="the answer's first audio")
        speak(model, "stop", silence_ms=0)
        await wait_until(lambda: heard.of("speech_started"), what="the interruption")
        assert fake.sessions[0].turns[0].interrupted
        assert heard.kinds()[-2:] == ["speech_started", "done"]
        model.interrupted(500)  # nothing to send: the service stopped on its own
        await model.close()
        assert set().union(*fake.sessions[0].received) == {"setup", "realtimeInput"}


async def test_a_tool_call_round_trip(fake: FakeGeminiLive) -> None:
    call = FunctionCall("get_weather", {"city": "Paris"})
    fake.script.reply(Reply("It is sunny in Paris.", call=call))
    model, heard = await opened(fake)
    model.respond()
    await wait_until(lambda: heard.of("tool"), what="the tool call")
    _, call_id, name, arguments = heard.of("tool")[0]
    assert (name, arguments) == ("get_weather", {"city": "Paris"})
    assert heard.kinds()[-1] == "done"  # the model waits: a filler line could go out now
    model.tool_result(call_id, name, {"sky": "clear"})
    await wait_until(lambda: len(heard.of("done")) == 2, what="the answer after the tool")
    assert sent_of(fake, "toolResponse") == [
        {
            "functionResponses": [
                {"id": call_id, "name": "get_weather", "response": {"sky": "clear"}}
            ]
        }
    ]
    assert heard.said() == "It is sunny in Paris."
    await model.close()


async def test_a_failed_tool_goes_back_as_an_error(fake: FakeGeminiLive) -> None:
    fake.script.reply(Reply("Sorry, I could not look.", call=FunctionCall("lookup")))
    model, heard = await opened(fake)
    model.respond()
    await wait_until(lambda: heard.of("tool"))
    call_id = heard.of("tool")[0][1]
    model.tool_result(call_id, "lookup", None, error="the hook timed out")
    await wait_until(lambda: len(heard.of("done")) == 2)
    response = sent_of(fake, "toolResponse")[0]["functionResponses"][0]["response"]
    assert response == {"error": "the hook timed out"}
    await model.close()


async def test_a_cancelled_tool_call_gets_no_late_answer(fake: FakeGeminiLive) -> None:
    fake.script.reply(Reply("Found it.", call=FunctionCall("lookup")))
    model, heard = await opened(fake)
    model.respond()
    await wait_until(lambda: heard.of("tool"))
    speak(model, "never mind", silence_ms=0)  # the caller cuts in while the tool runs
    await wait_until(lambda: "toolCallCancellation" in fake.sessions[0].sent_kinds())
    await wait_until(lambda: heard.of("speech_started"))
    model.tool_result(heard.of("tool")[0][1], "lookup", {"found": True})
    model.say("Still here.")
    await wait_until(lambda: heard.said().endswith("Still here."))
    assert sent_of(fake, "toolResponse") == []
    await model.close()


async def test_say_while_a_tool_runs_is_said_at_once(fake: FakeGeminiLive) -> None:
    fake.script.reply(Reply("It is sunny.", call=FunctionCall("get_weather")))
    model, heard = await opened(fake)
    model.respond()
    await wait_until(lambda: heard.of("tool"))
    model.say("One moment.")  # the consult filler
    await wait_until(lambda: heard.said() == "One moment.", what="the filler")
    model.tool_result(heard.of("tool")[0][1], "get_weather", {"sky": "clear"})
    await wait_until(lambda: heard.said() == "One moment.It is sunny.", what="the answer")
    assert [t.interrupted for t in fake.sessions[0].turns] == [False, False]
    await model.close()


async def test_say_waits_for_the_turn_in_progress() -> None:
    script = LiveScript(replies=["Welcome to the shop."], first_audio_ms=10)
    async with FakeGeminiLive(KEY, script=script, time_scale=0.3) as fake:
        model, heard = await opened(fake)
        model.respond()
        await wait_until(lambda: heard.of("audio"), what="the first answer's audio")
        model.say("Please hold.")
        assert not fake.sessions[0].turns[0].finished  # said while the answer was going on
        await wait_until(lambda: len(heard.of("done")) == 2, what="both answers")
        await model.close()
    record = fake.sessions[0]
    assert [t.text for t in record.turns] == ["Welcome to the shop.", "Please hold."]
    assert not record.turns[0].interrupted  # the first answer was not cut
    turn = sent_of(fake, "clientContent")[-1]
    assert turn == {
        "turns": [
            {
                "role": "user",
                "parts": [
                    {"text": "Say exactly this, word for word, and nothing else: Please hold."}
                ],
            }
        ],
        "turnComplete": True,
    }
    assert heard.said().endswith("Please hold.")
    await model.close()


# ---- errors and the session's end ----


async def test_a_wrong_key_fails_at_connect(fake: FakeGeminiLive) -> None:
    model = GeminiLive(GeminiLiveSettings(api_key="wrong", url=fake.url))
    with pytest.raises(RealtimeError, match=r"API key not valid.*\(1008\)"):
        await model.connect(SessionSetup("x"))
    assert not model.connected


async def test_a_rate_limit_fails_at_connect(fake: FakeGeminiLive) -> None:
    fake.rate_limited = True
    model = GeminiLive(GeminiLiveSettings(api_key=KEY, url=fake.url))
    with pytest.raises(RealtimeError, match=r"quota.*\(1011\)"):
        await model.connect(SessionSetup("x"))


async def test_an_unreachable_service_fails_at_connect() -> None:
    model = GeminiLive(GeminiLiveSettings(api_key=KEY, url="ws://127.0.0.1:9/nothing"))
    with pytest.raises(RealtimeError, match="cannot reach Gemini Live"):
        await model.connect(SessionSetup("x"))


async def test_a_bad_url_is_named_without_the_key() -> None:
    model = GeminiLive(GeminiLiveSettings(api_key="secret-key", url="http://example.invalid/x"))
    with pytest.raises(RealtimeError, match="is not a WebSocket URL") as caught:
        await model.connect(SessionSetup("x"))
    assert "secret-key" not in str(caught.value)


async def test_a_server_error_mid_call_is_fatal(fake: FakeGeminiLive) -> None:
    model, heard = await opened(fake)
    await fake.server_error()
    await wait_until(lambda: heard.of("error"))
    assert heard.of("error") == [
        ("error", "Gemini Live closed the session: Internal error encountered. (1011)", True)
    ]
    assert not model.connected
    model.send_audio(b"\xff" * FRAME)  # dropped, never raises
    await model.close()


async def test_the_service_ending_the_session_is_reported_as_closed(fake: FakeGeminiLive) -> None:
    model, heard = await opened(fake)
    await fake.end_sessions("Session ended.")
    await wait_until(lambda: heard.of("closed"))
    assert heard.events == [("closed", "Session ended.")]
    await model.close()


async def test_close_is_idempotent_and_silent(fake: FakeGeminiLive) -> None:
    model, heard = await opened(fake)
    await model.close()
    await model.close()
    model.send_audio(b"\xff" * FRAME)
    model.say("nobody hears this")
    await wait_until(lambda: fake.sessions[0].closed)
    assert heard.events == []
    with pytest.raises(RealtimeError, match="closed"):
        await model.connect(SessionSetup("x"))


# ---- goAway ----


async def test_go_away_renews_the_session_with_the_resumption_handle(
    fake: FakeGeminiLive,
) -> None:
    fake.script.reply("First answer.")
    model, heard = await opened(fake)
    model.respond()

    def updates() -> list[dict[str, Any]]:
        return [m for m in fake.sessions[0].sent if "sessionResumptionUpdate" in m]

    await wait_until(updates, what="a resumption handle")
    handle = updates()[-1]["sessionResumptionUpdate"]["newHandle"]
    await fake.go_away(0.5)
    await wait_until(lambda: model.handovers == 1, what="the renewed session")
    assert fake.sessions[1].setup is not None
    assert fake.sessions[1].setup["sessionResumption"] == {"handle": handle}
    assert fake.sessions[1].resumed_from == handle
    await wait_until(lambda: fake.sessions[0].closed)
    fake.script.reply("Second answer.")
    model.respond()
    await wait_until(lambda: len(heard.of("done")) == 2, what="an answer on the new socket")
    assert heard.said() == "First answer.Second answer."
    assert not heard.of("error") and not heard.of("closed")  # the bridge noticed nothing
    await model.close()


async def test_go_away_without_a_handle_replays_the_conversation(fake: FakeGeminiLive) -> None:
    setup = SessionSetup("Be brief.", history=(("user", "I'm Ann."),))
    model, heard = await opened(fake, setup)
    await fake.go_away(0.3)
    await wait_until(lambda: model.handovers == 1)
    assert sent_of(fake, "clientContent", session=1) == [
        {"turns": [{"role": "user", "parts": [{"text": "I'm Ann."}]}], "turnComplete": False}
    ]
    await wait_until(lambda: fake.sessions[0].closed)
    assert heard.events == []
    await model.close()


async def test_go_away_that_cannot_renew_is_fatal(fake: FakeGeminiLive) -> None:
    model, heard = await opened(fake)
    fake.rate_limited = True
    await fake.go_away(0.2)
    await wait_until(lambda: heard.of("error"))
    message, fatal = heard.of("error")[0][1:]
    assert fatal and "could not renew" in message and "quota" in message
    assert not model.connected
    await model.close()


async def test_an_answers_first_chunk_is_heard_without_waiting_for_the_second() -> None:
    """soxr's stream returns nothing for the first chunk fed to a fresh resampler; unprimed,
    every answer's first 40 ms waited for the next chunk (bench/realtime.py measured it)."""
    chunk = np.full(960, 3000, dtype="<i2").tobytes()  # 40 ms at 24 kHz
    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": _b64(chunk)}}
    first = {"serverContent": {"modelTurn": {"parts": [part]}}}

    async def service(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({"setupComplete": {}}))
        await ws.send(json.dumps(first))  # and nothing more: no second chunk, no turnComplete
        await ws.wait_closed()

    async with serve(service, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        model = GeminiLive(GeminiLiveSettings(api_key=KEY, url=f"ws://127.0.0.1:{port}"))
        heard = Heard()
        model.listener = heard
        await model.connect(SessionSetup("x"))
        await wait_until(lambda: heard.of("audio"), what="the first chunk's audio")
        await model.close()
    assert len(heard.audio) >= 240  # most of its 320 samples at 8 kHz


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
