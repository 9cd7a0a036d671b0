"""Pydantic's validation errors, worded for the person editing the file.

Each becomes ``(where, "message — fix")``: a wrong type says what to write instead, a
misspelt choice or key gets a "did you mean" hint, and errors are sorted in file order.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from voice_call.config.errors import Loc
from voice_call.config.fields import FIELD_ERROR
from voice_call.config.schema import Config


def show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _expected(err: ErrorDetails) -> str:
    return str(err.get("ctx", {}).get("expected", "")).replace("'", '"')


def _choice(err: ErrorDetails) -> str:
    """For a misspelt choice ("twillio"), name the likely one; else list them all."""
    choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    given = err["input"]
    hint = _closest(given, choices) if isinstance(given, str) else None
    return f"did you mean {json.dumps(hint)}?" if hint else "use one of those"


_MESSAGES: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: "required — add it",
    "int_type": lambda e: (
        f"expected a whole number, got {show(e['input'])} — write a number without quotes"
    ),
    "float_type": lambda e: (
        f"expected a number, got {show(e['input'])} — write a number without quotes"
    ),
    "bool_type": lambda e: (
        f"expected true or false, got {show(e['input'])} — write true or false without quotes"
    ),
    "string_type": lambda e: f"expected a string, got {show(e['input'])} — put it in quotes",
    "list_type": lambda e: f"expected a list, got {show(e['input'])} — write it as [ ... ]",
    "dict_type": lambda e: f"expected an object, got {show(e['input'])} — write it as {{ ... }}",
    "model_type": lambda e: f"expected an object, got {show(e['input'])} — write it as {{ ... }}",
    "literal_error": lambda e: (
        f"must be one of {_expected(e)}, got {show(e['input'])} — {_choice(e)}"
    ),
    "enum": lambda e: f"must be one of {_expected(e)}, got {show(e['input'])} — {_choice(e)}",
    "greater_than": lambda e: (
        f"must be greater than {e['ctx']['gt']}, got {show(e['input'])} — use a larger number"
    ),
    "greater_than_equal": lambda e: (
        f"must be at least {e['ctx']['ge']}, got {show(e['input'])} — use a larger number"
    ),
    "less_than_equal": lambda e: (
        f"must be at most {e['ctx']['le']}, got {show(e['input'])} — use a smaller number"
    ),
    "string_too_short": lambda e: "must not be empty — set a value or remove the key",
}


def friendly(err: ErrorDetails) -> tuple[Loc, str]:
    """A pydantic error as (where, "message — fix")."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx", {})
    if kind == FIELD_ERROR:
        loc = (*loc, ctx["field"])
        message = str(ctx["message"])
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    elif kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind in _MESSAGES:
        message = _MESSAGES[kind](err)
    else:
        message = f"{err['msg']} — check the value"
    if loc and loc[-1] == "[key]":  # a dict key itself is invalid, e.g. numbers["555"]
        loc = loc[:-1]
    return loc, message


def file_order(raw: Any, loc: Loc) -> tuple[int, ...]:
    """Where ``loc`` sits in the file, so errors read top to bottom; absent keys go last."""
    order: list[int] = []
    for part in loc:
        if isinstance(raw, dict) and part in raw:
            order.append(list(raw).index(part))
            raw = raw[part]
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            order.append(part)
            raw = raw[part]
        else:
            order.append(1 << 30)
            break
    return tuple(order)


def _unknown_key(loc: Loc) -> str:
    key = loc[-1]
    model = _model_at(loc[:-1])
    if model is None or not isinstance(key, str):
        return "unknown key — remove it or check its spelling"
    aliases = {name: field.alias or name for name, field in model.model_fields.items()}
    if key in aliases:  # snake_case name given next to its camelCase alias
        return f"given twice (also as '{aliases[key]}') — keep only one of them"
    hint = _closest(key, list(aliases.values()))
    suggestion = f" (did you mean '{hint}'?)" if hint else ""
    return f"unknown key — remove it or check its spelling{suggestion}"


def _closest(key: str, candidates: list[str]) -> str | None:
    # Compare without case or separators so "from_numbr" still finds "fromNumber".
    def fold(text: str) -> str:
        return text.lower().replace("_", "").replace("-", "")

    folded = {fold(c): c for c in candidates}
    match = difflib.get_close_matches(fold(key), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def scalar_type_at(loc: Loc) -> type | None:
    """``int`` or ``bool`` where the field at ``loc`` holds a number or true/false, else None
    (lets a whole ``"${PORT}"`` fill a number field)."""
    model = _model_at(loc[:-1])
    if model is None:
        return None
    field = next((f for n, f in model.model_fields.items() if loc[-1] in (n, f.alias)), None)
    tp = _unwrap(field.annotation) if field is not None else None
    return tp if tp in (int, bool) else None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The section model found by following ``loc`` down from ``Config``."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next(
                (f for n, f in tp.model_fields.items() if part in (n, f.alias)),
                None,
            )
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp
