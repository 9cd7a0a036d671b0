"""A running server with the media route on a loopback port, speech from the fake OpenAI.

The Runtime uses the mock provider (no carrier REST) with streaming on; the route is told which
carrier's protocol to speak, so one harness serves the Twilio, Telnyx and Plivo tests. STT is
the real OpenAI Realtime client against `FakeOpenAI`'s transcription socket and TTS the real
OpenAI client against its `/v1/audio/speech`.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.media.carrier import FakeCarrier
from voice_call.config import parse_config
from voice_call.models import CallEvent, CallRecord, Mode
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.media import MediaLimits, MediaRoute
from voice_call.server.serve import RunningServer, start_background
from voice_call.sim.openai import FakeOpenAI, SpeechScript, TranscriptionScript

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


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a plain condition (state that has no event of its own to await)."""

    async def checked() -> bool:
        return check()

    await wait_for(checked, timeout)


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

        await wait_for(terminal)
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
