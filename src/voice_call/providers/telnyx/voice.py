"""What a Telnyx `speak` and `transcription_start` say and in which voice; DTMF spelling.

Voice: the number route's `voice`, else `telnyx.voice` (both sent as written: they name
Telnyx voices), else the configured TTS voice mapped to an Amazon Polly neural voice as the
seed did for Twilio (alloy → Joanna, …), else Telnyx's basic "female". Language: the route's,
else `telnyx.language`, else en-US (speech) / en (transcription), the seed's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from voice_call.config import Config, NumberRoute
from voice_call.models import CallRecord, Direction

SPEAK_MAX_CHARS = 3000  # Telnyx `speak` payload limit (docs/carriers.md §2.1)
DEFAULT_VOICE = "female"
DEFAULT_SPEAK_LANGUAGE = "en-US"
DEFAULT_TRANSCRIPTION_LANGUAGE = "en"
OPENAI_TO_POLLY = {
    "alloy": "Joanna",
    "echo": "Matthew",
    "fable": "Amy",
    "onyx": "Brian",
    "nova": "Salli",
    "shimmer": "Kimberly",
}
_TELNYX_VOICE_PREFIXES = ("AWS.Polly.", "Azure.", "Telnyx.", "ElevenLabs.")
_SENTENCE_END = re.compile(r"[.!?;:,]\s")


def route_for(config: Config, call: CallRecord) -> NumberRoute | None:
    """The `numbers[...]` route of our side of the call: the one the inbound policy chose,
    else our number (to for inbound, from for outbound) by exact key or digits."""
    key = call.metadata.get("numberRouteKey")
    if isinstance(key, str) and key in config.numbers:
        return config.numbers[key]
    ours = call.to_number if call.direction == Direction.INBOUND else call.from_number
    if ours in config.numbers:
        return config.numbers[ours]
    wanted = _digits(ours)
    for number, route in config.numbers.items():
        if wanted and _digits(number) == wanted:
            return route
    return None


def voice_and_language(config: Config, call: CallRecord) -> tuple[str, str]:
    route = route_for(config, call)
    block = config.telnyx
    voice = (
        (route and route.voice)
        or (block and block.voice)
        or _from_tts(route.tts if route and route.tts else None)
        or _from_tts(config.tts)
        or DEFAULT_VOICE
    )
    language = (route and route.language) or (block and block.language) or DEFAULT_SPEAK_LANGUAGE
    return voice, language


def transcription_language(config: Config, call: CallRecord) -> str:
    route = route_for(config, call)
    block = config.telnyx
    return (
        (route and route.language) or (block and block.language) or DEFAULT_TRANSCRIPTION_LANGUAGE
    )


def _from_tts(tts: Mapping[str, Any] | None) -> str | None:
    """A TTS block's voice as a Telnyx voice, or None when it names none we can map."""
    if not tts:
        return None
    providers = tts.get("providers")
    providers = providers if isinstance(providers, dict) else {}
    preferred = tts.get("provider")
    order = [preferred] if isinstance(preferred, str) else []
    order += ["openai", *providers]
    for name in order:
        block = providers.get(name)
        voice = block.get("voice") if isinstance(block, dict) else None
        if isinstance(voice, str) and voice.strip():
            return _telnyx_voice(voice.strip())
    return None


def _telnyx_voice(voice: str) -> str | None:
    if voice.lower() in OPENAI_TO_POLLY:
        return f"AWS.Polly.{OPENAI_TO_POLLY[voice.lower()]}-Neural"
    if voice.startswith("Polly."):  # Twilio's spelling of the same voices
        return "AWS." + voice
    if voice.startswith(_TELNYX_VOICE_PREFIXES) or voice in ("female", "male"):
        return voice
    return None  # another engine's voice id: Telnyx would refuse it


def chunks(text: str, limit: int = SPEAK_MAX_CHARS) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut after a sentence or at a space."""
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = max((m.end() - 1 for m in _SENTENCE_END.finditer(window)), default=-1)
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        pieces.append(text)
    return pieces


def telnyx_digits(digits: str) -> str:
    """Our DTMF alphabet (0-9 * # w W p P ,) in Telnyx's (0-9 A-D * # w W): pauses → w."""
    return "".join("w" if ch in "pP," else ch for ch in digits)


def _digits(number: str | None) -> str:
    return "".join(ch for ch in number or "" if ch.isdigit())
