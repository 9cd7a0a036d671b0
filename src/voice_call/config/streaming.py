"""`streaming.providers.<id>`: the speech-to-text service of streamed calls and its settings.

One block per provider this version runs (speech/stt/); another id is refused with the list,
rather than kept and never read. Values left out get the defaults in
speech/stt/openai_realtime.py (`RealtimeSttSettings`).
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import Field, model_validator

from voice_call.config.fields import Int, OptStr, field_error
from voice_call.config.section import Section
from voice_call.config.tts import Number, refuse_unknown_ids

SttName = Literal["openai", "fake"]
STT_PROVIDERS: tuple[str, ...] = typing.get_args(SttName)


class OpenAIRealtimeStt(Section):
    """OpenAI Realtime transcription (`wss://…/v1/realtime?intent=transcription`)."""

    api_key: OptStr = None  # else openaiApiKey / OPENAI_API_KEY
    url: OptStr = None  # the WebSocket URL (another host, or the simulator)
    model: OptStr = None  # default gpt-4o-transcribe
    language: OptStr = None  # e.g. "en"; unset: detected
    prompt: OptStr = None  # vocabulary hints for the transcriber
    api: Literal["ga", "beta"] | None = None  # the wire dialect, default "ga"
    # server VAD: when the caller has stopped talking
    vad_threshold: Number | None = Field(default=None, ge=0, le=1)  # default 0.5
    prefix_padding_ms: Int | None = Field(default=None, ge=0, le=10_000)  # default 300
    silence_duration_ms: Int | None = Field(default=None, ge=0, le=10_000)  # default 800

    @model_validator(mode="after")
    def _websocket_url(self) -> OpenAIRealtimeStt:
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise field_error(
                "url",
                f'"{self.url}" is not a WebSocket URL'
                ' — write wss://…, e.g. "wss://api.openai.com/v1/realtime?intent=transcription"',
            )
        return self


class FakeStt(Section):
    """The offline transcriber for tests (speech/stt/fake.py); it takes no settings."""


class SttProviders(Section):
    openai: OpenAIRealtimeStt | None = None
    fake: FakeStt | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_providers(cls, data: Any) -> Any:
        return refuse_unknown_ids(data, STT_PROVIDERS, "a speech-to-text provider")
