"""The carriers' own text-to-speech voices that stand in for OpenAI's.

When the config names an OpenAI TTS voice but the words are spoken by the carrier (Twilio
`<Say>`, Plivo `<Speak>`, Telnyx `speak`), each carrier uses the Amazon Polly voice that sounds
closest (the seed's table). Each carrier spells it its own way: `Polly.Joanna` on Twilio and
Plivo, `AWS.Polly.Joanna-Neural` on Telnyx; see each carrier's `voice.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from voice_call.config.tts import TtsConfig


def tts_layer(tts: TtsConfig | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A `tts` block as the keys it sets (camelCase), whether parsed or still a mapping."""
    if isinstance(tts, TtsConfig):
        return tts.layer()
    return tts


@dataclass(frozen=True)
class CarrierVoice:
    """The voice and language a carrier speaks (and, on Twilio, listens) in on one call."""

    voice: str
    language: str


OPENAI_TO_POLLY: Final = {
    "alloy": "Joanna",
    "echo": "Matthew",
    "fable": "Amy",
    "onyx": "Brian",
    "nova": "Salli",
    "shimmer": "Kimberly",
}


def polly_voice(openai_voice: str) -> str | None:
    """The Polly voice's bare name (`Joanna`) for an OpenAI voice (`alloy`, any case), else None."""
    return OPENAI_TO_POLLY.get(openai_voice.lower())
