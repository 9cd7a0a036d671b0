"""Which TTS engines a call uses (the provider, then its fallbacks), and with what settings.

As in the OpenClaw plugin this service re-implements: the plugin's `tts` block deep-merges over
the global TTS section (OpenClaw's `messages.tts`), and a number route's `tts` over both. With no
provider named: OpenAI when an OpenAI key is known, else ElevenLabs when its key is known, else
espeak-ng (offline). Edge TTS cannot feed a phone line (it needs raw PCM; its output is
unreliable), so it is skipped for calls with a warning.

Our blocks were validated when the config loaded (config/tts.py). OpenClaw's `messages.tts`
also configures OpenClaw's own chat replies, so it may hold what calls never use — other
engines' blocks (`edge`, `azure`, …), chat-only keys (`auto`, `maxTextLength`, …). Those are
left out here and never crash a start; but what it says for an engine we *do* run is
validated like our own block, and a key there that we do not know is dropped with a warning
naming it, so nothing it holds changes a call without being said.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from voice_call.config.errors import format_path
from voice_call.config.tts import ENGINE_MODELS, ENGINES, KEYS, SKIPPED, TtsConfig, api_key
from voice_call.config.wording import friendly
from voice_call.speech.tts.base import TtsUnavailable

DEFAULT_TIMEOUT_MS = 8000
# what a key alone picks when no provider is named (the seed's order); others must be named
AUTO = ("openai", "elevenlabs")
CORE = ("messages", "tts")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`, recursing into objects present in both; inputs are not changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class EngineSettings:
    name: str
    options: dict[str, Any]  # the engine's block, camelCase, its API key filled in


@dataclass(frozen=True)
class TtsSettings:
    provider: str
    options: dict[str, Any]
    timeout_s: float  # for each engine's first audio (and per sentence, per engine)
    warnings: list[str] = field(default_factory=list)
    fallback: tuple[EngineSettings, ...] = ()  # tried in order when the provider fails

    @property
    def chain(self) -> tuple[EngineSettings, ...]:
        return (EngineSettings(self.provider, self.options), *self.fallback)


def _known_only(
    model: type[BaseModel], data: Mapping[str, Any], loc: tuple[str | int, ...], dropped: list[str]
) -> dict[str, Any]:
    """`data` without the keys `model` does not take (recursing into sub-blocks)."""
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        for key in (name, info.alias):
            if key is not None:
                names[key] = info.annotation
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            dropped.append(format_path((*loc, key)))
            continue
        sub = _model_in(names[key])
        kept[key] = (
            _known_only(sub, value, (*loc, key), dropped)
            if sub is not None and isinstance(value, Mapping)
            else value
        )
    return kept


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in `X | None`, if any."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def core_layer(
    core: Mapping[str, Any] | None, warnings: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """OpenClaw's `messages.tts`, reduced to what calls use and validated (see the docstring):
    the layer, and what is wrong with each engine's block (an error only if that engine is
    used)."""
    if not core:
        return {}, {}
    providers = core.get("providers")
    providers = providers if isinstance(providers, Mapping) else {}
    block: dict[str, Any] = {}
    provider = core.get("provider")
    if provider is not None and provider not in (*ENGINES, *SKIPPED):
        warnings.append(
            f'{format_path((*CORE, "provider"))} "{provider}" cannot speak on calls — using'
            " the default engine for calls (set tts.provider to openai, elevenlabs or espeak)"
        )
    elif provider is not None:
        block["provider"] = provider
    chain = core.get("fallback")
    if isinstance(chain, list):
        block["fallback"] = [e for e in chain if e in ENGINES and e != provider]
        for skipped in (e for e in chain if e not in ENGINES):
            warnings.append(
                f"{format_path((*CORE, 'fallback'))}: {skipped!r} cannot speak on calls — skipped"
            )
    if "timeoutMs" in core:
        block["timeoutMs"] = core["timeoutMs"]
    layer = _validated(block, CORE)
    engines: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for name in ENGINES:  # `providers.<engine>`, or the legacy `<engine>` shape
        parts = [p for p in (core.get(name), providers.get(name)) if isinstance(p, Mapping)]
        if not parts:
            continue
        current = isinstance(providers.get(name), Mapping)
        loc = (*CORE, "providers", name) if current else (*CORE, name)
        dropped: list[str] = []
        options = _known_only(ENGINE_MODELS[name], deep_merge(parts[0], parts[-1]), loc, dropped)
        warnings += [f"{path}: not used for calls — ignored" for path in dropped]
        try:
            engines[name] = _validated(options, loc, ENGINE_MODELS[name])
        except TtsUnavailable as exc:
            broken[name] = str(exc)
    if engines:
        layer["providers"] = engines
    return layer, broken


def _validated(
    block: Mapping[str, Any], loc: tuple[str, ...], model: type[BaseModel] = TtsConfig
) -> dict[str, Any]:
    try:
        validated = model.model_validate(block)
    except ValidationError as exc:
        where, message = friendly(exc.errors()[0])
        raise TtsUnavailable(f"{format_path((*loc, *where))}: {message}") from None
    return validated.model_dump(by_alias=True, exclude_none=True)


def _layer(block: TtsConfig | Mapping[str, Any] | None, loc: tuple[str, ...]) -> dict[str, Any]:
    if block is None:
        return {}
    if isinstance(block, TtsConfig):
        return block.layer()
    return _validated(block, loc)


def resolve_tts(
    core: Mapping[str, Any] | None,
    plugin: TtsConfig | Mapping[str, Any] | None,
    route: TtsConfig | Mapping[str, Any] | None = None,
    *,
    openai_api_key: str | None = None,
    elevenlabs_api_key: str | None = None,
    deepgram_api_key: str | None = None,
    cartesia_api_key: str | None = None,
) -> TtsSettings:
    warnings: list[str] = []
    base, broken = core_layer(core, warnings)
    layers = [base, _layer(plugin, ("tts",)), _layer(route, ("tts",))]
    merged = deep_merge(deep_merge(layers[0], layers[1]), layers[2])
    top = {
        "openai": openai_api_key,
        "elevenlabs": elevenlabs_api_key,
        "deepgram": deepgram_api_key,
        "cartesia": cartesia_api_key,
    }

    def key_of(name: str) -> str | None:
        return api_key(name, layers, top[name]) if name in KEYS else None

    provider = merged.get("provider")
    if provider in SKIPPED:
        warnings.append(
            f'tts.provider "{provider}" (Edge TTS) is ignored for calls: a phone line needs raw'
            " PCM — using the default engine instead (set provider to openai, elevenlabs or"
            " espeak)"
        )
        provider = None
    if provider is None:
        # a key in a block wins over a top-level one (the engine was configured on purpose)
        provider = next((name for name in AUTO if api_key(name, layers, None)), None) or next(
            (name for name in AUTO if key_of(name)), "espeak"
        )

    def engine(name: str) -> EngineSettings:
        if name in broken:
            raise TtsUnavailable(broken[name])
        options = dict(merged.get("providers", {}).get(name, {}))
        key = key_of(name)
        if key:
            options["apiKey"] = key
        return EngineSettings(name, options)

    fallback = [name for name in dict.fromkeys(merged.get("fallback", [])) if name != provider]
    timeout_ms = merged.get("timeoutMs", DEFAULT_TIMEOUT_MS)
    first = engine(provider)
    return TtsSettings(
        provider,
        first.options,
        timeout_ms / 1000,
        warnings,
        tuple(engine(name) for name in fallback),
    )


def option(
    options: Mapping[str, Any], provider: str, key: str, kind: type, default: Any = None
) -> Any:
    """A provider option of the expected type, or a TtsUnavailable naming the config path."""
    value = options.get(key, default)
    if value is None:
        return None
    accepted: tuple[type, ...] = (int, float) if kind is float else (kind,)
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, accepted):
        wanted = {str: "a string", int: "a whole number", float: "a number"}.get(
            kind, kind.__name__
        )
        raise TtsUnavailable(f"tts.providers.{provider}.{key}: expected {wanted}, got {value!r}")
    return value
