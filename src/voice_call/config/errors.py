"""The one error a config raises, and how a place in the file is written in it.

Every problem is reported as ``path: message — fix``, with the camelCase path as written in
the file (``numbers["+1555…"].tts``), so the user can find the line without knowing Python.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

Loc = tuple[str | int, ...]

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


class ConfigError(Exception):
    """Every problem found in a config, each formatted ``path: message — fix``."""

    def __init__(self, errors: list[str] | str, source: Path | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source  # the file the errors are about, when loaded from one
        super().__init__("\n".join(self.errors))


def format_path(loc: Loc) -> str:
    """``("numbers", "+1555", "tts")`` → ``numbers["+1555"].tts``; JSON5-ish, as in the file."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out or "(top level)"
