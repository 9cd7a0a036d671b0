"""What a Telnyx `speak` and `transcription_start` say and in which voice; DTMF spelling.

Voice: the number route's `voice`, else `telnyx.voice` (both sent as written: they name
Telnyx voices), else the configured TTS voice mapped to an Amazon Polly neural voice as the
seed did for Twilio (alloy → Joanna, …: providers/voices.py), else Telnyx's basic "female".
Language: the route's, else `telnyx.language`, else the top-level `language` (en-US: speech
en-US / transcription en, the seed's defaults), spelled for each use by languages.py; a
language there with no voice named takes its own voice. Transcription runs on Deepgram where
the language allows, so silenceTimeoutMs applies (`listening_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voice_call.config import Config
from voice_call.config.tts import TtsConfig
from voice_call.languages import carrier_codes, carrier_voice, own_language, speak_code
from voice_call.models import CallRecord
from voice_call.numbers import our_route
from voice_call.providers.speech_end import speech_end_seconds
from voice_call.providers.voices import polly_voice, tts_layer
from voice_call.speech.sentences import pack_sentences

SPEAK_MAX_CHARS = 3000  # Telnyx `speak` payload limit (docs/carriers.md §2.1)
DEFAULT_VOICE = "female"
DEFAULT_SPEAK_LANGUAGE = "en-US"
DEFAULT_TRANSCRIPTION_LANGUAGE = "en"
DEEPGRAM_MODEL = "deepgram/nova-3"
# The languages Telnyx's Deepgram nova-3 transcription takes (its transcription_start schema).
DEEPGRAM_LANGUAGES = frozenset(
    {"en", "en-US", "en-AU", "en-GB", "en-IN", "en-NZ", "de", "nl", "sv", "sv-SE", "da"}
    | {"da-DK", "es", "es-419", "fr", "fr-CA", "pt", "pt-BR", "pt-PT"}
)
_TELNYX_VOICE_PREFIXES = ("AWS.Polly.", "Azure.", "Telnyx.", "ElevenLabs.")


def voice_and_language(config: Config, call: CallRecord) -> tuple[str, str]:
    route = our_route(config, call)
    block = config.telnyx
    explicit = (route.voice if route else None) or (block.voice if block else None)
    voice = (
        _from_tts(route.tts if route and route.tts else None)
        or _from_tts(config.tts)
        or DEFAULT_VOICE
    )
    tag = _language(config, call)
    voice = carrier_voice(tag, "telnyx", explicit, voice)
    return voice, speak_code(tag, "telnyx")


def transcription_language(config: Config, call: CallRecord) -> str:
    codes = carrier_codes(_language(config, call), "telnyx")
    if codes and not codes.tag_is_default:
        return codes.listen_language
    top = None if config.language == DEFAULT_SPEAK_LANGUAGE else config.language
    return _set_language(config, call) or top or DEFAULT_TRANSCRIPTION_LANGUAGE


def _set_language(config: Config, call: CallRecord) -> str | None:
    route = our_route(config, call)
    block = config.telnyx
    own = own_language(call.metadata)
    return own or (route and route.language) or (block and block.language) or None


def _language(config: Config, call: CallRecord) -> str:
    """The call's language tag: its own (initiate's), the route's, `telnyx.language`, the
    top-level `language`."""
    return _set_language(config, call) or config.language


def listening_fields(language: str, silence_ms: int, *, interim: bool) -> dict[str, object]:
    """The engine fields of a `transcription_start` that hears `language`.

    `silenceTimeoutMs` needs an engine with an end-of-speech setting: of Telnyx's, Deepgram
    (`transcription_engine_config.utterance_end_ms`, 0-5000 ms; Telnyx's Call Control
    transcription_start reference). Google, the default, has none, so a language Deepgram's
    nova-3 model does not know stays on Google and on its own end of speech (build() warns).
    """
    if language not in DEEPGRAM_LANGUAGES:
        return {"interim_results": True} if interim else {}
    engine: dict[str, object] = {
        "transcription_engine": "Deepgram",
        "transcription_model": DEEPGRAM_MODEL,
        "language": language,
        "utterance_end_ms": speech_end_seconds(silence_ms, 1, 5) * 1000,
    }
    if interim:
        engine["interim_results"] = True
    return {"transcription_engine": "Deepgram", "transcription_engine_config": engine}


def _from_tts(block: TtsConfig | Mapping[str, Any] | None) -> str | None:
    """A TTS block's voice as a Telnyx voice, or None when it names none we can map."""
    tts = tts_layer(block)
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
    polly = polly_voice(voice)
    if polly:
        return f"AWS.Polly.{polly}-Neural"
    if voice.startswith("Polly."):  # Twilio's spelling of the same voices
        return "AWS." + voice
    if voice.startswith(_TELNYX_VOICE_PREFIXES) or voice in ("female", "male"):
        return voice
    return None  # another engine's voice id: Telnyx would refuse it


def chunks(text: str, limit: int = SPEAK_MAX_CHARS) -> list[str]:
    """`text` as written when it fits, else in pieces of at most `limit` characters, each as
    many whole sentences as fit (speech/sentences.py)."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    return pack_sentences(text, limit)


def telnyx_digits(digits: str) -> str:
    """Our DTMF alphabet (0-9 * # w W p P ,) in Telnyx's (0-9 A-D * # w W): pauses → w."""
    return "".join("w" if ch in "pP," else ch for ch in digits)
