"""Build the speech services a streamed call uses, from config, once per Runtime.

Problems are reported when the stack is built (server start), with the config path to fix:
no OpenAI key for speech-to-text, espeak-ng missing for the offline voice, a bad setting. TTS
engines are cached per effective settings, so calls on the same number share one HTTP pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from voice_call.config import Config
from voice_call.config.streaming import STT_PROVIDERS, OpenAIRealtimeStt
from voice_call.config.tts import TtsConfig
from voice_call.errors import Unavailable
from voice_call.speech.stt.base import SttSession
from voice_call.speech.tts.base import TtsEngine, TtsUnavailable
from voice_call.speech.tts.factory import build_tts
from voice_call.speech.tts.settings import TtsSettings, resolve_tts

log = logging.getLogger("voice_call.speech")


class SpeechUnavailable(Unavailable):
    """Streaming is on but its speech services cannot be set up; the message says what to fix."""


@dataclass(frozen=True)
class Voice:
    engine: TtsEngine
    timeout_s: float  # per sentence


class Speech(Protocol):
    """What a media session needs: a new STT session per call and a voice per call."""

    def new_stt(self) -> SttSession: ...

    def voice(self, route_tts: TtsConfig | Mapping[str, Any] | None = None) -> Voice: ...

    async def close(self) -> None: ...


def stt_settings(config: Config) -> Any:
    """The realtime STT settings for `config` (or None for the fake). The block was checked
    when the config loaded (config/streaming.py); what it leaves out keeps the defaults."""
    from voice_call.speech.stt.openai_realtime import RealtimeSttSettings

    name = config.streaming.provider or "openai"
    if name not in STT_PROVIDERS:
        raise SpeechUnavailable(
            f'streaming.provider "{name}" is not supported — use "openai" (or "fake" offline)'
        )
    if name == "fake":
        return None
    options = config.streaming.providers.openai or OpenAIRealtimeStt()
    api_key = options.api_key or config.openai_api_key
    if not api_key:
        raise SpeechUnavailable(
            "streaming.providers.openai.apiKey: required for speech-to-text on streamed calls"
            " — set it, or openaiApiKey / OPENAI_API_KEY"
        )
    given: dict[str, Any] = {
        "url": options.url,
        "model": options.model,
        "language": options.language,
        "prompt": options.prompt,
        "api": options.api,
        "vad_threshold": options.vad_threshold,
        "prefix_padding_ms": options.prefix_padding_ms,
        "silence_duration_ms": options.silence_duration_ms,
    }
    chosen = {key: value for key, value in given.items() if value is not None}
    return replace(RealtimeSttSettings(api_key=api_key), **chosen)


class SpeechStack:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stt = stt_settings(config)
        self._voices: dict[str, Voice] = {}
        self.warnings: list[str] = []
        self.voice()  # build the default voice now: a missing espeak-ng fails at start

    def new_stt(self) -> SttSession:
        if self._stt is None:
            from voice_call.speech.stt.fake import FakeStt

            return FakeStt()
        from voice_call.speech.stt.openai_realtime import OpenAIRealtimeStt

        return OpenAIRealtimeStt(self._stt)

    def _settings(self, route_tts: TtsConfig | Mapping[str, Any] | None) -> TtsSettings:
        try:
            return resolve_tts(
                self.config.core_tts,
                self.config.tts,
                route_tts,
                openai_api_key=self.config.openai_api_key,
                elevenlabs_api_key=self.config.elevenlabs_api_key,
            )
        except TtsUnavailable as exc:
            raise SpeechUnavailable(str(exc)) from None

    def voice(self, route_tts: TtsConfig | Mapping[str, Any] | None = None) -> Voice:
        settings = self._settings(route_tts)
        chain = [[engine.name, engine.options] for engine in settings.chain]
        key = json.dumps([chain, settings.timeout_s], default=str)
        voice = self._voices.get(key)
        if voice is None:
            for warning in settings.warnings:
                if warning not in self.warnings:
                    self.warnings.append(warning)
                    log.warning("%s", warning)
            try:
                engine = build_tts(settings)
            except TtsUnavailable as exc:
                raise SpeechUnavailable(str(exc)) from None
            # a sentence may wait out every engine of the chain before it gets audio
            timeout_s = settings.timeout_s * len(settings.chain)
            voice = self._voices[key] = Voice(engine, timeout_s)
        return voice

    async def close(self) -> None:
        for voice in self._voices.values():
            await voice.engine.close()
        self._voices.clear()
