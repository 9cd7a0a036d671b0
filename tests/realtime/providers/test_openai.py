"""The OpenAI Realtime provider against the fake OpenAI service, over real loopback sockets."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import wait_until
from voice_call.audio.g711 import SILENCE_BYTE, frames
from voice_call.config.realtime import OpenAIRealtimeOptions
from voice_call.realtime.model import RealtimeError, SessionSetup, ToolSpec
from voice_call.realtime.providers.openai import (
    VERBATIM,
    OpenAIRealtime,
    OpenAIRealtimeSettings,
    settings_from,
)
from voice_call.sim.openai.conversation import SAY_PREFIX, ConversationSession
from voice_call.sim.openai.server import ConversationScript, FakeOpenAI, ToolCall
from voice_call.sim.voice import synthetic_speech

KEY = "sk-test-realtime"
SETUP = SessionSetup(instructions="You answer the phone for Acme.")


@dataclass
class Heard:
    """A ModelListener that writes everything down."""

    audio: bytearray = field(default_factory=bytearray)
    events: list[tuple[str, Any]] = field(default_factory=list)

    def kinds(self, kind: str) -> list[Any]:
        return [value for name, value in self.events if name == kind]

    def on_audio(self, ulaw: bytes) -> None:
        self.audio += ulaw
        self.events.append(("audio", len(ulaw)))

    def on_speech_started(self) -> None:
        self.events.append(("speech_started", None))

    def on_input_transcript(self, text: str, final: bool) -> None:
        self.events.append(("final" if final else "partial", text))

    def on_output_transcript(self, delta: str) -> None:
        self.events.append(("said", delta))

    def on_response_done(self) -> None:
        self.events.append(("done", None))

    def on_tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self.events.append(("tool", (call_id, name, arguments)))

    def on_error(self, message: str, fatal: bool) -> None:
        self.events.append(("fatal" if fatal else "error", message))

    def on_closed(self, reason: str) -> None:
        self.events.append(("closed", reason))


@dataclass
class Line:
    fake: FakeOpenAI
    model: OpenAIRealtime
    heard: Heard

    @property
    def session(self) -> ConversationSession:
        return self.fake.conversations[-1]

    def said(self) -> str:
        return "".join(self.heard.kinds("said"))


def caller_speaks(text: str, silence_ms: int = 700) -> list[bytes]:
    """20 ms µ-law frames: the caller's words, then enough quiet for the server VAD."""
    return frames(synthetic_speech(text) + bytes([SILENCE_BYTE]) * (8 * silence_ms))


def sent_errors(session: ConversationSession) -> list[dict[str, Any]]:
    return [e["error"] for e in session.server_events("error")]


def settings_for(fake: FakeOpenAI, **overrides: Any) -> OpenAIRealtimeSettings:
    return OpenAIRealtimeSettings(api_key=KEY, url=fake.conversation_url, **overrides)


@pytest.fixture
def script() -> ConversationScript:
    return ConversationScript(first_audio_ms=200, per_chunk_ms=20)


@pytest.fixture
async def line(script: ConversationScript) -> AsyncIterator[Line]:
    async with FakeOpenAI(KEY, conversation=script, time_scale=0.05) as fake:
        model = OpenAIRealtime(settings_for(fake))
        heard = Heard()
        model.listener = heard
        try:
            yield Line(fake, model, heard)
        finally:
            await model.close()


# --- settings -----------------------------------------------------------------------------------


def test_settings_default_to_gpt_realtime_marin_and_server_vad() -> None:
    settings = settings_from(None, "sk-env")
    assert settings == OpenAIRealtimeSettings(api_key="sk-env")
    assert (settings.url, settings.model, settings.voice) == (
        "wss://api.openai.com/v1/realtime",
        "gpt-realtime",
        "marin",
    )
    assert (settings.vad_threshold, settings.prefix_padding_ms, settings.silence_duration_ms) == (
        0.5,
        300,
        500,
    )
    assert settings.transcription_model == "gpt-4o-mini-transcribe"


