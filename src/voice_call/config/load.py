"""Loading the config file: JSON5 from disk (or the defaults when there is none)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import json5

from voice_call.config.environment import environ
from voice_call.config.errors import ConfigError
from voice_call.config.parse import parse_config
from voice_call.config.paths import default_config_path
from voice_call.config.schema import Config


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the config file (JSON5). With no path and no file at the default place: defaults.

    ``$VOICECALL_CONFIG`` counts as an explicit path, so a typo there is an error rather than
    a silent fall-back to the mock provider.
    """
    env = environ(env)
    if path is None:
        path = default_config_path(env)
        if not path.exists() and not env.get("VOICECALL_CONFIG", "").strip():
            return parse_config({}, env)
    path = Path(path).expanduser()
    data = read_json5(path)
    try:
        return parse_config(data, env)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source=path) from None


def read_json5(path: Path) -> Any:
    """The file's values (an empty file is ``{}``); any failure is a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found — check the path, or leave it out to use the defaults"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}) — check the file") from None
    if not text.strip():
        return {}  # a freshly created empty file means "all defaults"
    try:
        return _pair_surrogates(json5.loads(text, allow_duplicate_keys=False))
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid JSON5: {exc} — fix the syntax there") from None


def _pair_surrogates(value: Any) -> Any:
    """json5 decodes an escaped pair such as "\\ud83d\\ude00" (what `json.dumps` writes for
    an emoji) into two lone surrogates: join them into the real character. A lone surrogate
    left over is not text: a ValueError (UnicodeDecodeError) the caller reports."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    if isinstance(value, list):
        return [_pair_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_pair_surrogates(k): _pair_surrogates(v) for k, v in value.items()}
    return value
