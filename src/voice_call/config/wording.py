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
    return N_("did you mean {hint}?").format(hint=json.dumps(hint)) if hint else USE_ONE


def N_(template: str) -> str:
    """Marks an English template for the CLI's catalog (Babel extracts `N_`); the text stays
    English here, because `--json` and the RPC carry it as it is. `cli/i18n.py` translates a
    worded line for display by matching it against `TEMPLATES`."""
    return template


USE_ONE = N_("use one of those")
_WHOLE = N_("expected a whole number, got {got} — write a number without quotes")
_NUMBER = N_("expected a number, got {got} — write a number without quotes")
_BOOL = N_("expected true or false, got {got} — write true or false without quotes")
_STRING = N_("expected a string, got {got} — put it in quotes")
_LIST = N_("expected a list, got {got} — write it as [ ... ]")
_OBJECT = N_("expected an object, got {got} — write it as {{ ... }}")
_ONE_OF = N_("must be one of {choices}, got {got} — {fix}")
_GREATER = N_("must be greater than {limit}, got {got} — use a larger number")
_AT_LEAST = N_("must be at least {limit}, got {got} — use a larger number")
_AT_MOST = N_("must be at most {limit}, got {got} — use a smaller number")
_CHECK = N_("{msg} — check the value")
_UNKNOWN = N_("unknown key — remove it or check its spelling")
_UNKNOWN_HINT = N_("unknown key — remove it or check its spelling{suggestion}")
_SUGGESTION = N_(" (did you mean '{hint}'?)")
_TWICE = N_("given twice (also as '{alias}') — keep only one of them")


def _got(e: ErrorDetails) -> str:
    return show(e["input"])


_MESSAGES: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: N_("required — add it"),
    "int_type": lambda e: _WHOLE.format(got=_got(e)),
    "float_type": lambda e: _NUMBER.format(got=_got(e)),
    "bool_type": lambda e: _BOOL.format(got=_got(e)),
    "string_type": lambda e: _STRING.format(got=_got(e)),
    "list_type": lambda e: _LIST.format(got=_got(e)),
    "dict_type": lambda e: _OBJECT.format(got=_got(e)),
    "model_type": lambda e: _OBJECT.format(got=_got(e)),
    "literal_error": lambda e: _ONE_OF.format(choices=_expected(e), got=_got(e), fix=_choice(e)),
    "enum": lambda e: _ONE_OF.format(choices=_expected(e), got=_got(e), fix=_choice(e)),
    "greater_than": lambda e: _GREATER.format(limit=e["ctx"]["gt"], got=_got(e)),
    "greater_than_equal": lambda e: _AT_LEAST.format(limit=e["ctx"]["ge"], got=_got(e)),
    "less_than_equal": lambda e: _AT_MOST.format(limit=e["ctx"]["le"], got=_got(e)),
    "string_too_short": lambda e: N_("must not be empty — set a value or remove the key"),
}

# Every template a worded error is made of, for the CLI's display translation; "(top level)"
# is the path `config/errors.py` writes for the file as a whole.
TEMPLATES: tuple[str, ...] = (
    *(_WHOLE, _NUMBER, _BOOL, _STRING, _LIST, _OBJECT, _ONE_OF, _GREATER, _AT_LEAST, _AT_MOST),
    *(_CHECK, _UNKNOWN, _UNKNOWN_HINT, _SUGGESTION, _TWICE, USE_ONE),
    N_("did you mean {hint}?"),
    N_("required — add it"),
    N_("must not be empty — set a value or remove the key"),
    N_("(top level)"),
)


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
        message = _CHECK.format(msg=err["msg"])
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
        return _UNKNOWN
    aliases = {name: field.alias or name for name, field in model.model_fields.items()}
    if key in aliases:  # snake_case name given next to its camelCase alias
        return _TWICE.format(alias=aliases[key])
    hint = _closest(key, list(aliases.values()))
    return _UNKNOWN_HINT.format(suggestion=_SUGGESTION.format(hint=hint)) if hint else _UNKNOWN


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