def test_settings_take_the_block_over_the_defaults_and_its_key_over_the_fallback() -> None:
    options = OpenAIRealtimeOptions.model_validate(
        {"apiKey": "sk-block", "model": "gpt-realtime-mini", "speakerVoice": "cedar",
         "silenceDurationMs": 800, "transcriptionModel": "whisper-1", "maxOutputTokens": 300}
    )  # fmt: skip
    settings = settings_from(options, "sk-env")
    assert settings.api_key == "sk-block"
    assert (settings.model, settings.voice, settings.silence_duration_ms) == (
        "gpt-realtime-mini",
        "cedar",
        800,
    )
    assert (settings.transcription_model, settings.max_output_tokens) == ("whisper-1", 300)


def test_no_key_anywhere_is_an_error_naming_where_to_set_it() -> None:
    with pytest.raises(RealtimeError, match=r"realtime\.providers\.openai\.apiKey.*OPENAI_API_KEY"):
        settings_from(OpenAIRealtimeOptions(), None)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"vad": "semantic_vad", "vadThreshold": 0.7}, "vadThreshold"),
        ({"vad": "semantic_vad", "silenceDurationMs": 700}, "silenceDurationMs"),
        ({"eagerness": "high"}, "eagerness"),
    ],
)
def test_a_setting_the_chosen_vad_does_not_read_is_refused(
    given: dict[str, Any], named: str
) -> None:
    with pytest.raises(RealtimeError, match=rf"openai\.{named}: applies to vad"):
        settings_from(OpenAIRealtimeOptions.model_validate(given), "sk")


def test_the_verbatim_wording_is_the_one_the_fake_recognises() -> None:
    assert VERBATIM == SAY_PREFIX


# --- the session --------------------------------------------------------------------------------


