"""Where things live: the state folder and the default config file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from voice_call.config.environment import environ


def state_home(env: Mapping[str, str] | None = None) -> Path:
    """The state folder: ``$VOICECALL_HOME`` or ``~/.voicecall``."""
    env = environ(env)
    home = env.get("VOICECALL_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    user_home = env.get("HOME", "").strip()
    return (Path(user_home) if user_home else Path.home()) / ".voicecall"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$VOICECALL_CONFIG`` or ``state_home()/config.json5``."""
    env = environ(env)
    explicit = env.get("VOICECALL_CONFIG", "").strip()
    return Path(explicit).expanduser() if explicit else state_home(env) / "config.json5"
