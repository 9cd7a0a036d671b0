"""Which voice and language Twilio's `<Say>`/`<Gather>` use on a call.

Order: the dialled number's route (inbound calls only, as in the seed), then the `twilio`
block, then the TTS settings; the language: the route's, `twilio.language`, the top-level
`language`. For a language in languages.py with no voice named, its own voice. OpenAI voice
names map to the Polly voices that sound closest (the seed's table, providers/voices.py);
`Polly.*`, `Google.*` and Twilio's basic voices pass through unchanged. markup.py spells the
language as `<Say>` and `<Gather>` each want it (languages.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voice_call.config import Config
from voice_call.config.tts import TtsConfig
from voice_call.languages import carrier_voice
from voice_call.models import Direction
from voice_call.numbers import route_for
from voice_call.providers.voices import CarrierVoice, polly_voice, tts_layer

DEFAULT_VOICE = "Polly.Joanna"
_BASIC_VOICES = ("alice", "man", "woman")


def map_voice(name: str | None) -> str:
    if not name or not name.strip():
        return DEFAULT_VOICE
    name = name.strip()
    if name.startswith(("Polly.", "Google.")):
        return name
    if name.lower() in _BASIC_VOICES:
        return name.lower()
    polly = polly_voice(name)
    return f"Polly.{polly}" if polly else DEFAULT_VOICE


def _dig(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def tts_voice(block: TtsConfig | Mapping[str, Any] | None) -> str | None:
    """The voice named in a `tts` block: the chosen provider's, then OpenAI's, then legacy."""
    tts = tts_layer(block)
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


def speech_for(
    config: Config,
    direction: Direction | None,
    to_number: str | None,
    route_key: str | None,
    own_language: str | None = None,
) -> CarrierVoice:
    """`own_language`: the call's own (initiate's `language`), over every configured one."""
    route = None
    if direction == Direction.INBOUND:
        route = route_for(config, to_number, route_key)
    twilio = config.twilio
    language = (
        own_language
        or (route and route.language)
        or (twilio and twilio.language)
        or config.language
    )
    explicit = (route.voice if route else None) or (twilio.voice if twilio else None)
    voice = map_voice(explicit or (route and tts_voice(route.tts)) or tts_voice(config.tts))
    # A language the table knows takes its own voice over one mapped from an English TTS voice.
    voice = carrier_voice(language, "twilio", explicit and map_voice(explicit), voice)
    return CarrierVoice(voice=voice, language=language)
