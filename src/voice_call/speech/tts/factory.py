"""Build the TTS engine named by resolved settings (imports only the ones that are used); with
`tts.fallback`, the chain of them (fallback.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voice_call.speech.tts.base import TtsEngine
from voice_call.speech.tts.settings import TtsSettings


def build_engine(name: str, options: Mapping[str, Any], timeout_s: float) -> TtsEngine:
    if name == "openai":
        from voice_call.speech.tts.openai import OpenAITts

        return OpenAITts(options, timeout_s=timeout_s)
    if name == "elevenlabs":
        from voice_call.speech.tts.elevenlabs import ElevenLabsTts

        return ElevenLabsTts(options, timeout_s=timeout_s)
    if name == "deepgram":
        from voice_call.speech.tts.deepgram import DeepgramTts

        return DeepgramTts(options, timeout_s=timeout_s)
    if name == "cartesia":
        from voice_call.speech.tts.cartesia import CartesiaTts

        return CartesiaTts(options, timeout_s=timeout_s)
    if name == "espeak":
        from voice_call.speech.tts.espeak import EspeakTts

        return EspeakTts(options, timeout_s=timeout_s)
    from voice_call.speech.tts.fake import FakeTts

    return FakeTts(options, timeout_s=timeout_s)


def build_tts(settings: TtsSettings) -> TtsEngine:
    """Every engine of the chain is built now, so one that cannot be (no key, espeak-ng
    missing) is reported at start, not when the first one fails mid-call."""
    engines = [build_engine(e.name, e.options, settings.timeout_s) for e in settings.chain]
    if len(engines) == 1:
        return engines[0]
    from voice_call.speech.tts.fallback import FallbackTts

    return FallbackTts(engines, settings.timeout_s)
