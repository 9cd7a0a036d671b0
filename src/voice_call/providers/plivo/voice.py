"""Which `<Speak voice language>` a call gets: the line's route, the plivo block, the TTS voice.

Order: `numbers[<our number>].voice`, `plivo.voice`, a configured OpenAI TTS voice mapped to
its nearest Polly voice (as the seed maps them for Twilio), else Plivo's default `WOMAN`.
Language: the route's, `plivo.language`, else `en-US`.
"""

from __future__ import annotations

from typing import Any

from voice_call.config import Config, NumberRoute
from voice_call.models import CallRecord, Direction
from voice_call.providers.plivo.markup import Voice

DEFAULT_VOICE = "WOMAN"
DEFAULT_LANGUAGE = "en-US"
OPENAI_TO_POLLY = {
    "alloy": "Polly.Joanna",
    "echo": "Polly.Matthew",
    "fable": "Polly.Amy",
    "onyx": "Polly.Brian",
    "nova": "Polly.Salli",
    "shimmer": "Polly.Kimberly",
}


def _digits(number: str | None) -> str:
    return "".join(ch for ch in number or "" if ch.isdigit())


def route_for(config: Config, number: str | None, key: str | None = None) -> NumberRoute | None:
    """`numbers[...]` for one of our numbers: the stored route key, the exact number, or the
    same digits (carriers differ on the `+`)."""
    for candidate in (key, number):
        if candidate and candidate in config.numbers:
            return config.numbers[candidate]
    wanted = _digits(number)
    return next((r for k, r in config.numbers.items() if wanted and _digits(k) == wanted), None)


def our_route(config: Config, call: CallRecord) -> NumberRoute | None:
    ours = call.to_number if call.direction == Direction.INBOUND else call.from_number
    key = call.metadata.get("numberRouteKey")
    return route_for(config, ours, key if isinstance(key, str) else None)


def _tts_voice(tts: dict[str, Any] | None) -> str | None:
    if not isinstance(tts, dict):
        return None
    providers = tts.get("providers")
    for block in (providers.get("openai") if isinstance(providers, dict) else None, tts):
        if isinstance(block, dict):
            voice = block.get("voice")
            if isinstance(voice, str) and voice.strip():
                return voice.strip()
    return None


def _mapped(voice: str) -> str:
    return OPENAI_TO_POLLY.get(voice.lower(), voice)


def voice_for(config: Config, route: NumberRoute | None) -> Voice:
    block = config.plivo
    explicit = (route.voice if route else None) or (block.voice if block else None)
    if explicit:
        voice = _mapped(explicit)
    else:
        tts = _tts_voice(route.tts if route else None) or _tts_voice(config.tts)
        voice = OPENAI_TO_POLLY.get(tts.lower(), DEFAULT_VOICE) if tts else DEFAULT_VOICE
        if tts and tts.startswith("Polly."):
            voice = tts
    language = (route.language if route else None) or (block.language if block else None)
    return Voice(voice=voice, language=language or DEFAULT_LANGUAGE)
