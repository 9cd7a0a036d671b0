"""The language `voicecall` talks to a person in: gettext catalogs of the `voice_call` domain.

English is the default and the msgids; Traditional Chinese (`zh_TW`) is chosen by
`--lang zh-TW`, else by the locale variables (`LC_ALL`, `LC_MESSAGES`, `LANG` = `zh_TW…` or
`zh_Hant…`). Only what a person reads goes through `_()`: `--json` output, RPC and tool results
are never translated, because programs read them.

click evaluates help texts when a command module is imported, so `main.py` activates the
language from the process's argv and environment before it builds the command tree; the
`--lang` option then sets it again for what is worded at run time.

Config errors are worded in English by `config/wording.py` (the JSON output and the RPC carry
them as they are); `localize_config_error` translates a line for display by matching it
against that module's templates.
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

DOMAIN = "voice_call"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
ENGLISH = "en"
CHINESE = "zh_TW"
CHOICES = ("en", "zh-TW")  # what `--lang` accepts (case-insensitive)

_ENV_ORDER = ("LC_ALL", "LC_MESSAGES", "LANG")  # POSIX precedence: the first one set wins
_CHINESE_PREFIXES = ("zh_tw", "zh-tw", "zh_hant", "zh-hant")

_active: gettext.NullTranslations = gettext.NullTranslations()


def normalize(tag: str | None) -> str:
    """A locale name or `--lang` value → `zh_TW` or `en`."""
    return CHINESE if tag and tag.strip().lower().startswith(_CHINESE_PREFIXES) else ENGLISH


def from_environment(environ: Mapping[str, str]) -> str:
    for name in _ENV_ORDER:
        if environ.get(name):
            return normalize(environ[name])
    return ENGLISH


def from_argv(argv: Iterable[str]) -> str | None:
    """The `--lang` value in a raw command line, if any (read before click parses it)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith("--lang="):
            return arg.partition("=")[2]
        if arg == "--lang" and i + 1 < len(args):
            return args[i + 1]
    return None


def choose(argv: Iterable[str], environ: Mapping[str, str]) -> str:
    """`--lang` first, then the locale variables, else English."""
    given = from_argv(argv)
    return normalize(given) if given is not None else from_environment(environ)


@cache
def _translations(language: str) -> gettext.NullTranslations:
    if language == ENGLISH:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def activate(language: str) -> str:
    """Speak `language` (`en` / `zh_TW`) from now on; returns the language that was active."""
    global _active
    previous = current()
    _active = _translations(normalize(language))
    return previous


def current() -> str:
    return ENGLISH if type(_active) is gettext.NullTranslations else CHINESE


def _(message: str) -> str:
    return _active.gettext(message)


_marked: set[str] = set()


def N_(message: str) -> str:
    """Marks English text for the catalog where it must stay English (a constant, or a message
    that JSON output also carries): say it with `_()`, or `localize` what was made from it, where
    a person reads it. Remembered, so that `localize` knows the templates made so far."""
    _marked.add(message)
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    return _active.ngettext(singular, plural, n)


def localize_config_error(line: str) -> str:
    """One `path: message — fix` line of a ConfigError, in the active language."""
    from voice_call.config.wording import TEMPLATES

    return localize(line, TEMPLATES)


def localize(text: str, templates: tuple[str, ...] = ()) -> str:
    """`text`, worded in English from `templates` (msgids filled with `.format`), said in the
    active language: the template it was made from is translated and refilled, its values
    translated the same way; `a; b` and `path: message` are taken apart first when no template
    matches the whole. Besides `templates`, every text marked with `N_` so far is one. Text
    made otherwise comes back as it is."""
    if current() == ENGLISH:
        return text
    return _phrase(text, _patterns(tuple(sorted({*templates, *_marked}))))


def _phrase(text: str, patterns: list[tuple[str, re.Pattern[str]]]) -> str:
    for template, pattern in patterns:
        match = pattern.fullmatch(text)
        if match:
            values = {k: _phrase(v, patterns) for k, v in match.groupdict().items()}
            return _(template).format(**values)
    for separator in ("; ", ": "):
        head, sep, rest = text.partition(separator)
        if sep:
            return f"{_phrase(head, patterns)}{sep}{_phrase(rest, patterns)}"
    return text


@cache
def _patterns(templates: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    """Each template as a regex; `{name}` captures the value it was filled with."""
    compiled = []
    for template in templates:
        parts = re.split(r"\{(\w+)\}", template.replace("{{", "{").replace("}}", "}"))
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts)
        )
        compiled.append((template, re.compile(regex, re.DOTALL)))
    # longer templates first, so "unknown key — …{suggestion}" wins over its shorter form
    return sorted(compiled, key=lambda tp: -len(tp[0]))
