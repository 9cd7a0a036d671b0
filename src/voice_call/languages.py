"""The language a call is held in, as each carrier and speech engine spells it.

One BCP-47 tag in the config (`language`, top level / per number / per call) becomes a different
code at each place that speaks or listens; the spellings come from each vendor's reference:

- Twilio `<Say>`: Google's Taiwan Mandarin voice `Google.cmn-TW-Standard-A` with `cmn-TW`
  (Twilio's text-to-speech voice list); `<Gather>` speech recognition: `zh-TW`, "Chinese,
  Mandarin (Traditional, Taiwan)" in Twilio's `<Gather>` language list;
- Telnyx `speak`: Azure's Taiwan voice `Azure.zh-TW-HsiaoChenNeural` (the voice carries the
  locale; `language` takes Polly's `cmn-CN`, the only Mandarin in its enum); transcription on
  Google with Google's `zh-TW` (Traditional, Taiwan);
- Plivo `<Speak>`: Amazon Polly's Mandarin voice `Polly.Zhiyu` with Polly's `cmn-CN`;
  `<GetInput>`: `zh-TW` (Google speech recognition, Traditional Taiwan);
- OpenAI and ElevenLabs speech-to-text: ISO-639-1 `zh`; Deepgram: `zh-TW`; ElevenLabs speech:
  its multilingual model; espeak-ng: its Mandarin voice `cmn`; the responder's and the realtime
  model's instructions: a line naming the language.

A language missing from the table is passed to the carriers as written (as before this table:
`en-GB` and the like), with no voice check. For a language in the table, a voice the config
names for a carrier must be one that speaks it (`voice_problem`), else the config is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_LANGUAGE = "en-US"


@dataclass(frozen=True)
class CarrierCodes:
    """How one carrier speaks and hears a language."""

    voice: str  # its default voice for the language
    speak_language: str  # `<Say language>` / `speak.language` / `<Speak language>`
    listen_language: str  # `<Gather language>` / transcription language / `<GetInput language>`
    voice_prefixes: tuple[str, ...]  # voices that can speak it (empty: any)
    tag_is_default: bool = False  # the default language: the carrier's usual voice choice stands


@dataclass(frozen=True)
class Language:
    tag: str
    twilio: CarrierCodes
    telnyx: CarrierCodes
    plivo: CarrierCodes
    stt: str  # ISO-639-1 for OpenAI's and ElevenLabs' speech-to-text
    deepgram_stt: str  # Deepgram's own code (it tells Traditional from Simplified by region)
    espeak_voice: str
    elevenlabs_model: str | None  # a model that speaks it (None: any)
    answer_in: str  # for the responder's and realtime model's instructions
    you_said: str  # the echo responder's reply, with {text}


LANGUAGES: dict[str, Language] = {
    "en-US": Language(
        tag="en-US",
        twilio=CarrierCodes("Polly.Joanna", "en-US", "en-US", (), tag_is_default=True),
        telnyx=CarrierCodes("female", "en-US", "en", (), tag_is_default=True),
        plivo=CarrierCodes("WOMAN", "en-US", "en-US", (), tag_is_default=True),
        stt="en",
        deepgram_stt="en-US",
        espeak_voice="en-us",
        elevenlabs_model=None,
        answer_in="English",
        you_said="You said: {text}",
    ),
    "zh-TW": Language(
        tag="zh-TW",
        twilio=CarrierCodes(
            "Google.cmn-TW-Standard-A",
            "cmn-TW",
            "zh-TW",
            ("Google.cmn-TW-",),  # <Say language="cmn-TW"> takes Google's Taiwan voices only
        ),
        telnyx=CarrierCodes(
            "Azure.zh-TW-HsiaoChenNeural",
            "cmn-CN",
            "zh-TW",
            ("Azure.zh-TW-", "Azure.zh-CN-", "AWS.Polly.Zhiyu"),
        ),
        plivo=CarrierCodes("Polly.Zhiyu", "cmn-CN", "zh-TW", ("Polly.Zhiyu",)),
        stt="zh",
        deepgram_stt="zh-TW",
        espeak_voice="cmn",
        elevenlabs_model="eleven_multilingual_v2",
        answer_in="Traditional Chinese (Mandarin as spoken in Taiwan), never Simplified",
        you_said="您說：{text}",
    ),
}
# Other spellings of the same languages (compared case-insensitively).
_ALIASES = {
    "en": "en-US",
    "zh-hant-tw": "zh-TW",
    "cmn-tw": "zh-TW",
    "cmn-hant-tw": "zh-TW",
    "zh-hant": "zh-TW",
}


def lookup(tag: str | None) -> Language | None:
    """The table's entry for a tag in any usual spelling (`zh-tw`, `cmn-Hant-TW`), else None."""
    if not tag:
        return None
    key = tag.strip().lower().replace("_", "-")
    for known in LANGUAGES:
        if known.lower() == key:
            return LANGUAGES[known]
    alias = _ALIASES.get(key)
    return LANGUAGES[alias] if alias else None


