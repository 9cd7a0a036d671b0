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
from voice_call.errors import Unavailable
from voice_call.speech.stt.base import SttSession
from voice_call.speech.tts.base import TtsEngine, TtsUnavailable
from voice_call.speech.tts.factory import build_tts
from voice_call.speech.tts.settings import TtsSettings, resolve_tts

log = logging.getLogger("voice_call.speech")
STT_PROVIDERS = ("openai", "fake")


class SpeechUnavailable(Unavailable):
    """Streaming is on but its speech services cannot be set up; the message says what to fix."""


@dataclass(frozen=True)
class Voice:
    engine: TtsEngine
    timeout_s: float  # per sentence


class Speech(Protocol):
    """What a media session needs: a new STT session per call and a voice per call."""

    def new_stt(self) -> SttSession: ...

    def voice(self, route_tts: Mapping[str, Any] | None = None) -> Voice: ...

    async def close(self) -> None: ...


def _number(options: Mapping[str, Any], key: str, path: str, low: float, high: float) -> Any:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SpeechUnavailable(f"{path}.{key}: expected a number from {low:g} to {high:g}")
    return value


def stt_settings(config: Config) -> Any:
    """The realtime STT settings for `config` (or None for the fake)."""
    from voice_call.speech.stt.openai_realtime import DEFAULT_URL, RealtimeSttSettings

    name = config.streaming.provider or "openai"
    if name not in STT_PROVIDERS:
        raise SpeechUnavailable(
            f'streaming.provider "{name}" is not supported — use "openai" (or "fake" offline)'
        )
    options = config.streaming.providers.get(name, {})
    if name == "fake":
        return None
    path = "streaming.providers.openai"
    api_key = options.get("apiKey") or config.openai_api_key
    if not isinstance(api_key, str) or not api_key:
        raise SpeechUnavailable(
            f"{path}.apiKey: required for speech-to-text on streamed calls — set it, or"
            " openaiApiKey / OPENAI_API_KEY"
        )
    for key in ("model", "language", "prompt", "url"):
        if options.get(key) is not None and not isinstance(options[key], str):
            raise SpeechUnavailable(f"{path}.{key}: expected a string")
    api = options.get("api", "ga")
    if api not in ("ga", "beta"):
        raise SpeechUnavailable(f'{path}.api: expected "ga" or "beta"')
    settings = RealtimeSttSettings(
        api_key=api_key,
        url=options.get("url") or DEFAULT_URL,
        model=options.get("model") or "gpt-4o-transcribe",
        language=options.get("language"),
        prompt=options.get("prompt"),
        api=api,
    )
    overrides = {
        "vad_threshold": _number(options, "vadThreshold", path, 0, 1),
        "prefix_padding_ms": _number(options, "prefixPaddingMs", path, 0, 10_000),
        "silence_duration_ms": _number(options, "silenceDurationMs", path, 0, 10_000),
    }
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


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

    def _settings(self, route_tts: Mapping[str, Any] | None) -> TtsSettings:
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

    def voice(self, route_tts: Mapping[str, Any] | None = None) -> Voice:
        settings = self._settings(route_tts)
        key = json.dumps([settings.provider, settings.options, settings.timeout_s], default=str)
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
            voice = self._voices[key] = Voice(engine, settings.timeout_s)
        return voice

    async def close(self) -> None:
        for voice in self._voices.values():
            await voice.engine.close()
        self._voices.clear()
