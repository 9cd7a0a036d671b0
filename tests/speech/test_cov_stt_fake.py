"""FakeStt, the stand-in speech-to-text the media tests and benches drive by hand."""

from __future__ import annotations

import time

import pytest

from voice_call.speech.stt.base import SttError
from voice_call.speech.stt.fake import FakeStt


class Heard:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def on_speech_started(self) -> None:
        self.seen.append(("started", ""))

    def on_partial(self, text: str) -> None:
        self.seen.append(("partial", text))

    def on_final(self, text: str) -> None:
        self.seen.append(("final", text))


async def test_audio_counts_only_while_connected() -> None:
    stt = FakeStt()
    stt.send_audio(b"\xff" * 160)
    assert stt.frames == 0
    await stt.connect()
    await stt.connect()  # already connected: no second handshake
    assert stt.connected
    stt.send_audio(b"\xff" * 160)
    assert stt.frames == 1
    await stt.close()
    assert stt.closed and not stt.connected
    stt.send_audio(b"\xff" * 160)
    assert stt.frames == 1


async def test_a_failing_connect_raises_and_stays_disconnected() -> None:
    stt = FakeStt(connect_delay_s=0.001, fail="401 bad key")
    with pytest.raises(SttError, match="401 bad key"):
        await stt.connect()
    assert not stt.connected


async def test_events_reach_the_listener_and_are_dropped_without_one() -> None:
    stt = FakeStt()
    stt.speech_started()  # no listener yet: nothing happens, no error
    stt.partial("hel")
    stt.final("hello")
    heard = Heard()
    stt.listener = heard  # type: ignore[assignment]
    stt.speech_started()
    stt.partial("hel")
    stt.final("hello")
    assert heard.seen == [("started", ""), ("partial", "hel"), ("final", "hello")]


def test_speech_stopped_records_when_the_caller_went_quiet() -> None:
    stt = FakeStt()
    before = time.monotonic()
    stt.speech_stopped(ago_s=0.25)
    assert stt.speech_ended_at is not None
    assert before - 0.25 - 1.0 < stt.speech_ended_at <= time.monotonic() - 0.25
