"""StreamedSpeech, the providers' shared use of a call's media stream: the one-path rule.

A real MediaSessions registry and MediaSession (fake STT and TTS in process, a recording
outbox): speech goes over the stream when there is one; the carrier's own voice only when
there is none, or when the stream failed before any audio and using it cannot end the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.media.stack import SessionHarness, registry
from tests.support import wait_until
from voice_call.models import CallRecord, Direction, Mode
from voice_call.providers import streamed_speech
from voice_call.providers.base import ProviderError
from voice_call.providers.streamed_speech import StreamedSpeech
from voice_call.speech.tts.base import TtsError
from voice_call.speech.tts.fake import FakeTts


def call(call_id: str = "call-1") -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="twilio",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        **{"from": "+15550001000", "to": "+15550002000"},
        started_at=0.0,
    )


class Native:
    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, text: str) -> Any:
        async def say() -> None:
            self.said.append(text)

        return say


class FailingTts(FakeTts):
    async def synthesize(self, text: str) -> Any:  # type: ignore[override]
        raise TtsError("the voice service is down")
        yield  # an async generator that fails at once


def streamed(replaces: bool, tts: Any = None) -> tuple[StreamedSpeech, SessionHarness]:
    media, _, _ = registry("twilio")
    helper = StreamedSpeech(media.config, native_replaces_stream=replaces)
    helper.attach(media)
    harness = SessionHarness(tts)
    media.register(harness.session)
    return helper, harness


async def test_speech_goes_over_the_stream_and_reports_it_heard_whole() -> None:
    helper, h = streamed(replaces=True)
    native = Native()
    saying = asyncio.create_task(helper.say(call(), "Hello there.", native("Hello there.")))
    await wait_until(lambda: any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark")))
    h.ack_marks()
    assert await asyncio.wait_for(saying, 2) is None  # heard whole
    assert native.said == [] and h.session.audio_frames > 0
    await h.close()


async def test_no_stream_falls_back_at_once_after_the_first_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streamed_speech, "STREAM_WAIT_S", 0.05)
    media, _, _ = registry("twilio")
    helper = StreamedSpeech(media.config, native_replaces_stream=True)
    helper.attach(media)
    native = Native()
    assert await helper.say(call("gone"), "One.", native("One.")) is None
    # no second wait: were there one, it would now last far past the limit
    monkeypatch.setattr(streamed_speech, "STREAM_WAIT_S", 60.0)
    async with asyncio.timeout(10):
        assert await helper.queue(call("gone"), "Two.", native("Two.")) is None
    assert native.said == ["One."]  # queue leaves the native path to the caller


@pytest.mark.parametrize("replaces", [True, False])
async def test_a_stream_failing_before_any_audio(replaces: bool) -> None:
    helper, h = streamed(replaces, tts=FailingTts())
    native = Native()
    if replaces:  # a Twilio update / Plivo transfer would end the stream, and the call
        with pytest.raises(ProviderError, match="synthesis failed"):
            await asyncio.wait_for(helper.say(call(), "Hi.", native("Hi.")), 3)
        assert native.said == []
    else:  # Telnyx's speak plays beside the stream: the caller still hears it
        assert await asyncio.wait_for(helper.say(call(), "Hi.", native("Hi.")), 3) is None
        assert native.said == ["Hi."]
    await h.close()