async def test_session_update_asks_for_pcmu_both_ways_voice_vad_transcription_and_tools(
    line: Line,
) -> None:
    tool = ToolSpec(
        "lookup",
        "Look an order up.",
        {"type": "object", "properties": {"order": {"type": "string"}}},
    )
    setup = SessionSetup(instructions="Be brief.", tools=(tool,), voice="cedar", language="de-DE")
    await line.model.connect(setup)
    assert line.model.connected
    assert line.session.query == {"model": "gpt-realtime"}
    assert line.session.headers["authorization"] == f"Bearer {KEY}"
    session = line.session.events("session.update")[0]["session"]
    assert session["type"] == "realtime"
    assert session["instructions"] == "Be brief."
    assert session["output_modalities"] == ["audio"]
    audio = session["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu"}
    assert audio["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar"}
    assert audio["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "de"}
    assert audio["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    assert session["tools"] == [
        {"type": "function", "name": "lookup", "description": "Look an order up.",
         "parameters": tool.parameters}
    ]  # fmt: skip
    assert session["tool_choice"] == "auto"
    # the fake validated and applied it: the session it confirmed says the same
    confirmed = line.session.server_events("session.updated")[-1]["session"]
    assert confirmed["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert sent_errors(line.session) == []


async def test_semantic_vad_is_asked_for_with_its_eagerness(line: Line) -> None:
    model = OpenAIRealtime(settings_for(line.fake, vad="semantic_vad", eagerness="low"))
    try:
        await model.connect(SETUP)
    finally:
        await model.close()
    detection = line.session.events("session.update")[0]["session"]["audio"]["input"]
    assert detection["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert sent_errors(line.session) == []


async def test_caller_audio_reaches_the_service_byte_identical(line: Line) -> None:
    await line.model.connect(SETUP)
    audio = synthetic_speech("one two three")
    for frame in frames(audio):
        line.model.send_audio(frame)

    def appended() -> bytes:
        chunks = line.session.events("input_audio_buffer.append")
        return b"".join(base64.b64decode(e["audio"]) for e in chunks)

    await wait_until(lambda: len(appended()) >= len(audio), what="all audio appended")
    assert appended() == audio


async def test_a_caller_turn_gives_speech_events_transcripts_and_an_audio_answer(
    line: Line, script: ConversationScript
) -> None:
    script.say("what are your hours")
    script.reply("We open at nine.")
    await line.model.connect(SETUP)
    before = time.monotonic()
    for frame in caller_speaks("what are your hours"):
        line.model.send_audio(frame)
    await wait_until(lambda: line.heard.kinds("done"), what="the answer's end")
    events = [name for name, _ in line.heard.events]
    assert events.index("speech_started") < events.index("audio")
    assert line.heard.kinds("final") == ["what are your hours"]
    assert line.heard.kinds("partial")[-1] == "what are your hours"
    # µ-law passed through untouched: exactly the fake's speech for the reply
    assert bytes(line.heard.audio) == synthetic_speech("We open at nine.")
    assert line.said() == "We open at nine."
    assert line.model.speech_ended_at is not None
    # the audio went out in a burst, far faster than it lasts: the last word maps to the past
    assert line.model.speech_ended_at < before
    assert sent_errors(line.session) == []


async def test_say_waits_for_the_active_response_then_is_said_verbatim(
    line: Line, script: ConversationScript
) -> None:
    script.reply("Welcome to Acme, how can I help?")
    await line.model.connect(SETUP)
    line.model.respond()
    line.model.say("Please hold.")
    await wait_until(lambda: len(line.heard.kinds("done")) == 2, what="two responses")
    creates = line.session.events("response.create")
    assert [c.get("response", {}).get("instructions") for c in creates] == [
        None,
        VERBATIM + "Please hold.",
    ]
    # the second was sent only after the first response ended
    done_at = line.session.sent.index(line.session.server_events("response.done")[0])
    assert len(line.session.server_events("response.created")) == 2
    assert line.session.said == ["Welcome to Acme, how can I help?", "Please hold."]
    assert done_at >= 0 and sent_errors(line.session) == []
    assert bytes(line.heard.audio) == synthetic_speech(
        "Welcome to Acme, how can I help?"
    ) + synthetic_speech("Please hold.")


async def test_say_refused_because_the_vad_answered_first_is_asked_again_after_it(
    line: Line, script: ConversationScript
) -> None:
    script.say("hello")
    script.reply("Hi, how can I help?")
    await line.model.connect(SETUP)
    for frame in caller_speaks("hello"):
        line.model.send_audio(frame)
    line.model.say("Please hold.")  # queued behind the audio: the VAD's answer starts first
    await wait_until(lambda: len(line.session.said) == 2, what="both answers")
    refused = [e["error"]["code"] for e in line.session.server_events("error")]
    assert refused == ["conversation_already_has_active_response"]
    assert line.session.said == ["Hi, how can I help?", "Please hold."]
    assert line.heard.kinds("error") == []


async def test_respond_during_a_response_is_asked_once_after_it(
    line: Line, script: ConversationScript
) -> None:
    script.reply("Welcome.")
    script.reply("Anything else?")
    await line.model.connect(SETUP)
    line.model.respond()
    line.model.respond()
    line.model.respond()
    await wait_until(lambda: len(line.heard.kinds("done")) == 2, what="two responses")
    assert len(line.session.events("response.create")) == 2
    assert line.session.said == ["Welcome.", "Anything else?"]
    assert sent_errors(line.session) == []


async def test_interrupted_cancels_the_response_and_truncates_at_the_heard_ms(
    line: Line, script: ConversationScript
) -> None:
    script.per_chunk_ms = 2000  # 100 ms a chunk at time_scale 0.05: still streaming
    script.reply("This is a long answer that the caller will cut short.")
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: len(line.heard.audio) >= 1600, what="200 ms of answer audio")
    line.model.interrupted(150)
    await wait_until(lambda: line.session.truncations, what="the truncation")
    assert len(line.session.events("response.cancel")) == 1
    item = line.session.server_events("response.output_audio.delta")[0]["item_id"]
    truncate = line.session.events("conversation.item.truncate")[0]
    assert (truncate["item_id"], truncate["content_index"], truncate["audio_end_ms"]) == (
        item,
        0,
        150,
    )
    await wait_until(lambda: line.heard.kinds("done"), what="the cancelled response's end")
    done = line.session.server_events("response.done")[0]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "client_cancelled"
    assert sent_errors(line.session) == []


async def test_interrupted_never_truncates_past_the_audio_received(
    line: Line, script: ConversationScript
) -> None:
    script.reply("Short.")
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: line.heard.kinds("done"), what="the answer")
    line.model.interrupted(60_000)  # a bridge that over-counts must not make the service refuse
    await wait_until(lambda: line.session.truncations, what="the truncation")
    assert line.session.truncations[0].audio_end_ms == len(line.heard.audio) // 8
    # the response had ended: no cancel sent
    assert line.session.events("response.cancel") == []
    assert sent_errors(line.session) == []


async def test_a_barge_in_reaches_the_listener_and_the_service_cancels_the_answer(
    line: Line, script: ConversationScript
) -> None:
    script.per_chunk_ms = 2000
    script.reply("A long answer the caller talks over.")
    script.reply("Sure, stopping.")
    script.say("stop")
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: line.heard.audio, what="the answer's first audio")
    for frame in caller_speaks("stop"):
        line.model.send_audio(frame)
    await wait_until(lambda: len(line.heard.kinds("done")) == 2, what="the second answer")
    assert line.heard.kinds("speech_started") == [None]
    assert line.heard.kinds("final") == ["stop"]
    first = line.session.server_events("response.done")[0]["response"]
    assert (first["status"], first["status_details"]["reason"]) == ("cancelled", "turn_detected")
    started = line.session.sent.index(
        line.session.server_events("input_audio_buffer.speech_started")[0]
    )
    early = [
        base64.b64decode(e["delta"])
        for e in line.session.sent[:started]
        if e["type"] == "response.output_audio.delta"
    ]
    assert bytes(line.heard.audio) == b"".join(early) + synthetic_speech("Sure, stopping.")
    assert sent_errors(line.session) == []