# A BCP-47-looking tag: a 2-3 letter language, then optional script/region/variant subtags.
_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")


def normalise_tag(tag: str) -> str | None:
    """A call's `language` as the table spells it (`zh-tw` → `zh-TW`), a BCP-47-looking tag the
    table lacks as written (carriers get it as before), else None (refuse it)."""
    tag = tag.strip().replace("_", "-")
    known = lookup(tag)
    if known is not None:
        return known.tag
    return tag if _TAG.fullmatch(tag) else None


def own_language(metadata: Mapping[str, object]) -> str | None:
    """The language a call was started with (initiate's `language`): it beats the number's,
    the carrier block's and the top-level one wherever a call's language is decided."""
    value = metadata.get("language")
    return value if isinstance(value, str) and value else None


def carrier_codes(tag: str | None, carrier: str) -> CarrierCodes | None:
    language = lookup(tag)
    if language is None or carrier not in ("twilio", "telnyx", "plivo"):
        return None
    codes: CarrierCodes = getattr(language, carrier)
    return codes


def speaks(codes: CarrierCodes, voice: str) -> bool:
    return not codes.voice_prefixes or voice.startswith(codes.voice_prefixes)


def voice_problem(tag: str, carrier: str, voice: str) -> str | None:
    """Why `voice` cannot speak `tag` on `carrier` (one sentence with the fix), or None."""
    codes = carrier_codes(tag, carrier)
    if codes is None or speaks(codes, voice):
        return None
    return (
        f'{carrier} voice "{voice}" cannot speak {tag} — use a voice that does (e.g.'
        f' "{codes.voice}") or remove the voice to get that one'
    )


def instructions_line(tag: str | None) -> str | None:
    """The line that tells a model which language to answer in, or None for the default."""
    language = lookup(tag)
    if language is None or language.tag == DEFAULT_LANGUAGE:
        return None
    return f"Always answer in {language.answer_in}."


def config_problems(raw: dict[str, object]) -> list[tuple[tuple[str, ...], str]]:
    """Carrier voices in a raw config that cannot speak the language they would be used in."""
    top = raw.get("language")
    top_tag = top if isinstance(top, str) else DEFAULT_LANGUAGE
    problems: list[tuple[tuple[str, ...], str]] = []
    blocks: dict[str, dict[str, object]] = {}
    for carrier in ("twilio", "telnyx", "plivo"):
        block = raw.get(carrier)
        if not isinstance(block, dict):
            continue
        blocks[carrier] = block
        tag, voice = _text(block.get("language")) or top_tag, _text(block.get("voice"))
        problem = voice and voice_problem(tag, carrier, voice)
        if problem:
            problems.append(((carrier, "voice"), problem))
    numbers = raw.get("numbers")
    provider = raw.get("provider")
    if isinstance(numbers, dict) and isinstance(provider, str):
        block = blocks.get(provider, {})
        for key, route in numbers.items():
            if not isinstance(route, dict):
                continue
            tag = _text(route.get("language")) or _text(block.get("language")) or top_tag
            voice = _text(route.get("voice"))
            problem = voice and voice_problem(tag, provider, voice)
            if problem:
                problems.append((("numbers", str(key), "voice"), problem))
    return problems


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def speak_code(tag: str, carrier: str) -> str:
    """How `carrier` spells `tag` where it speaks (a language outside the table: as written)."""
    codes = carrier_codes(tag, carrier)
    return codes.speak_language if codes else tag


def listen_code(tag: str, carrier: str) -> str:
    """How `carrier` spells `tag` where it listens (a language outside the table: as written)."""
    codes = carrier_codes(tag, carrier)
    return codes.listen_language if codes else tag


def carrier_voice(tag: str, carrier: str, explicit: str | None, fallback: str) -> str:
    """The voice for `tag`: the one the config names, else the language's own when the table
    knows it (a TTS voice mapped for English cannot speak it), else `fallback`."""
    if explicit:
        return explicit
    codes = carrier_codes(tag, carrier)
    if codes is None or codes.tag_is_default:
        return fallback
    return codes.voice


def stt_language(tag: str, engine: str) -> str | None:
    """What a speech-to-text engine is told to hear for `tag`; None for the default language
    (each engine keeps its own default: detection, or English)."""
    language = lookup(tag)
    if language is None or language.tag == DEFAULT_LANGUAGE:
        return None
    return language.deepgram_stt if engine == "deepgram" else language.stt
