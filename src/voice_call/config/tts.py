"""The `tts` block (the plugin's, and each `numbers[…].tts`): which engine speaks on streamed
calls, with which settings, and which engines stand in when it fails (`fallback`).

Each block is a *layer*: what it leaves out is None, because the layers deep-merge — OpenClaw's
`messages.tts` under the plugin's `tts` under a number's `tts` (speech/tts/settings.py) — and
only the merged result gets defaults. Our blocks are strict: an unknown key is an error with a
"did you mean" hint. `speakerVoice` (OpenAI) and `speakerVoiceId` (ElevenLabs) are the plugin's
current names for `voice` / `voiceId`; they are folded into those, so everything downstream
(the engines, the carriers' voice mapping) reads one name.

Which API key an engine uses, in every layer and at run time alike (`api_key`): the merged
`providers.<engine>.apiKey`, else the top-level `openaiApiKey` / `elevenlabsApiKey` (themselves
filled from OPENAI_API_KEY / ELEVENLABS_API_KEY).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, Strict, model_validator

from voice_call.config.errors import Loc, format_path
from voice_call.config.fields import Bool, Int, OptHttpUrl, OptStr, field_error
from voice_call.config.section import Section

Engine = Literal["openai", "elevenlabs", "deepgram", "cartesia", "espeak", "fake"]
ENGINES: tuple[str, ...] = ("openai", "elevenlabs", "deepgram", "cartesia", "espeak", "fake")
# Edge TTS may be OpenClaw's chat voice; calls cannot use it (a phone line needs raw PCM and
# its output is unreliable), so as `provider` it is skipped with a warning, as the seed does.
SKIPPED: tuple[str, ...] = ("edge", "microsoft")
# engine → (the top-level key, its environment variable)
KEYS: dict[str, tuple[str, str]] = {
    "openai": ("openaiApiKey", "OPENAI_API_KEY"),
    "elevenlabs": ("elevenlabsApiKey", "ELEVENLABS_API_KEY"),
    "deepgram": ("deepgramApiKey", "DEEPGRAM_API_KEY"),
    "cartesia": ("cartesiaApiKey", "CARTESIA_API_KEY"),
}
OUTPUT_FORMATS = Literal[
    "ulaw_8000", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000"
]

Number = Annotated[float, Strict()]  # JSON5 numbers only; 1 and 1.5 alike


def closest(given: str, choices: Sequence[str]) -> str:
    """` (did you mean "x"?)` for a near miss, else nothing."""
    match = difflib.get_close_matches(given.lower(), [c.lower() for c in choices], 1, 0.6)
    if not match:
        return ""
    return f' (did you mean "{next(c for c in choices if c.lower() == match[0])}"?)'


def refuse_unknown_ids(data: Any, known: Sequence[str], what: str) -> Any:
    """A keyed-by-id block (`providers`) only holds ids we run; the error lists them."""
    if isinstance(data, dict):
        for key in data:
            if key not in known:
                names = ", ".join(json.dumps(k) for k in known)
                hint = closest(key, known) if isinstance(key, str) else ""
                raise field_error(str(key), f"not {what}{hint} — use one of {names}")
    return data


class _Voiced(Section):
    """Folds the plugin's `speaker*` name into ours; giving both is ambiguous."""

    _alias: ClassVar[tuple[str, str]] = ("speaker_voice", "voice")

    @model_validator(mode="after")
    def _fold_speaker_name(self) -> _Voiced:
        alias, field = self._alias
        given = getattr(self, alias)
        if given is not None:
            if getattr(self, field) is not None:
                camel = type(self).model_fields[alias].alias or alias
                other = type(self).model_fields[field].alias or field
                raise field_error(camel, f"the same setting as {other} — keep only one of them")
            setattr(self, field, given)
            setattr(self, alias, None)
        return self


class OpenAITts(_Voiced):
    api_key: OptStr = None
    base_url: OptHttpUrl = None  # any OpenAI-compatible speech endpoint
    model: OptStr = None  # default gpt-4o-mini-tts
    voice: OptStr = None  # default alloy
    speaker_voice: OptStr = Field(default=None, exclude=True)  # = voice (the plugin's name)
    speed: Number | None = Field(default=None, ge=0.25, le=4.0)
    instructions: OptStr = None


class ElevenLabsVoiceSettings(Section):
    """Sent as ElevenLabs' `voice_settings` (its snake_case names)."""

    stability: Number | None = Field(default=None, ge=0, le=1)
    similarity_boost: Number | None = Field(default=None, ge=0, le=1)
    style: Number | None = Field(default=None, ge=0, le=1)
    use_speaker_boost: Bool | None = None
    speed: Number | None = Field(default=None, gt=0, le=4)


class ElevenLabsTts(_Voiced):
    _alias: ClassVar[tuple[str, str]] = ("speaker_voice_id", "voice_id")

    api_key: OptStr = None
    base_url: OptHttpUrl = None
    voice_id: OptStr = None
    speaker_voice_id: OptStr = Field(default=None, exclude=True)  # = voiceId (the plugin's name)
    model_id: OptStr = None  # default eleven_flash_v2_5
    output_format: OUTPUT_FORMATS | None = None  # default pcm_16000; raw audio only
    voice_settings: ElevenLabsVoiceSettings | None = None


class DeepgramTts(Section):
    """Deepgram Aura (`POST /v1/speak`), always asked for µ-law 8 kHz: no resampling."""

    api_key: OptStr = None
    base_url: OptHttpUrl = None  # default https://api.deepgram.com
    model: OptStr = None  # the voice, default aura-2-thalia-en


