"""Build the speech services a streamed call uses, from config, once per Runtime.

Problems are reported when the stack is built (server start), with the config path to fix:
no key for a speech-to-text engine (the provider or a fallback), espeak-ng missing for the
offline voice, a bad setting. TTS engines are cached per effective settings, so calls on the
same number share one HTTP pool.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from voice_call.config import Config
from voice_call.config.streaming import (
    STT_PROVIDERS,
    DeepgramStt,
    ElevenLabsRealtimeStt,
    OpenAIRealtimeStt,
)
from voice_call.config.tts import TtsConfig
from voice_call.errors import Unavailable
from voice_call.languages import DEFAULT_LANGUAGE, lookup, stt_language
from voice_call.speech.stt.base import SttSession
from voice_call.speech.tts.base import TtsEngine, TtsUnavailable
from voice_call.speech.tts.factory import build_tts
from voice_call.speech.tts.settings import EngineSettings, TtsSettings, resolve_tts

log = logging.getLogger("voice_call.speech")


class SpeechUnavailable(Unavailable):
    """Streaming is on but its speech services cannot be set up; the message says what to fix."""


@dataclass(frozen=True)
class Voice:
    engine: TtsEngine
    timeout_s: float  # per sentence


class Speech(Protocol):
    """What a media session needs: a new STT session per call and a voice per call."""

    def new_stt(self, language: str | None = None) -> SttSession: ...

    def voice(
        self, route_tts: TtsConfig | Mapping[str, Any] | None = None, language: str | None = None
    ) -> Voice: ...

    async def close(self) -> None: ...


def stt_settings(config: Config, name: str | None = None) -> Any:
    """The settings of STT engine `name` (default: `streaming.provider`), or None for the
    fake. The block was checked when the config loaded (config/streaming.py); what it leaves
    out keeps the engine's defaults."""
    name = name or config.streaming.provider or "openai"
    build = _STT_SETTINGS.get(name)
    if build is None:
        names = ", ".join(f'"{n}"' for n in STT_PROVIDERS if n != "fake")
        raise SpeechUnavailable(
            f'streaming.provider "{name}" is not supported — use one of {names} (or "fake" offline)'
        )
    return build(config)


def stt_chain(config: Config) -> list[tuple[str, Any]]:
    """The provider, then `streaming.fallback`: each engine's name and settings."""
    names = [config.streaming.provider or "openai", *(config.streaming.fallback or [])]
    return [(name, stt_settings(config, name)) for name in names]


def _no_key(name: str, top: str, env: str) -> SpeechUnavailable:
    return SpeechUnavailable(
        f"streaming.providers.{name}.apiKey: required for speech-to-text on streamed calls"
        f" — set it, or {top} / {env}"
    )


def _chosen(given: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in given.items() if value is not None}


def _openai_settings(config: Config) -> Any:
    from voice_call.speech.stt.openai_realtime import RealtimeSttSettings

    options = config.streaming.providers.openai or OpenAIRealtimeStt()
    api_key = options.api_key or config.openai_api_key
    if not api_key:
        raise _no_key("openai", "openaiApiKey", "OPENAI_API_KEY")
    given: dict[str, Any] = {
        "url": options.url,
        "model": options.model,
        "language": options.language or stt_language(config.language, "openai"),
        "prompt": options.prompt,
        "api": options.api,
        "vad_threshold": options.vad_threshold,
        "prefix_padding_ms": options.prefix_padding_ms,
        "silence_duration_ms": options.silence_duration_ms,
    }
    return replace(RealtimeSttSettings(api_key=api_key), **_chosen(given))


def _deepgram_settings(config: Config) -> Any:
    from voice_call.speech.stt.deepgram import DeepgramSttSettings

    options = config.streaming.providers.deepgram or DeepgramStt()
    api_key = options.api_key or config.deepgram_api_key
    if not api_key:
        raise _no_key("deepgram", "deepgramApiKey", "DEEPGRAM_API_KEY")
    given: dict[str, Any] = {
        "url": options.url,
        "model": options.model,
        "language": options.language or stt_language(config.language, "deepgram"),
        "endpointing_ms": options.endpointing_ms,
        "utterance_end_ms": options.utterance_end_ms,
        "interim_results": options.interim_results,
        "smart_format": options.smart_format,
    }
    settings = replace(DeepgramSttSettings(api_key=api_key), **_chosen(given))
    if options.interim_results is False and options.utterance_end_ms is None:
        settings = replace(settings, utterance_end_ms=None)  # it needs interim results
    return settings


