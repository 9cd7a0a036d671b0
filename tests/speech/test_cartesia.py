"""The Cartesia TTS engine against the fake Cartesia socket, and its config."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from tests.support import wait_until
from voice_call.config import ConfigError, parse_config
from voice_call.sim.cartesia import FakeCartesia
from voice_call.sim.voice import synthetic_speech
from voice_call.speech.stack import SpeechStack, SpeechUnavailable
from voice_call.speech.tts.base import REPLY_PART, ReplyPart, TtsAudio, TtsError
from voice_call.speech.tts.cartesia import CartesiaTts
from voice_call.speech.tts.settings import resolve_tts

KEY = "car-test"


def quick() -> FakeCartesia:
    return FakeCartesia(KEY, first_byte_ms=0, per_chunk_ms=0)


def engine(fake: FakeCartesia, **options: Any) -> CartesiaTts:
    return CartesiaTts({"apiKey": KEY, "url": fake.ws_url, **options})


async def spoken(chunks: AsyncGenerator[TtsAudio, None]) -> list[TtsAudio]:
    return [chunk async for chunk in chunks]


async def reply(tts: CartesiaTts, sentences: list[str], reply_id: str = "r1") -> list[bytes]:
    """Each sentence as playback asks for it: inside its reply, the last one marked."""
    audio = []
    for index, sentence in enumerate(sentences):
        REPLY_PART.set(ReplyPart(reply_id, index == len(sentences) - 1))
        audio.append(b"".join(c.data for c in await spoken(tts.synthesize(sentence))))
    REPLY_PART.set(None)
    return audio


async def test_a_sentence_comes_as_ulaw_at_8_khz_with_nothing_to_resample() -> None:
    async with quick() as fake:
        tts = engine(fake)
        chunks = await spoken(tts.synthesize("Hello there."))
        await tts.close()
    assert chunks and {(c.rate, c.encoding) for c in chunks} == {(8000, "ulaw")}
    assert b"".join(c.data for c in chunks) == synthetic_speech("Hello there.")
    [socket] = fake.sockets
    assert socket.headers["x-api-key"] == KEY and socket.headers["cartesia-version"] == "2025-04-16"
    [request] = socket.received
    assert request["output_format"] == {
        "container": "raw",
        "encoding": "pcm_mulaw",
        "sample_rate": 8000,
    }
    assert request["continue"] is False and request["model_id"] == "sonic-2"
    assert request["voice"]["mode"] == "id" and request["language"] == "en"


async def test_a_reply_s_sentences_continue_one_context_each_ending_at_its_flush() -> None:
    sentences = ["Hello there.", "Your appointment is on Tuesday.", "See you then!"]
    async with quick() as fake:
        tts = engine(fake)
        audio = await reply(tts, sentences)
        await tts.close()
    # each sentence's audio is its own, in full: playback knows where each one ends
    assert audio == [synthetic_speech(s + (" " if i < 2 else "")) for i, s in enumerate(sentences)]
    received = fake.sockets[0].received
    assert len({m["context_id"] for m in received}) == 1
    assert [(m["transcript"], m["continue"], m.get("flush", False)) for m in received] == [
        ("Hello there. ", True, False),
        ("", True, True),
        ("Your appointment is on Tuesday. ", True, False),
        ("", True, True),
        ("See you then!", False, False),
    ]
    sent = [m["type"] for m in fake.sockets[0].sent if m["type"] != "chunk"]
    assert sent == ["flush_done", "flush_done", "done"]


async def test_replies_and_lone_texts_get_contexts_of_their_own_on_one_socket() -> None:
    async with quick() as fake:
        tts = engine(fake)
        await tts.warm()
        await reply(tts, ["One.", "Two."], "a")
        await reply(tts, ["Three.", "Four."], "b")
        await spoken(tts.synthesize("Alone."))
        await tts.close()
    [socket] = fake.sockets  # opened by warm(), reused by every request
    contexts = [m["context_id"] for m in socket.received if m["transcript"]]
    assert contexts[0] == contexts[1] != contexts[2] == contexts[3] != contexts[4]


async def test_an_error_frame_fails_the_sentence_and_the_reply_goes_on_in_a_new_context() -> None:
    async with quick() as fake:
        tts = engine(fake)
        fake.script.error = "Internal server error"
        REPLY_PART.set(ReplyPart("r", False))
        with pytest.raises(TtsError, match="Internal server error"):
            await spoken(tts.synthesize("First."))
        fake.script.error = None
        REPLY_PART.set(ReplyPart("r", True))
        assert await spoken(tts.synthesize("Second."))
        REPLY_PART.set(None)
        await tts.close()
    first, *rest = [m["context_id"] for m in fake.sockets[0].received if m["transcript"]]
    assert rest and first not in rest


async def test_an_invalid_model_is_the_service_s_refusal() -> None:
    async with quick() as fake:
        tts = engine(fake, modelId="tacotron")
        with pytest.raises(TtsError, match=r"Invalid model.*status 400"):
            await spoken(tts.synthesize("Hello."))
        await tts.close()


@pytest.mark.parametrize(
    ("options", "status"), [({"apiKey": "car-wrong"}, "HTTP 401"), ({"version": ""}, "HTTP 400")]
)
async def test_a_refused_handshake_fails_the_sentence_with_the_reason(
    options: dict[str, Any], status: str
) -> None:
    async with quick() as fake:
        tts = engine(fake, **options)
        await tts.warm()  # warming swallows it: the sentence reports it
        with pytest.raises(TtsError, match=status):
            await spoken(tts.synthesize("Hello."))
        await tts.close()
    assert {s.refused for s in fake.sockets} == {int(status[-3:])}


async def test_a_lost_socket_fails_the_waiting_sentence_and_the_next_reconnects() -> None:
    async with FakeCartesia(KEY, first_byte_ms=0, per_chunk_ms=50, time_scale=1.0) as fake:
        tts = engine(fake)
        chunks = tts.synthesize("A long sentence that takes a while to say out loud.")
        async with contextlib.aclosing(chunks):
            assert await anext(chunks)
            await fake.drop(1011)
            with pytest.raises(TtsError, match="closed the connection"):
                async for _ in chunks:
                    pass
        assert await spoken(tts.synthesize("Back again."))
        await tts.close()
    assert len(fake.sockets) == 2


async def test_a_sentence_given_up_mid_way_cancels_its_context() -> None:
    async with FakeCartesia(KEY, first_byte_ms=0, per_chunk_ms=30, time_scale=1.0) as fake:
        tts = engine(fake)
        chunks = tts.synthesize("A long sentence that takes a while to say out loud.")
        async with contextlib.aclosing(chunks):
            await anext(chunks)  # the caller barged in after the first chunk
        [request] = fake.sockets[0].received
        cancel = {"context_id": request["context_id"], "cancel": True}
        await wait_until(lambda: cancel in fake.sockets[0].received)
        await tts.close()
    chunks_sent = [m for m in fake.sockets[0].sent if m["type"] == "chunk"]
    assert len(chunks_sent) < len(synthetic_speech(request["transcript"])) // 320
    assert not [m for m in fake.sockets[0].sent if m["type"] == "done"]


# --------------------------------------------------------------------------- config


def streaming(tts: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"streaming": {"enabled": True, "provider": "fake"}, "tts": tts, **top}


async def test_the_key_comes_from_cartesia_api_key_or_its_environment_variable() -> None:
    async with quick() as fake:
        block = {"provider": "cartesia", "providers": {"cartesia": {"url": fake.ws_url}}}
        for raw, env in (
            (streaming(block, cartesiaApiKey=KEY), {}),
            (streaming(block), {"CARTESIA_API_KEY": KEY}),
        ):
            stack = SpeechStack(parse_config(raw, env=env))
            voice = stack.voice()
            assert isinstance(voice.engine, CartesiaTts)
            assert await spoken(voice.engine.synthesize("Hi."))
            await stack.close()
    assert [s.headers["x-api-key"] for s in fake.sockets] == [KEY, KEY]


def test_no_cartesia_key_is_reported_at_start_with_the_fix() -> None:
    config = parse_config(streaming({"provider": "cartesia"}), env={})
    with pytest.raises(SpeechUnavailable, match="CARTESIA_API_KEY"):
        SpeechStack(config)


def test_a_fallback_cartesia_without_a_key_is_a_config_error() -> None:
    raw = streaming({"provider": "fake", "fallback": ["cartesia"]})
    with pytest.raises(ConfigError, match=r"cartesia.*no API key"):
        parse_config(raw, env={})


def test_a_cartesia_key_alone_does_not_pick_cartesia() -> None:
    assert resolve_tts({}, {}, cartesia_api_key=KEY).provider == "espeak"
    settings = resolve_tts({}, {"provider": "cartesia"}, cartesia_api_key=KEY)
    assert settings.options == {"apiKey": KEY}


@pytest.mark.parametrize(
    ("block", "wrong"),
    [
        ({"url": "https://api.cartesia.ai"}, "not a WebSocket URL"),
        ({"outputFormat": "mp3"}, "outputFormat"),
        ({"voiceId": 5}, "voiceId"),
    ],
)
def test_bad_cartesia_settings_are_refused(block: dict[str, Any], wrong: str) -> None:
    raw = streaming({"provider": "cartesia", "providers": {"cartesia": block}}, cartesiaApiKey=KEY)
    with pytest.raises(ConfigError, match=wrong):
        parse_config(raw, env={})
