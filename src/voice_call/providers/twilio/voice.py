"""Which voice and language Twilio's `<Say>`/`<Gather>` use on a call.

Order: the dialled number's route (inbound calls only, as in the seed), then the `twilio`
block, then the TTS settings. OpenAI voice names map to the Polly voices that sound closest
(the seed's table); `Polly.*`, `Google.*` and Twilio's basic voices pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voice_call.config import Config, NumberRoute
from voice_call.models import Direction
from voice_call.providers.twilio.markup import Speech

DEFAULT_VOICE = "Polly.Joanna"
DEFAULT_LANGUAGE = "en-US"
OPENAI_TO_POLLY = {
    "alloy": "Polly.Joanna",
    "echo": "Polly.Matthew",
    "fable": "Polly.Amy",
    "onyx": "Polly.Brian",
    "nova": "Polly.Salli",
    "shimmer": "Polly.Kimberly",
}
_BASIC_VOICES = ("alice", "man", "woman")


def map_voice(name: str | None) -> str:
    if not name or not name.strip():
        return DEFAULT_VOICE
    name = name.strip()
    if name.startswith(("Polly.", "Google.")):
        return name
    if name.lower() in _BASIC_VOICES:
        return name.lower()
    return OPENAI_TO_POLLY.get(name.lower(), DEFAULT_VOICE)


def _dig(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def tts_voice(tts: Mapping[str, Any] | None) -> str | None:
    """The voice named in a `tts` block: the chosen provider's, then OpenAI's, then legacy."""
    if not tts:
        return None
    chosen = tts.get("provider")
    paths: list[tuple[str, ...]] = []
    if isinstance(chosen, str):
        paths += [("providers", chosen, "voice"), (chosen, "voice")]
    paths += [("providers", "openai", "voice"), ("openai", "voice"), ("voice",)]
    for path in paths:
        value = _dig(tts, *path)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _digits(number: str | None) -> str:
    return "".join(ch for ch in number or "" if ch.isdigit())


def find_route(config: Config, number: str | None) -> NumberRoute | None:
    """`numbers[number]`: the exact key, else the same digits (carriers vary in format)."""
    if not number:
        return None
    if number in config.numbers:
        return config.numbers[number]
    wanted = _digits(number)
    return next(
        (route for key, route in config.numbers.items() if wanted and _digits(key) == wanted),
        None,
    )


def speech_for(
    config: Config, direction: Direction | None, to_number: str | None, route_key: str | None
) -> Speech:
    route = None
    if direction == Direction.INBOUND:
        route = find_route(config, route_key) or find_route(config, to_number)
    twilio = config.twilio
    voice = (
        (route and route.voice)
        or (route and tts_voice(route.tts))
        or (twilio and twilio.voice)
        or tts_voice(config.tts)
    )
    language = (route and route.language) or (twilio and twilio.language) or DEFAULT_LANGUAGE
    return Speech(voice=map_voice(voice), language=language)