class CartesiaTts(Section):
    """Cartesia Sonic over its WebSocket, always asked for µ-law 8 kHz: no resampling."""

    api_key: OptStr = None
    url: OptStr = None  # default wss://api.cartesia.ai/tts/websocket
    model_id: OptStr = None  # default sonic-2
    voice_id: OptStr = None  # a voice of Cartesia's library or your own
    language: OptStr = None  # default en
    version: OptStr = None  # the Cartesia-Version header, default 2025-04-16

    @model_validator(mode="after")
    def _websocket_url(self) -> CartesiaTts:
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise field_error(
                "url",
                f'"{self.url}" is not a WebSocket URL'
                ' — write wss://…, e.g. "wss://api.cartesia.ai/tts/websocket"',
            )
        return self


class EspeakTts(Section):
    command: OptStr = None  # default espeak-ng
    voice: OptStr = None  # default en-us
    rate: Int | None = Field(default=None, ge=80, le=500)  # words per minute, default 175


class FakeTts(Section):
    """The offline test voice (speech/tts/fake.py)."""

    rate: Int | None = Field(default=None, gt=0)
    ms_per_char: Number | None = Field(default=None, gt=0)
    first_chunk_ms: Number | None = Field(default=None, ge=0)
    chunk_ms: Number | None = Field(default=None, gt=0)
    per_chunk_ms: Number | None = Field(default=None, ge=0)
    error: OptStr = None  # every synthesis fails with this message


class TtsProviders(Section):
    openai: OpenAITts | None = None
    elevenlabs: ElevenLabsTts | None = None
    deepgram: DeepgramTts | None = None
    cartesia: CartesiaTts | None = None
    espeak: EspeakTts | None = None
    fake: FakeTts | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_engines(cls, data: Any) -> Any:
        for key in data if isinstance(data, dict) else ():
            if key in SKIPPED:
                raise field_error(
                    key,
                    "Edge TTS cannot speak on calls (a phone line needs raw PCM) — remove this"
                    " block (OpenClaw's messages.tts may keep it for chat)",
                )
        return refuse_unknown_ids(data, ENGINES, "an engine that speaks on calls")


ENGINE_MODELS: dict[str, type[Section]] = {
    "openai": OpenAITts,
    "elevenlabs": ElevenLabsTts,
    "deepgram": DeepgramTts,
    "cartesia": CartesiaTts,
    "espeak": EspeakTts,
    "fake": FakeTts,
}


class TtsConfig(Section):
    provider: (
        Literal[
            "openai", "elevenlabs", "deepgram", "cartesia", "espeak", "fake", "edge", "microsoft"
        ]
        | None
    ) = None
    providers: TtsProviders | None = None
    # engines tried in order when the provider fails before any audio (error or timeout)
    fallback: list[Engine] | None = None
    timeout_ms: Int | None = Field(default=None, gt=0, le=120_000)  # default 8000, per engine

    @model_validator(mode="after")
    def _fallback_once_each(self) -> TtsConfig:
        chain = self.fallback or []
        for index, engine in enumerate(chain):
            if engine in chain[:index] or engine == self.provider:
                raise field_error(
                    "fallback",
                    f'names "{engine}" twice (the provider comes first by itself)'
                    " — list each engine once",
                )
        return self

    def layer(self) -> dict[str, Any]:
        """The keys this block sets, camelCase, as the deep-merge takes them."""
        return self.model_dump(by_alias=True, exclude_none=True)


def provider_block(layer: Mapping[str, Any], engine: str) -> Mapping[str, Any]:
    """`providers.<engine>` of a layer, or of OpenClaw's legacy `<engine>` shape."""
    providers = layer.get("providers")
    block = providers.get(engine) if isinstance(providers, Mapping) else None
    legacy = layer.get(engine)
    if isinstance(block, Mapping):
        return block
    return legacy if isinstance(legacy, Mapping) else {}


def api_key(engine: str, layers: Sequence[Mapping[str, Any]], top_level: str | None) -> str | None:
    """The key `engine` would use: the last layer's that has one, else the top-level key."""
    for layer in reversed(layers):
        key = provider_block(layer, engine).get("apiKey")
        if isinstance(key, str) and key.strip():
            return key
    return top_level if isinstance(top_level, str) and top_level.strip() else None


def tts_key_problems(raw: Mapping[str, Any], core: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Each `fallback` engine that would have no API key, where that list is written (ours
    and each number's; OpenClaw's `messages.tts` counts as a place a key may come from)."""
    given = raw.get("tts")
    ours: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    places: list[tuple[Loc, list[Mapping[str, Any]]]] = [(("tts",), [core, ours])]
    numbers = raw.get("numbers")
    for number, route in numbers.items() if isinstance(numbers, Mapping) else ():
        if isinstance(route, Mapping) and isinstance(route.get("tts"), Mapping):
            places.append((("numbers", number, "tts"), [core, ours, route["tts"]]))
    problems: list[tuple[Loc, str]] = []
    for loc, layers in places:
        chain = layers[-1].get("fallback")
        for index, engine in enumerate(chain if isinstance(chain, list) else []):
            if not isinstance(engine, str) or engine not in KEYS:
                continue
            top, env = KEYS[engine]
            if api_key(engine, layers, raw.get(top)) is None:
                where = format_path((*loc, "providers", engine, "apiKey"))
                problems.append(
                    (
                        (*loc, "fallback", index),
                        f'"{engine}" has no API key — set {where}, or {top} / {env}',
                    )
                )
    return problems
