"""Values taken from the environment: ``"${NAME}"`` and ``{source: "env", id: "NAME"}``.

Any string value, at any depth, may hold ``${NAME}`` — the whole string or a part of it
(``"Bearer ${HOOK_TOKEN}"``); ``$${NAME}`` is the literal text ``${NAME}``. As in OpenClaw, only
capitalised names (``A-Z``, ``0-9``, ``_``) are references. Anything shaped like
the OpenClaw plugin's secret reference ``{source: "env", provider?: "default", id: "NAME"}`` is
replaced by that variable's value. Dict keys are never substituted.

This runs on the raw dict before anything else reads it, so legacy migration, environment
fallbacks, validation and the cross-field checks see the real values. A variable that is unset
(or blank) is a problem at the key that names it. What was substituted is remembered so that
redaction and error messages show ``${NAME}`` instead of the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voice_call.config.errors import Loc

# As in OpenClaw: only capitalised names are references, so "${name}" in a prompt stays text.
_REFERENCE = re.compile(r"\$(\$?)\{([A-Z_][A-Z0-9_]*)\}")
_WHOLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
_SECRET_REF_KEYS = frozenset({"source", "provider", "id"})
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass
class Substitution:
    """What ``substitute`` found: the problems, and where each value came from."""

    problems: list[tuple[Loc, str]] = field(default_factory=list)
    whole: dict[Loc, str] = field(default_factory=dict)  # key → the variable it is entirely
    values: dict[str, str] = field(default_factory=dict)  # a value used → its variable


def substitute(
    node: Any, env: Mapping[str, str], loc: Loc = (), found: Substitution | None = None
) -> tuple[Any, Substitution]:
    """``node`` with every reference replaced (a new structure; ``node`` is not changed)."""
    found = Substitution() if found is None else found
    if isinstance(node, dict):
        if _is_secret_ref(node):
            return _secret_ref(node, env, loc, found), found
        return {k: substitute(v, env, (*loc, k), found)[0] for k, v in node.items()}, found
    if isinstance(node, list):
        return [substitute(v, env, (*loc, i), found)[0] for i, v in enumerate(node)], found
    if isinstance(node, str) and "${" in node:
        return _expand(node, env, loc, found), found
    return node, found


def hide(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each value taken from the environment shown as ``${NAME}``.

    A value equal to the whole text is always hidden; inside a longer text, only values of 8
    characters or more (shorter ones would match ordinary words, choices and numbers, and
    mangle the text rather than hide a secret)."""
    if text in values:
        return "${" + values[text] + "}"
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 8 and value in text:
            text = text.replace(value, "${" + values[value] + "}")
    return text


def hide_all(node: Any, values: Mapping[str, str]) -> Any:
    """``hide`` applied to every string in a dumped structure."""
    if not values:
        return node
    if isinstance(node, dict):
        return {k: hide_all(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [hide_all(v, values) for v in node]
    return hide(node, values) if isinstance(node, str) else node


def _is_secret_ref(node: dict[Any, Any]) -> bool:
    return {"source", "id"} <= node.keys() <= _SECRET_REF_KEYS and all(
        isinstance(v, str) for v in node.values()
    )


def _secret_ref(node: dict[str, str], env: Mapping[str, str], loc: Loc, found: Substitution) -> Any:
    source, name = node["source"], node["id"]
    if source != "env":
        found.problems.append(
            (
                loc,
                f'secret source "{source}" is not supported here'
                f' — use {{source: "env", id: "NAME"}} or write the value',
            )
        )
        return dict(node)
    if node.get("provider", "default") != "default":
        found.problems.append(
            (
                loc,
                f'secret provider "{node["provider"]}" is not supported here'
                ' — leave provider out (or write "default") to read the environment',
            )
        )
        return dict(node)
    if not _ENV_NAME.fullmatch(name):
        found.problems.append(
            (
                loc,
                f'id "{name}" is not an environment variable name'
                ' — write it in capitals, e.g. "TWILIO_AUTH_TOKEN"',
            )
        )
        return dict(node)
    return _lookup(name, env, loc, found, whole=True) or dict(node)


def _expand(text: str, env: Mapping[str, str], loc: Loc, found: Substitution) -> str:
    whole = _WHOLE.fullmatch(text)
    if whole:
        return _lookup(whole.group(1), env, loc, found, whole=True) or text

    def one(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        return _lookup(name, env, loc, found, whole=False) or match.group(0)

    return _REFERENCE.sub(one, text)


def _lookup(name: str, env: Mapping[str, str], loc: Loc, found: Substitution, whole: bool) -> str:
    value = env.get(name, "")
    if not value.strip():
        found.problems.append(
            (loc, f"${{{name}}} is not set — set {name} in the environment or write the value")
        )
        return ""
    found.values[value] = name
    if whole:
        found.whole[loc] = name
    return value


def coerce_whole(raw: Any, found: Substitution, scalar_at: Callable[[Loc], type | None]) -> None:
    """Environment values are text; where a whole ``"${PORT}"`` fills a number or true/false
    field, read the text as that type (anything else is left for validation to report)."""
    for loc in found.whole:
        wanted = scalar_at(loc) if loc else None
        parent = _parent(raw, loc) if wanted is not None else None
        if wanted is None or parent is None:
            continue
        text = parent[loc[-1]].strip()
        if wanted is bool and text in ("true", "false"):
            parent[loc[-1]] = text == "true"
        elif wanted is int and re.fullmatch(r"[+-]?[0-9]+", text):
            parent[loc[-1]] = int(text)


def _parent(raw: Any, loc: Loc) -> Any:
    for part in loc[:-1]:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    ok = isinstance(raw, dict) or (isinstance(raw, list) and isinstance(loc[-1], int))
    return raw if ok and isinstance(_get(raw, loc[-1]), str) else None


def _get(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return None
