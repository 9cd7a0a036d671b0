"""Build the TTS engine named by resolved settings (imports only the one that is used)."""

from __future__ import annotations

from voice_call.speech.tts.base import TtsEngine
from voice_call.speech.tts.settings import TtsSettings


def build_tts(settings: TtsSettings) -> TtsEngine:
    timeout_s = settings.timeout_s
    if settings.provider == "openai":
        from voice_call.speech.tts.openai import OpenAITts

        return OpenAITts(settings.options, timeout_s=timeout_s)
    if settings.provider == "elevenlabs":
        from voice_call.speech.tts.elevenlabs import ElevenLabsTts

        return ElevenLabsTts(settings.options, timeout_s=timeout_s)
    if settings.provider == "espeak":
        from voice_call.speech.tts.espeak import EspeakTts

        return EspeakTts(settings.options, timeout_s=timeout_s)
    from voice_call.speech.tts.fake import FakeTts

    return FakeTts(settings.options, timeout_s=timeout_s)
