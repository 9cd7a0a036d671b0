"""A call's own language (initiate's `language`) reaches the streamed speech engines."""

from __future__ import annotations

from typing import Any

from voice_call.config import parse_config
from voice_call.speech.stack import SpeechStack


def test_a_calls_own_language_is_heard_and_spoken_over_the_configured_one() -> None:
    raw = {
        "streaming": {"enabled": True, "provider": "deepgram"},
        "deepgramApiKey": "dg",
        "openaiApiKey": "sk",
        "elevenlabsApiKey": "el",
        "tts": {"provider": "elevenlabs"},
    }
    stack = SpeechStack(parse_config(raw, env={}))
    own: Any = stack.new_stt("zh-TW")
    configured: Any = stack.new_stt()
    assert own.settings.language == "zh-TW"  # Deepgram's code for Traditional Taiwan
    assert configured.settings.language is None  # en-US: Deepgram keeps its default
    # ElevenLabs speaks zh-TW with its multilingual model: another voice than the configured
    assert stack.voice(language="zh-TW") is not stack.voice()
    assert stack.voice(language="en-US") is stack.voice()