def _elevenlabs_settings(config: Config) -> Any:
    from voice_call.speech.stt.elevenlabs import ElevenLabsSttSettings

    options = config.streaming.providers.elevenlabs or ElevenLabsRealtimeStt()
    api_key = options.api_key or config.elevenlabs_api_key
    if not api_key:
        raise _no_key("elevenlabs", "elevenlabsApiKey", "ELEVENLABS_API_KEY")
    given: dict[str, Any] = {
        "url": options.url,
        "model": options.model,
        "language": options.language or stt_language(config.language, "elevenlabs"),
        "vad_silence_threshold_secs": options.vad_silence_threshold_secs,
        "vad_threshold": options.vad_threshold,
        "min_speech_duration_ms": options.min_speech_duration_ms,
        "min_silence_duration_ms": options.min_silence_duration_ms,
    }
    return replace(ElevenLabsSttSettings(api_key=api_key), **_chosen(given))


_STT_SETTINGS: dict[str, Callable[[Config], Any]] = {
    "openai": _openai_settings,
    "deepgram": _deepgram_settings,
    "elevenlabs": _elevenlabs_settings,
    "fake": lambda config: None,
}


def stt_session(name: str, settings: Any) -> SttSession:
    """A new session of engine `name` (imports only the engines that are used)."""
    if name == "deepgram":
        from voice_call.speech.stt.deepgram import DeepgramStt

        return DeepgramStt(settings)
    if name == "elevenlabs":
        from voice_call.speech.stt.elevenlabs import ElevenLabsStt

        return ElevenLabsStt(settings)
    if name == "openai":
        from voice_call.speech.stt.openai_realtime import OpenAIRealtimeStt

        return OpenAIRealtimeStt(settings)
    from voice_call.speech.stt.fake import FakeStt

    return FakeStt()


def spoken_in(tag: str, settings: TtsSettings) -> TtsSettings:
    """`settings` for calls held in `tag`: the engines' unset voice or model that speaks it
    (espeak-ng's voice for the language, ElevenLabs' multilingual model); the default language
    changes nothing."""
    language = lookup(tag)
    if language is None or language.tag == DEFAULT_LANGUAGE:
        return settings
    defaults: dict[str, dict[str, Any]] = {"espeak": {"voice": language.espeak_voice}}
    if language.elevenlabs_model:
        defaults["elevenlabs"] = {"modelId": language.elevenlabs_model}

    def fill(name: str, options: dict[str, Any]) -> EngineSettings:
        return EngineSettings(name, {**defaults.get(name, {}), **options})

    first = fill(settings.provider, settings.options)
    rest = tuple(fill(engine.name, engine.options) for engine in settings.fallback)
    return replace(settings, options=first.options, fallback=rest)


class SpeechStack:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stt = stt_chain(config)
        self._voices: dict[str, Voice] = {}
        self.warnings: list[str] = []
        self.voice()  # build the default voice now: a missing espeak-ng fails at start

    def new_stt(self, language: str | None = None) -> SttSession:
        """`language`: a call's own (initiate's), heard instead of the configured one."""
        chain = self._stt
        if language and language != self.config.language:
            chain = stt_chain(self.config.model_copy(update={"language": language}))
        if len(chain) == 1:
            return stt_session(*chain[0])
        from voice_call.speech.stt.fallback import FallbackStt

        return FallbackStt(
            [(name, functools.partial(stt_session, name, settings)) for name, settings in chain]
        )

    def _settings(
        self, route_tts: TtsConfig | Mapping[str, Any] | None, language: str | None = None
    ) -> TtsSettings:
        try:
            settings = resolve_tts(
                self.config.core_tts,
                self.config.tts,
                route_tts,
                openai_api_key=self.config.openai_api_key,
                elevenlabs_api_key=self.config.elevenlabs_api_key,
                deepgram_api_key=self.config.deepgram_api_key,
                cartesia_api_key=self.config.cartesia_api_key,
            )
        except TtsUnavailable as exc:
            raise SpeechUnavailable(str(exc)) from None
        return spoken_in(language or self.config.language, settings)

    def voice(
        self, route_tts: TtsConfig | Mapping[str, Any] | None = None, language: str | None = None
    ) -> Voice:
        """`language`: a call's own (initiate's), spoken instead of the configured one."""
        settings = self._settings(route_tts, language)
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
