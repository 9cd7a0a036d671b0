"""Validating an already-parsed config: the pipeline from the file's dict to ``Config``.

Unwrap an OpenClaw file → migrate legacy keys (with warnings) → fill secrets from the
environment where the file leaves them out → validate the model and check between fields.
Every problem is reported at once, in file order, each as ``path: message — fix``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from voice_call.config.checks import cross_check
from voice_call.config.environment import apply_env, environ
from voice_call.config.errors import ConfigError, Loc, format_path
from voice_call.config.legacy import migrate_legacy
from voice_call.config.openclaw import unwrap_openclaw
from voice_call.config.schema import Config
from voice_call.config.wording import file_order, friendly, show


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed config (our shape or an OpenClaw file); never mutates ``data``."""
    env = environ(env)
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected an object, got {show(data)} — write {{ ... }}")
    section, prefix = unwrap_openclaw(data)
    raw = copy.deepcopy(section)
    warnings: list[str] = []
    migrate_legacy(raw, lambda loc, msg: warnings.append(f"{format_path((*prefix, *loc))}: {msg}"))
    sources = apply_env(raw, env)
    problems: list[tuple[Loc, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += [friendly(err) for err in exc.errors()]
    problems += cross_check(raw)
    if problems or config is None:
        problems.sort(key=lambda problem: file_order(raw, problem[0]))
        raise ConfigError([_format_problem(loc, msg, prefix, sources) for loc, msg in problems])
    config._warnings = warnings
    messages = data.get("messages") if prefix else None
    core_tts = messages.get("tts") if isinstance(messages, dict) else None
    config._core_tts = copy.deepcopy(core_tts) if isinstance(core_tts, dict) else {}
    return config


def _format_problem(loc: Loc, message: str, prefix: Loc, sources: Mapping[Loc, str]) -> str:
    path = format_path((*prefix, *loc))
    if loc in sources:  # the value came from the environment, not the file
        path += f" (from {sources[loc]})"
    return f"{path}: {message}"
