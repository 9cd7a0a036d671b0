"""Legacy keys from earlier versions of the seed plugin, rewritten to today's shape.

Each rewrite is noted with the key that replaces it (``deprecated — use X (migrated for
now)``); a legacy key that is no longer used at all is removed with a note to remove it, so
no key is accepted and silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voice_call.config.errors import Loc, format_path
from voice_call.config.raw import is_missing, lookup

Note = Callable[[Loc, str], None]

_LEGACY_STREAMING = {
    "openaiApiKey": "apiKey",
    "sttModel": "model",
    "silenceDurationMs": "silenceDurationMs",
    "vadThreshold": "vadThreshold",
}
_LEGACY_TTS_PROVIDERS = ("openai", "elevenlabs", "edge", "typecast")


def migrate_legacy(raw: dict[str, Any], note: Note) -> None:
    """Rewrite legacy keys in place, noting each with its replacement."""
    if raw.get("provider") == "log":
        raw["provider"] = "mock"
        note(("provider",), '"log" is deprecated — use "mock" (migrated for now)')
    twilio = raw.get("twilio")
    if isinstance(twilio, dict) and "from" in twilio:
        legacy = twilio.pop("from")
        if is_missing(lookup(raw, "fromNumber")):
            raw["fromNumber"] = legacy
            note(("twilio", "from"), "deprecated — use top-level fromNumber (migrated for now)")
        else:
            note(("twilio", "from"), "deprecated and ignored because fromNumber is set — remove it")
    if isinstance(raw.get("streaming"), dict):
        _migrate_streaming(raw["streaming"], note)
    realtime = raw.get("realtime")
    context = realtime.get("agentContext") if isinstance(realtime, dict) else None
    if isinstance(context, dict) and context.pop("includeSystemPrompt", None) is not None:
        note(("realtime", "agentContext", "includeSystemPrompt"), "no longer used — remove it")
    if isinstance(raw.get("tts"), dict):
        _migrate_tts(raw["tts"], ("tts",), note)
    numbers = raw.get("numbers")
    for number, route in numbers.items() if isinstance(numbers, dict) else ():
        if isinstance(route, dict) and isinstance(route.get("tts"), dict):
            _migrate_tts(route["tts"], ("numbers", number, "tts"), note)
    if "stt" in raw:  # early-era block, declared but never used
        raw.pop("stt")
        note(("stt",), "no longer used (speech-to-text is streaming.provider) — remove it")


def _migrate_streaming(streaming: dict[str, Any], note: Note) -> None:
    if "sttProvider" in streaming:
        value = streaming.pop("sttProvider")
        streaming.setdefault("provider", "openai" if value == "openai-realtime" else value)
        note(("streaming", "sttProvider"), "deprecated — use streaming.provider (migrated for now)")
    for old, new in _LEGACY_STREAMING.items():
        if old not in streaming:
            continue
        providers = streaming.setdefault("providers", {})
        openai = providers.setdefault("openai", {}) if isinstance(providers, dict) else None
        if not isinstance(openai, dict):
            return  # leave the old key in place; validation reports it
        openai.setdefault(new, streaming.pop(old))
        note(
            ("streaming", old),
            f"deprecated — use streaming.providers.openai.{new} (migrated for now)",
        )


def _migrate_tts(tts: dict[str, Any], loc: Loc, note: Note) -> None:
    for name in _LEGACY_TTS_PROVIDERS:
        if not isinstance(tts.get(name), dict):
            continue
        providers = tts.setdefault("providers", {})
        if not isinstance(providers, dict):
            return
        providers.setdefault(name, tts.pop(name))
        note(
            (*loc, name),
            f"deprecated — use {format_path((*loc, 'providers', name))} (migrated for now)",
        )
