"""The MediaSessions registry: stream URLs and tokens for providers, pre-warming, waiting."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.media.stack import registry
from voice_call.models import CallRecord, Direction, Mode


@pytest.mark.parametrize(
    ("provider", "query"), [("twilio", False), ("telnyx", True), ("plivo", True), ("mock", False)]
)
def test_stream_urls_follow_the_webhook_origin_and_carry_the_token_where_allowed(
    provider: str, query: bool
) -> None:
    media, _, _ = registry(provider)
    url = media.stream_url("https://example.ngrok.app/voice/webhook", "call-1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "example.ngrok.app", "/voice/stream")
    token = parse_qs(parts.query).get("token", [None])[0]
    if query:
        assert token is not None and media.tokens.check(token, "call-1").ok
    else:
        assert token is None  # Twilio: put media.token(call_id) in a <Parameter> instead
        assert media.tokens.check(media.token("call-1"), "call-1").ok
    local = media.stream_url("http://127.0.0.1:3334/voice/webhook", "call-1", token_in_query=False)
    assert local == "ws://127.0.0.1:3334/voice/stream"


async def test_prewarm_connects_now_and_expires_unused() -> None:
    media, speech, clock = registry(tokenTtlSeconds=30)
    media.prewarm("call-1")
    media.prewarm("call-1")  # idempotent
    await clock.advance(0)
    assert len(speech.stts) == 1 and speech.stts[0].connected and speech.tts.warmed == 1
    assert media.take_stt("call-1") is speech.stts[0]  # the stream takes the warm one
    fresh = media.take_stt("call-1")
    assert fresh is not speech.stts[0] and not fresh.connected
    media.prewarm("call-2")
    await clock.advance(31)
    assert speech.stts[-1].closed  # never used: closed after the token's lifetime
    await media.close()


async def test_wait_for_times_out_without_a_stream() -> None:
    media, _, _ = registry()
    assert await media.wait_for("nobody", 0.01) is None
    assert media._waiters == {}
    await media.close()


async def test_the_end_of_a_call_closes_what_was_warmed_for_it() -> None:
    media, speech, clock = registry(tokenTtlSeconds=300)
    media.prewarm("never-answered")
    await clock.advance(0)
    assert speech.stts[0].connected
    media.call_ended("never-answered")
    media.call_ended("never-answered")  # twice, or for a call never warmed: nothing happens
    media.call_ended("other")
    await clock.advance(0)
    assert speech.stts[0].closed  # at once, not after the token's 300 s
    assert media.take_stt("never-answered") is not speech.stts[0]
    await media.close()


async def test_a_long_ring_keeps_its_warm_stt_and_gets_a_longer_token() -> None:
    media, speech, clock = registry(tokenTtlSeconds=60)
    media.prewarm("slow", keep_s=330)  # a Dial that may ring five minutes
    await clock.advance(61)
    assert not speech.stts[0].closed  # kept past the default lifetime
    await clock.advance(270)
    assert speech.stts[0].closed
    url = media.stream_url("https://voice.example.com/voice/webhook", "slow", min_ttl_s=330)
    token = parse_qs(urlsplit(url).query)["token"][0]
    expiry = int(token.split(".")[1])
    assert expiry - media.tokens._now() >= 329
    await media.close()


async def test_a_calls_own_language_reaches_its_speech_engines() -> None:
    media, speech, _ = registry()
    own = _outbound({"language": "zh-TW"})
    media.prewarm("call-1", own)
    media.take_stt("call-2", own)
    plain = _outbound({})
    media.voice_for(plain)
    assert speech.languages == [
        ("stt", "zh-TW"),
        ("voice", "zh-TW"),
        ("stt", "zh-TW"),
        ("voice", None),
    ]


def _outbound(metadata: dict[str, object]) -> CallRecord:
    return CallRecord.model_validate(
        {
            "provider": "telnyx",
            "direction": Direction.OUTBOUND,
            "mode": Mode.CONVERSATION,
            "from": "+15550001234",
            "to": "+15550002000",
            "startedAt": 0.0,
            "metadata": metadata,
        }
    )
