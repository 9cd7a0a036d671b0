"""Which `<Speak voice language>` a call gets: the line's route, the plivo block, the TTS voice.

Order: `numbers[<our number>].voice`, `plivo.voice`, a configured OpenAI TTS voice mapped to
its nearest Polly voice (providers/voices.py, as the seed maps them for Twilio), else Plivo's
default `WOMAN`.
Language: the route's, `plivo.language`, else the top-level `language`; a language in
languages.py with no voice named takes its own voice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voice_call.config import Config, NumberRoute
from voice_call.config.tts import TtsConfig
from voice_call.languages import carrier_voice
from voice_call.providers.voices import CarrierVoice, polly_voice, tts_layer

DEFAULT_VOICE = "WOMAN"


def _tts_voice(block_or_layer: TtsConfig | Mapping[str, Any] | None) -> str | None:
    tts = tts_layer(block_or_layer)
    if not isinstance(tts, Mapping):
        return None
    providers = tts.get("providers")
    for block in (providers.get("openai") if isinstance(providers, Mapping) else None, tts):
        if isinstance(block, Mapping):
            voice = block.get("voice")
            if isinstance(voice, str) and voice.strip():
                return voice.strip()
    return None


def _polly(voice: str) -> str | None:
    """Plivo's spelling of the Polly voice nearest an OpenAI voice (`Polly.Joanna`), or None."""
    polly = polly_voice(voice)
    return f"Polly.{polly}" if polly else None


def voice_for(
    config: Config, route: NumberRoute | None, own_language: str | None = None
) -> CarrierVoice:
    """`own_language`: the call's own (initiate's `language`), over every configured one."""
    block = config.plivo
    explicit = (route.voice if route else None) or (block.voice if block else None)
    if explicit:
        voice = _polly(explicit) or explicit
    else:
        tts = _tts_voice(route.tts if route else None) or _tts_voice(config.tts)
        if not tts:
            voice = DEFAULT_VOICE
        elif tts.startswith("Polly."):
            voice = tts
        else:
            voice = _polly(tts) or DEFAULT_VOICE
    language = (
        own_language
        or (route.language if route else None)
        or (block.language if block else None)
        or config.language
    )
    # markup.py spells the language as <Speak> and <GetInput> each want it (languages.py).
    voice = carrier_voice(language, "plivo", explicit and voice, voice)
    return CarrierVoice(voice=voice, language=language)
