"""An OpenClaw config file: our settings sit at ``plugins.entries["voice-call"].config``.

Errors inside that section are reported with the full path from the top of the file.
"""

from __future__ import annotations

from typing import Any

from voice_call.config.errors import ConfigError, Loc, format_path

OPENCLAW_ENTRY: Loc = ("plugins", "entries", "voice-call", "config")


def unwrap_openclaw(data: dict[str, Any]) -> tuple[dict[str, Any], Loc]:
    """Our section of an OpenClaw config file, and where it sits in that file."""
    plugins = data.get("plugins")
    if not isinstance(plugins, dict):
        return data, ()
    entries = plugins.get("entries")
    entry = entries.get("voice-call") if isinstance(entries, dict) else None
    where = format_path(OPENCLAW_ENTRY[:3])
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where}: not found — this looks like an OpenClaw config file;"
            ' add a "voice-call" entry with a "config" object'
        )
    section = entry.get("config", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}.config: expected an object — write it as {{ ... }}")
    if entry.get("enabled") is False:  # the plugin switch turns the whole thing off
        section = {**section, "enabled": False}
    return section, OPENCLAW_ENTRY
