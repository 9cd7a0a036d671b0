"""Which TTS engine a call uses, and with what settings.

As in the OpenClaw plugin this service re-implements: the plugin's `tts` block deep-merges over
the global `tts` section (OpenClaw's `messages.tts`), and a number route's `tts` over both.
Provider settings may sit under `providers.<name>` (the current shape) or directly under
`<name>` (the legacy one). With no
provider named: OpenAI when an OpenAI key is known, else ElevenLabs when its key is known, else
espeak-ng (offline). Edge TTS cannot feed a phone line (it needs raw PCM; its output is
unreliable), so it is ignored for calls with a warning.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voice_call.speech.tts.base import TtsUnavailable

ENGINES = ("openai", "elevenlabs", "espeak", "fake")
IGNORED = ("edge", "microsoft")
DEFAULT_TIMEOUT_MS = 8000


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
class TtsSettings:
    provider: str
    options: dict[str, Any]
    timeout_s: float
    warnings: list[str] = field(default_factory=list)


def _options(merged: Mapping[str, Any], name: str) -> dict[str, Any]:
    legacy = merged.get(name)
    providers = merged.get("providers")
    current = providers.get(name) if isinstance(providers, Mapping) else None
    options = dict(legacy) if isinstance(legacy, Mapping) else {}
    return deep_merge(options, current) if isinstance(current, Mapping) else options


def resolve_tts(
    core: Mapping[str, Any] | None,
    plugin: Mapping[str, Any] | None,
    route: Mapping[str, Any] | None = None,
    *,
    openai_api_key: str | None = None,
    elevenlabs_api_key: str | None = None,
) -> TtsSettings:
    merged = deep_merge(deep_merge(core or {}, plugin or {}), route or {})
    warnings: list[str] = []
    provider = merged.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise TtsUnavailable('tts.provider: expected a string — e.g. "openai"')
    if provider in IGNORED:
        warnings.append(
            f'tts.provider "{provider}" (Edge TTS) is ignored for calls: a phone line needs raw'
            " PCM — using the default engine instead (set provider to openai, elevenlabs or"
            " espeak)"
        )
        provider = None
    keys = {"openai": openai_api_key, "elevenlabs": elevenlabs_api_key}
    if provider is None:
        provider = next(
            (name for name in ("openai", "elevenlabs") if _options(merged, name).get("apiKey")),
            None,
        ) or next((name for name, key in keys.items() if key), "espeak")
    if provider not in ENGINES:
        raise TtsUnavailable(
            f'tts.provider "{provider}" cannot speak on calls — use "openai", "elevenlabs" or'
            ' "espeak"'
        )
    options = _options(merged, provider)
    if provider in keys and not options.get("apiKey") and keys[provider]:
        options["apiKey"] = keys[provider]
    timeout_ms = merged.get("timeoutMs", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float) or timeout_ms <= 0:
        raise TtsUnavailable(f"tts.timeoutMs: expected a positive number, got {timeout_ms!r}")
    return TtsSettings(provider, options, timeout_ms / 1000, warnings)


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
