"""Media stacks for the tests: a server with the media route, and a session without sockets.

On a socket: a running server with the media route on a loopback port, speech from the fake
OpenAI. The Runtime uses the mock provider (no carrier REST) with streaming on; the route is told
which carrier's protocol to speak, so one stack serves the Twilio, Telnyx and Plivo tests. STT is
the real OpenAI Realtime client against `FakeOpenAI`'s transcription socket and TTS the real
OpenAI client against its `/v1/audio/speech`.

In process: a MediaSession with fake STT and TTS and a recording outbox (`SessionHarness`), and
a MediaSessions registry on fake speech and a fake clock (`registry`).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.media.carrier import FakeCarrier
from tests.support import wait_until
from voice_call.clock import FakeClock
from voice_call.config import parse_config
from voice_call.media.outbox import Outbox
from voice_call.media.registry import MediaSessions
from voice_call.media.session import MediaSession
from voice_call.media.stream_protocols import MarkAck, Start, TwilioStream
from voice_call.models import CallEvent, CallRecord, CallState, EventType, Mode
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.media import MediaLimits, MediaRoute
from voice_call.server.serve import RunningServer, start_background
from voice_call.sim.openai import FakeOpenAI, SpeechScript, TranscriptionScript
from voice_call.speech.stack import Voice
from voice_call.speech.stt.fake import FakeStt
from voice_call.speech.tts.fake import FakeTts

KEY = "sk-test"
CARRIERS = ["twilio", "telnyx", "plivo"]


def media_config(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "provider": "mock",
        "serve": {"port": 0},
        "maxConcurrentCalls": 20,
        "staleCallReaperSeconds": 0,
        "mock": {"answerDelayMs": 0, "silent": True},
        "openaiApiKey": KEY,
        "streaming": {
            "enabled": True,
            "dropGraceMs": 200,
            "providers": {
                "openai": {"url": fake.realtime_url, "silenceDurationMs": 300, "vadThreshold": 0.3}
            },
        },
        # speed 2.5: the fake voice talks faster, so a greeting takes 2-3 s, not 6
        "tts": {"provider": "openai", "providers": {"openai": {"baseUrl": fake.url, "speed": 2.5}}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = copy.deepcopy(value)
    return raw


@dataclass
class MediaServer:
    runtime: Runtime
    fake: FakeOpenAI
    server: RunningServer
    carrier: str
    route: MediaRoute
    sent: list[CallEvent]  # every event the media sessions reported to the manager

    @property
    def url(self) -> str:
        return (
            self.server.url.replace("http://", "ws://") + self.runtime.config.streaming.stream_path
        )

    async def new_call(self) -> CallRecord:
        record = await self.runtime.manager.initiate(
            to="+15555550123", message="Hello there", mode=Mode.CONVERSATION
        )
        await self.runtime.manager.settle()
        latest = await self.runtime.store.get(record.call_id)
        assert latest is not None and latest.provider_call_id
        return latest

    def client(self, record: CallRecord, token: str | None = "mint", **kw: Any) -> FakeCarrier:
        if token == "mint":
            token = self.runtime.media.token(record.call_id)
        assert record.provider_call_id is not None
        return FakeCarrier(self.carrier, self.url, record.provider_call_id, token, **kw)

    async def ended(self, call_id: str) -> CallRecord:
        """The call's record once it is over."""

        async def terminal() -> bool:
            record = await self.runtime.store.get(call_id)
            return record is not None and record.terminal

        await wait_until(terminal)
        record = await self.runtime.store.get(call_id)
        assert record is not None
        return record

    async def events(self, call_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.runtime.store.events(call_id=call_id)
        return [(row.type, row.data) for row in rows]


@asynccontextmanager
async def media_server(
    tmp_path: Path,
    carrier: str,
    *,
    limits: MediaLimits | None = None,
    speech: SpeechScript | None = None,
    transcription: TranscriptionScript | None = None,
    **overrides: Any,
) -> AsyncIterator[MediaServer]:
    speech = speech or SpeechScript(first_byte_ms=60, per_chunk_ms=40, chunk_bytes=4800)
    transcription = transcription or TranscriptionScript(first_delta_ms=20, per_word_ms=10)
    async with FakeOpenAI(KEY, speech=speech, transcription=transcription) as fake:
        config = parse_config(media_config(fake, **overrides), env={})
        runtime = Runtime(config, tmp_path / "home")
        sent: list[CallEvent] = []

        async def tap(event: CallEvent) -> object:
            sent.append(event)
            return await runtime.manager.handle_event(event)

        runtime.media.sink = tap
        route = MediaRoute(runtime, limits, carrier=carrier)
        app = build_app(runtime, media=route)
        server = await start_background(runtime, app=app, announce=False)
        try:
            yield MediaServer(runtime, fake, server, carrier, route, sent)
        finally:
            await server.stop()


# ------------------------------------------------------------ in process: no sockets


class Recorder:
    """The socket side: what the session queued, decoded."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.outbox = Outbox(self._send)
        self.task = asyncio.create_task(self.outbox.run())
        self.changed = asyncio.Event()

    async def _send(self, text: str) -> None:
        self.frames.append(json.loads(text))
        self.changed.set()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == event]

    async def wait(self, check: Any, timeout: float = 3) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


class SessionHarness:
    """A MediaSession on the Twilio protocol with fake STT and TTS, its frames in a `Recorder`."""

    def __init__(self, tts: Any = None, timeout_s: float = 2.0) -> None:
        protocol = TwilioStream()
        protocol.bind(Start(call_id="CA1", stream_id="MZ1"))
        self.wire = Recorder()
        self.stt = FakeStt()
        self.tts = tts or FakeTts({"msPerChar": 20, "firstChunkMs": 30, "chunkMs": 40})
        self.events: list[CallEvent] = []
        self.fatal: list[tuple[int, str]] = []

        async def sink(event: CallEvent) -> None:
            self.events.append(event)

        self.session = MediaSession(
            "call-1",
            protocol,
            self.wire.outbox,
            self.stt,
            Voice(self.tts, timeout_s),
            sink,
            on_fatal=lambda code, reason: self.fatal.append((code, reason)),
        )

    def ack_marks(self) -> None:
        for mark in self.wire.of("mark"):
            self.session.handle(MarkAck(mark["mark"]["name"]))

    async def close(self) -> None:
        await self.session.close()
        self.wire.outbox.close()
        await self.wire.task

    def kinds(self) -> list[EventType]:
        return [e.type for e in self.events]


class FakeSpeech:
    """The registry's speech stack: a FakeStt per stream (kept for the test), one FakeTts."""

    def __init__(self) -> None:
        self.stts: list[FakeStt] = []
        self.tts = FakeTts()
        self.routes: list[Any] = []
        self.languages: list[tuple[str, str | None]] = []  # ("stt" | "voice", a call's own)

    def new_stt(self, language: str | None = None) -> FakeStt:
        self.languages.append(("stt", language))
        self.stts.append(FakeStt())
        return self.stts[-1]

    def voice(self, route_tts: Any = None, language: str | None = None) -> Voice:
        self.languages.append(("voice", language))
        self.routes.append(route_tts)
        return Voice(self.tts, 1.0)

    async def close(self) -> None:
        return None


def registry(
    provider: str = "telnyx", **streaming: Any
) -> tuple[MediaSessions, FakeSpeech, FakeClock]:
    """A MediaSessions registry for `provider`, with `streaming` config, on fake speech."""
    raw: dict[str, Any] = {"streaming": {"enabled": True, **streaming}}
    if provider != "mock":
        raw["provider"] = provider
        raw["fromNumber"] = "+15550001234"
        raw[provider] = {"twilio": {"accountSid": "AC1", "authToken": "t"},
                         "telnyx": {"apiKey": "k", "connectionId": "c", "publicKey": "p"},
                         "plivo": {"authId": "a", "authToken": "t"}}[provider]  # fmt: skip
    config = parse_config(raw, env={})
    speech, clock = FakeSpeech(), FakeClock()

    async def sink(event: CallEvent) -> None:
        return None

    async def end(call_id: str, reason: CallState) -> None:
        return None

    return MediaSessions(config, sink=sink, end_call=end, clock=clock, speech=speech), speech, clock
