"""The speech-to-text fallback chain (`streaming.fallback`): config, connect and mid-call."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.speech.test_stt_realtime import Heard
from tests.support import wait_until
from voice_call.config import ConfigError, parse_config
from voice_call.sim.deepgram import FakeDeepgram
from voice_call.speech.stack import SpeechStack, SpeechUnavailable, stt_chain
from voice_call.speech.stt.base import SttError
from voice_call.speech.stt.deepgram import DeepgramStt, DeepgramSttSettings
from voice_call.speech.stt.fake import FakeStt
from voice_call.speech.stt.fallback import FallbackStt
from voice_call.speech.stt.openai_realtime import OpenAIRealtimeStt

KEY = "dg-test"


def streaming(**block: Any) -> dict[str, Any]:
    return {"streaming": {"enabled": True, **block}, "tts": {"provider": "fake"}}


def test_the_fallback_list_is_checked_when_the_config_loads() -> None:
    with pytest.raises(
        ConfigError, match=r'streaming\.fallback\[0\]: must be one of .* did you mean "deepgram"'
    ):
        parse_config(streaming(fallback=["deepgarm"]), env={})
    with pytest.raises(ConfigError, match='names "deepgram" twice'):
        parse_config(streaming(provider="deepgram", fallback=["openai", "deepgram"]), env={})
    with pytest.raises(ConfigError, match='names "openai" twice'):
        parse_config(streaming(fallback=["openai"]), env={})  # the default provider
    with pytest.raises(ConfigError, match='names "fake" twice'):
        parse_config(streaming(fallback=["fake", "fake"], provider="deepgram"), env={})


def test_every_engine_of_the_chain_needs_its_key_at_start() -> None:
    config = parse_config(
        {**streaming(provider="deepgram", fallback=["openai"]), "deepgramApiKey": "dg"}, env={}
    )
    with pytest.raises(SpeechUnavailable, match=r"streaming\.providers\.openai\.apiKey: required"):
        SpeechStack(config)
    config = parse_config(streaming(fallback=["deepgram"]), env={"OPENAI_API_KEY": "sk"})
    with pytest.raises(
        SpeechUnavailable,
        match=r"streaming\.providers\.deepgram\.apiKey: required .* deepgramApiKey /"
        r" DEEPGRAM_API_KEY",
    ):
        SpeechStack(config)
    env = {"OPENAI_API_KEY": "sk", "DEEPGRAM_API_KEY": "dg"}
    config = parse_config(streaming(provider="deepgram", fallback=["openai", "fake"]), env=env)
    chain = stt_chain(config)
    assert [name for name, _ in chain] == ["deepgram", "openai", "fake"]
    assert chain[0][1] == DeepgramSttSettings(api_key="dg")
    stack = SpeechStack(config)
    stt = stack.new_stt()
    assert isinstance(stt, FallbackStt) and stt.names == "deepgram → openai → fake"
    alone = SpeechStack(parse_config(streaming(provider="deepgram"), env=env)).new_stt()
    assert isinstance(alone, DeepgramStt)


async def test_an_engine_that_refuses_at_connect_hands_over_to_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spare = FakeStt()
    async with FakeDeepgram(KEY) as fake:
        refused = DeepgramSttSettings(api_key="dg-wrong", url=fake.listen_url)
        chain = FallbackStt([("deepgram", lambda: DeepgramStt(refused)), ("fake", lambda: spare)])
        heard = Heard()
        chain.listener = heard
        with caplog.at_level(logging.WARNING, "voice_call.speech"):
            await chain.connect()
        assert chain.connected and chain.current is spare and fake.streams[0].refused == 401
    assert (
        'speech-to-text fallback: "deepgram" failed (Deepgram refused the stream: HTTP 401'
        ' Invalid credentials.) — trying "fake" (attempt 2 of 2: deepgram → fake)'
    ) in caplog.text
    chain.send_audio(b"\xff" * 160)
    spare.speech_started()
    spare.final("over to you")
    spare.speech_stopped(ago_s=0.5)
    assert heard.events == [("speech", ""), ("final", "over to you")]
    assert spare.frames == 1 and chain.speech_ended_at == spare.speech_ended_at
    await chain.close()
    assert spare.closed


async def test_an_engine_that_dies_mid_call_hands_over_and_drops_its_late_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = FakeStt(), FakeStt()
    chain = FallbackStt([("openai", lambda: first), ("fake", lambda: second)])
    heard = Heard()
    chain.listener = heard
    await chain.connect()
    assert chain.current is first
    first.partial("hel")
    relay = first.listener
    assert relay is not None
    with caplog.at_level(logging.WARNING, "voice_call.speech"):
        relay.on_error("speech-to-text connection lost; reconnecting failed", True)
        await wait_until(lambda: chain.current is second and chain.connected)
    assert first.closed and ("fatal", "") not in heard.events
    assert '"openai" failed (speech-to-text connection lost; reconnecting failed)' in caplog.text
    assert '— trying "fake" (attempt 2 of 2: openai → fake)' in caplog.text
    relay.on_final("too late")  # the dead engine's stragglers are not the caller's words
    second.final("hello again")
    assert heard.events == [("partial", "hel"), ("final", "hello again")]
    # the last engine dying too ends the stream (the listener's fatal error)
    last = second.listener
    assert last is not None
    last.on_error("gone", True)
    assert await heard.wait("fatal") == "gone"
    await chain.close()


async def test_when_every_engine_fails_connect_names_them_all() -> None:
    chain = FallbackStt(
        [("deepgram", lambda: FakeStt(fail="refused")), ("fake", lambda: FakeStt(fail="down"))]
    )
    with pytest.raises(SttError, match=r"every speech-to-text engine failed \(deepgram → fake\);"):
        await chain.connect()
    assert not chain.connected
    chain.send_audio(b"\xff")  # nothing to send to: dropped
    await chain.close()


def test_the_chain_builds_each_engine_only_when_it_is_needed() -> None:
    built: list[str] = []

    def make(name: str) -> FakeStt:
        built.append(name)
        return FakeStt()

    chain = FallbackStt([("a", lambda: make("a")), ("b", lambda: make("b"))])
    assert built == [] and not chain.connected and chain.speech_ended_at is None
    assert isinstance(chain, FallbackStt) and not isinstance(chain, OpenAIRealtimeStt)


async def test_connect_on_a_chain_in_use_opens_nothing_new() -> None:
    built: list[FakeStt] = []

    def make() -> FakeStt:
        built.append(FakeStt())
        return built[-1]

    chain = FallbackStt([("a", make), ("b", make)])
    await chain.connect()
    built[0]._connected = False  # its socket dropped; it is reconnecting on its own
    await chain.connect()
    assert len(built) == 1 and chain.current is built[0]
    await chain.close()
    with pytest.raises(SttError, match="closed"):
        await chain.connect()
