"""Validating an already-parsed config: the pipeline from the file's dict to ``Config``.

Unwrap an OpenClaw file → substitute ``${NAME}`` and ``{source: "env", id}`` references → migrate
legacy keys (with warnings) → fill secrets from the environment where the file leaves them
out → validate the model and check between fields.
Every problem is reported at once, in file order, each as ``path: message — fix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from voice_call.config.checks import cross_check
from voice_call.config.environment import apply_env, environ
from voice_call.config.errors import ConfigError, Loc, format_path
from voice_call.config.legacy import migrate_legacy
from voice_call.config.openclaw import unwrap_openclaw
from voice_call.config.schema import Config
from voice_call.config.substitution import Substitution, coerce_whole, hide, substitute
from voice_call.config.tts import tts_key_problems
from voice_call.config.wording import file_order, friendly, scalar_type_at, show


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed config (our shape or an OpenClaw file); never mutates ``data``."""
    env = environ(env)
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected an object, got {show(data)} — write {{ ... }}")
    section, prefix = unwrap_openclaw(data)
    raw, found = substitute(section, env)
    coerce_whole(raw, found, scalar_type_at)
    core_tts, core_found = _core_tts(data if prefix else {}, env)
    found.values.update(core_found.values)
    warnings: list[str] = []
    migrate_legacy(raw, lambda loc, msg: warnings.append(f"{format_path((*prefix, *loc))}: {msg}"))
    sources: dict[Loc, str] = {loc: f"${{{name}}}" for loc, name in found.whole.items()}
    sources.update(apply_env(raw, env))
    problems: list[tuple[Loc, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += [friendly(err) for err in exc.errors()]
    problems += cross_check(raw)
    problems += tts_key_problems(raw, core_tts)  # a fallback engine needs its key
    if problems or found.problems or core_found.problems or config is None:
        # A reference that could not be filled is the one problem to report at its key.
        unfilled = {loc for loc, _ in found.problems}
        problems = found.problems + [p for p in problems if p[0] not in unfilled]
        problems.sort(key=lambda problem: file_order(raw, problem[0]))
        errors = [_format_problem(loc, msg, prefix, sources, found.values) for loc, msg in problems]
        core = [f"{format_path(loc)}: {msg}" for loc, msg in core_found.problems]
        raise ConfigError(errors + core)
    config._warnings = warnings
    config._core_tts = core_tts
    config._env_values = found.values
    return config


def _core_tts(data: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], Substitution]:
    """OpenClaw's global ``messages.tts`` (our ``tts`` deep-merges over it), references filled."""
    messages = data.get("messages")
    core_tts = messages.get("tts") if isinstance(messages, dict) else None
    if not isinstance(core_tts, dict):
        return {}, Substitution()
    filled, found = substitute(core_tts, env, ("messages", "tts"))
    return filled, found


def _format_problem(
    loc: Loc, message: str, prefix: Loc, sources: Mapping[Loc, str], values: Mapping[str, str]
) -> str:
    path = format_path((*prefix, *loc))
    if loc in sources:  # the value came from the environment, not the file
        path += f" (from {sources[loc]})"
    return f"{path}: {hide(message, values)}"
