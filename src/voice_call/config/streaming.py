"""`streaming.providers.<id>`: the speech-to-text service of streamed calls and its settings.

One block per provider this version runs (speech/stt/); another id is refused with the list,
rather than kept and never read. Values left out get the defaults in
speech/stt/openai_realtime.py (`RealtimeSttSettings`).
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import Field, model_validator

from voice_call.config.fields import Bool, Int, OptStr, field_error
from voice_call.config.section import Section
from voice_call.config.tts import Number, refuse_unknown_ids

SttName = Literal["openai", "deepgram", "elevenlabs", "fake"]
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


class DeepgramStt(Section):
    """Deepgram live transcription (`wss://api.deepgram.com/v1/listen`); defaults in
    speech/stt/deepgram.py (`DeepgramSttSettings`)."""

    api_key: OptStr = None  # else deepgramApiKey / DEEPGRAM_API_KEY
    url: OptStr = None  # the WebSocket URL (another host, or the simulator)
    model: OptStr = None  # default nova-3
    language: OptStr = None  # e.g. "en-US"; unset: the model's default
    # silence that ends a speech segment (speech_final), default 300
    endpointing_ms: Int | None = Field(default=None, ge=10, le=10_000)
    # a gap after the last word that ends the utterance (UtteranceEnd), default 1000
    utterance_end_ms: Int | None = Field(default=None, ge=1000, le=5000)
    interim_results: Bool | None = None  # partial transcripts, default true
    smart_format: Bool | None = None  # punctuation and numerals, default true

    @model_validator(mode="after")
    def _websocket_url(self) -> DeepgramStt:
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise field_error(
                "url",
                f'"{self.url}" is not a WebSocket URL'
                ' — write wss://…, e.g. "wss://api.deepgram.com/v1/listen"',
            )
        if self.interim_results is False and self.utterance_end_ms is not None:
            raise field_error(
                "utteranceEndMs",
                "Deepgram finds the end of an utterance from interim results"
                " — remove utteranceEndMs, or set interimResults to true",
            )
        return self


class ElevenLabsRealtimeStt(Section):
    """ElevenLabs realtime speech-to-text (`wss://api.elevenlabs.io/v1/speech-to-text/realtime`,
    VAD commits); defaults in speech/stt/elevenlabs.py (`ElevenLabsSttSettings`)."""

    api_key: OptStr = None  # else elevenlabsApiKey / ELEVENLABS_API_KEY
    url: OptStr = None  # the WebSocket URL (another host, or the simulator)
    model: OptStr = None  # default scribe_v2_realtime
    language: OptStr = None  # ISO 639-1/3, e.g. "en"; unset: detected
    # the service's VAD: the quiet that commits an utterance (default 0.8 s; the API's 1.5 s
    # is slow for a phone turn), its speech threshold (default 0.4), and its minimum spans
    vad_silence_threshold_secs: Number | None = Field(default=None, gt=0.3, le=3.0)
    vad_threshold: Number | None = Field(default=None, ge=0.1, le=0.9)
    min_speech_duration_ms: Int | None = Field(default=None, gt=50, le=2000)
    min_silence_duration_ms: Int | None = Field(default=None, gt=50, le=2000)

    @model_validator(mode="after")
    def _websocket_url(self) -> ElevenLabsRealtimeStt:
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise field_error(
                "url",
                f'"{self.url}" is not a WebSocket URL'
                ' — write wss://…, e.g. "wss://api.elevenlabs.io/v1/speech-to-text/realtime"',
            )
        return self


class FakeStt(Section):
    """The offline transcriber for tests (speech/stt/fake.py); it takes no settings."""


class SttProviders(Section):
    openai: OpenAIRealtimeStt | None = None
    deepgram: DeepgramStt | None = None
    elevenlabs: ElevenLabsRealtimeStt | None = None
    fake: FakeStt | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_providers(cls, data: Any) -> Any:
        return refuse_unknown_ids(data, STT_PROVIDERS, "a speech-to-text provider")