async def test_audio_of_a_response_the_caller_cut_is_dropped_when_it_arrives_late(
    line: Line,
) -> None:
    """Deltas already on the wire when the caller barged in belong to a cancelled answer."""
    await line.model.connect(SETUP)
    dispatch = line.model._dispatch  # the socket cannot be made to race; its events can
    dispatch({"type": "response.created", "response": {"id": "resp_1"}})
    delta = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}
    audio = base64.b64encode(b"\x01" * 160).decode()
    dispatch({"type": "response.output_audio.delta", **delta, "delta": audio})
    dispatch({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "i"})
    dispatch({"type": "response.output_audio.delta", **delta, "delta": audio})
    dispatch({"type": "response.output_audio_transcript.delta", **delta, "delta": "late"})
    assert len(line.heard.audio) == 160
    assert line.heard.kinds("said") == []


async def test_a_tool_call_goes_to_the_listener_and_its_result_gets_a_spoken_follow_up(
    line: Line, script: ConversationScript
) -> None:
    script.reply(ToolCall("lookup", {"order": "A1"}, then=lambda out: f"Your order is {out}."))
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: line.heard.kinds("tool"), what="the tool call")
    call_id, name, arguments = line.heard.kinds("tool")[0]
    assert (name, arguments) == ("lookup", {"order": "A1"})
    line.model.tool_result(call_id, name, "shipped")
    await wait_until(lambda: len(line.heard.kinds("done")) == 2, what="the follow-up")
    output = line.session.events("conversation.item.create")[0]["item"]
    assert output == {"type": "function_call_output", "call_id": call_id, "output": "shipped"}
    assert line.said() == "Your order is shipped."
    assert bytes(line.heard.audio) == synthetic_speech("Your order is shipped.")
    assert sent_errors(line.session) == []


async def test_a_tool_error_goes_back_as_an_error_the_model_can_explain(
    line: Line, script: ConversationScript
) -> None:
    script.reply(ToolCall("lookup", {}, then=lambda out: json.loads(out)["error"]))
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: line.heard.kinds("tool"), what="the tool call")
    call_id, name, _ = line.heard.kinds("tool")[0]
    line.model.tool_result(call_id, name, None, error="the order system is down")
    await wait_until(lambda: len(line.heard.kinds("done")) == 2, what="the follow-up")
    assert line.said() == "the order system is down"


