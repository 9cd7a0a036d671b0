"""The OpenAI Realtime transcription client against the fake Realtime socket."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import numpy as np
import pytest

from tests.support import StolenTime, wait_until
from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE, pcm16_to_ulaw
from voice_call.sim.openai import FakeOpenAI, TranscriptionScript
from voice_call.speech.stt.base import SttError
from voice_call.speech.stt.openai_realtime import OpenAIRealtimeStt, RealtimeSttSettings

KEY = "sk-test"
SILENT = bytes([SILENCE_BYTE]) * FRAME_BYTES


def loud_frame(index: int = 0) -> bytes:
    t = (np.arange(FRAME_BYTES) + index * FRAME_BYTES) / 8000
    return pcm16_to_ulaw((np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16))


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def _add(self, kind: str, text: str = "") -> None:
        self.events.append((kind, text))
        self.changed.set()

    def on_speech_started(self) -> None:
        self._add("speech")

    def on_partial(self, text: str) -> None:
        self._add("partial", text)

    def on_final(self, text: str) -> None:
        self._add("final", text)

    def on_error(self, message: str, fatal: bool) -> None:
        self._add("fatal" if fatal else "error", message)

    async def wait(self, kind: str, timeout: float = 5) -> str:
        async with asyncio.timeout(timeout):
            while True:
                hit = next((text for k, text in self.events if k == kind), None)
                if hit is not None:
                    return hit
                self.changed.clear()
                await self.changed.wait()


def settings(fake: FakeOpenAI, **changes: object) -> RealtimeSttSettings:
    base = RealtimeSttSettings(api_key=KEY, url=fake.realtime_url, silence_duration_ms=200)
    return replace(base, **changes)  # type: ignore[arg-type]


async def talk(stt: OpenAIRealtimeStt, speech_frames: int = 15, quiet_frames: int = 20) -> None:
    for index in range(speech_frames):
        stt.send_audio(loud_frame(index))
        await asyncio.sleep(0)
    for _ in range(quiet_frames):
        stt.send_audio(SILENT)
        await asyncio.sleep(0)


@pytest.mark.parametrize("api", ["ga", "beta"])
async def test_speech_start_partials_and_final_from_forwarded_ulaw(api: str) -> None:
    script = TranscriptionScript(["yes please"], first_delta_ms=0, per_word_ms=0)
    async with FakeOpenAI(KEY, transcription=script, time_scale=0.05) as fake:
        heard = Heard()
        stt = OpenAIRealtimeStt(settings(fake, api=api, vad_threshold=0.4), heard)
        await stt.connect()
        await stt.connect()  # idempotent
        assert stt.connected and len(fake.sessions) == 1
        await talk(stt)
        assert await heard.wait("final") == "yes please"
        await stt.close()
    kinds = [k for k, _ in heard.events]
    assert kinds[0] == "speech" and "partial" in kinds and kinds[-1] == "final"
    partials = [t for k, t in heard.events if k == "partial"]
    assert partials[-1] == "yes please" and partials[0] == "yes"
    session = fake.sessions[0]
    assert session.dialect == api
    update = session.received[0]
    if api == "ga":
        audio_in = update["session"]["audio"]["input"]
        assert audio_in["format"] == {"type": "audio/pcmu"}
        vad = audio_in["turn_detection"]
    else:
        assert update["session"]["input_audio_format"] == "g711_ulaw"
        vad = update["session"]["turn_detection"]
    assert vad == {
        "type": "server_vad",
        "threshold": 0.4,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
    }
    appended = [e["audio"] for e in session.received if e["type"] == "input_audio_buffer.append"]
    assert base64.b64decode(appended[0]) == loud_frame(0)  # forwarded byte for byte


async def test_a_wrong_key_fails_connect_with_the_reason() -> None:
    async with FakeOpenAI(KEY) as fake:
        stt = OpenAIRealtimeStt(settings(fake, api_key="sk-wrong"))
        with pytest.raises(SttError, match="refused the session: Incorrect API key"):
            await stt.connect()
        assert not stt.connected
    unreachable = OpenAIRealtimeStt(
        RealtimeSttSettings(api_key=KEY, url="ws://127.0.0.1:9/v1/realtime", connect_timeout_s=2)
    )
    with pytest.raises(SttError, match="cannot reach speech-to-text"):
        await unreachable.connect()


async def test_audio_before_connect_is_dropped_not_queued() -> None:
    async with FakeOpenAI(KEY) as fake:
        stt = OpenAIRealtimeStt(settings(fake))
        stt.send_audio(loud_frame())
        await stt.connect()
        await stt.close()
    assert not [e for e in fake.sessions[0].received if e["type"] == "input_audio_buffer.append"]


async def test_an_unexpected_close_reconnects_with_backoff() -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    script = TranscriptionScript(["after the drop"], first_delta_ms=0, per_word_ms=0)
    async with FakeOpenAI(KEY, transcription=script, time_scale=0.05) as fake:
        heard = Heard()
        stt = OpenAIRealtimeStt(settings(fake), heard, sleep=no_wait)
        await stt.connect()
        assert stt._ws is not None
        stt._ws.transport.abort()  # the network drops the socket
        await wait_until(lambda: stt.reconnects == 1)
        await talk(stt)
        assert await heard.wait("final") == "after the drop"
        await stt.close()
    assert waits == [1.0] and len(fake.sessions) == 2


async def test_reconnects_run_out_and_report_a_fatal_error() -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    heard = Heard()
    async with FakeOpenAI(KEY) as fake:
        stt = OpenAIRealtimeStt(
            settings(fake, max_reconnects=3, connect_timeout_s=2), heard, sleep=no_wait
        )
        await stt.connect()
    # the service is gone: every reconnect fails
    assert "reconnecting failed" in await heard.wait("fatal")
    assert waits == [1.0, 2.0, 4.0]
    assert not stt.connected
    await stt.close()


async def test_the_end_of_speech_is_placed_on_our_clock_without_the_vad_s_wait() -> None:
    script = TranscriptionScript(["yes please"], first_delta_ms=0, per_word_ms=0)
    async with FakeOpenAI(KEY, transcription=script) as fake:
        heard = Heard()
        stt = OpenAIRealtimeStt(settings(fake), heard)
        await stt.connect()
        assert stt.speech_ended_at is None
        loop = asyncio.get_running_loop()
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            for index in range(25):  # half a second of speech, then quiet, in real time
                stt.send_audio(loud_frame(index))
                await asyncio.sleep(0.02)
            last_word = loop.time()
            for _ in range(40):
                stt.send_audio(SILENT)
                await asyncio.sleep(0.02)
                if stt.speech_ended_at is not None:
                    break
        await heard.wait("final")
        await stt.close()
    # audio_end_ms counts the 200 ms the VAD waited; the last loud frame was sent before that
    assert stt.speech_ended_at is not None
    off_s = abs(stt.speech_ended_at - last_word)
    assert off_s < 0.1 + stolen.ms / 1000, (off_s, stolen.ms)


async def test_connect_while_reconnecting_does_not_open_a_second_session() -> None:
    """The stream starts (connect) just as the pre-warmed socket is being re-opened: one new
    session, not two racing each other for the caller's audio."""
    release = asyncio.Event()

    async def held(seconds: float) -> None:
        await release.wait()

    async with FakeOpenAI(KEY) as fake:
        stt = OpenAIRealtimeStt(settings(fake), Heard(), sleep=held)
        await stt.connect()
        assert stt._ws is not None
        stt._ws.transport.abort()  # the network drops the socket
        await wait_until(lambda: not stt.connected)
        await stt.connect()  # returns: the session is re-opening on its own
        assert len(fake.sessions) == 1
        release.set()
        await wait_until(lambda: stt.connected and stt.reconnects == 1)
        assert len(fake.sessions) == 2
        await stt.close()
