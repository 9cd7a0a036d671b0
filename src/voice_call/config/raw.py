"""Reading the raw dict, before validation: a key by either spelling, and "not set".

Legacy migration, environment fallbacks and the cross-field checks all work on the file's
dict as written, so that their findings add to the type errors instead of hiding behind them.
"""

from __future__ import annotations

import re
from typing import Any


def lookup(section: Any, key: str, default: Any = None) -> Any:
    """A raw value by its camelCase key, or by its snake_case name (both are accepted)."""
    if not isinstance(section, dict):
        return default
    for name in (key, _snake(key)):
        if section.get(name) is not None:
            return section[name]
    return default


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def is_missing(value: Any) -> bool:
    """Absent, or a blank string (which counts as "not set")."""
    return value is None or (isinstance(value, str) and not value.strip())