async def test_history_is_replayed_on_connect_as_ga_message_items(line: Line) -> None:
    setup = SessionSetup(
        instructions="x", history=(("user", "Is it open?"), ("bot", "Yes, until six."))
    )
    await line.model.connect(setup)
    await wait_until(
        lambda: len(line.session.server_events("conversation.item.done")) == 2, what="the items"
    )
    items = [e["item"] for e in line.session.events("conversation.item.create")]
    assert items == [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Is it open?"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Yes, until six."}]},
    ]  # fmt: skip
    assert sent_errors(line.session) == []


async def test_a_bad_key_is_a_realtime_error_at_connect(line: Line) -> None:
    model = OpenAIRealtime(
        OpenAIRealtimeSettings(api_key="sk-wrong", url=line.fake.conversation_url)
    )
    with pytest.raises(RealtimeError, match="refused the session: Incorrect API key"):
        await model.connect(SETUP)
    assert not model.connected
    await model.close()


async def test_an_unreachable_service_is_a_realtime_error() -> None:
    model = OpenAIRealtime(OpenAIRealtimeSettings(api_key=KEY, url="ws://127.0.0.1:9/v1/realtime"))
    with pytest.raises(RealtimeError, match="cannot reach OpenAI Realtime"):
        await model.connect(SETUP)
    await model.close()


async def test_a_server_error_mid_call_is_fatal(line: Line, script: ConversationScript) -> None:
    script.fail_after_responses = 1
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: line.heard.kinds("fatal"), what="the fatal error")
    (message,) = line.heard.kinds("fatal")
    assert "close 1011" in message and "The server had an error" in message
    assert not line.model.connected
    assert line.heard.kinds("closed") == []
    line.model.send_audio(b"\xff" * 160)  # dropped, never raises


async def test_a_server_error_on_demand_is_fatal(line: Line) -> None:
    await line.model.connect(SETUP)
    await line.session.fail()
    await wait_until(lambda: line.heard.kinds("fatal"), what="the fatal error")


async def test_the_service_ending_the_session_is_a_clean_close(line: Line) -> None:
    await line.model.connect(SETUP)
    await line.session.end("session expired")
    await wait_until(lambda: line.heard.kinds("closed"), what="on_closed")
    assert line.heard.kinds("closed") == ["session expired"]
    assert line.heard.kinds("fatal") == []
    assert not line.model.connected


async def test_a_rate_limited_response_is_reported_and_the_call_goes_on(
    line: Line, script: ConversationScript
) -> None:
    script.rate_limited = True
    await line.model.connect(SETUP)
    line.model.respond()
    await wait_until(lambda: line.heard.kinds("done"), what="the failed response")
    (message,) = line.heard.kinds("error")
    assert "response failed" in message and "Rate limit" in message
    assert line.model.connected


async def test_reconnecting_after_a_drop_opens_a_new_session_with_the_history(line: Line) -> None:
    await line.model.connect(SETUP)
    await line.session.fail()
    await wait_until(lambda: not line.model.connected, what="the drop")
    first = line.session
    await line.model.connect(SessionSetup(instructions="x", history=(("user", "hello"),)))
    assert line.session is not first and line.model.connected
    await wait_until(
        lambda: line.session.events("conversation.item.create"), what="the history replayed"
    )
    assert sent_errors(line.session) == []


async def test_close_is_idempotent_and_a_closed_session_cannot_reconnect(line: Line) -> None:
    await line.model.connect(SETUP)
    await line.model.close()
    await line.model.close()
    assert not line.model.connected
    line.model.send_audio(b"\xff" * 160)
    with pytest.raises(RealtimeError, match="closed"):
        await line.model.connect(SETUP)
    await wait_until(lambda: line.session.closed, what="the fake to see the close")
    assert line.heard.kinds("closed") == [] and line.heard.kinds("fatal") == []
