"""Redaction: the effective config, safe to print (`voicecall config`, support requests).

Secrets are masked by their key's name; a value taken from the environment (``"${NAME}"`` or
``{source: "env", id: "NAME"}``) is shown as ``${NAME}`` wherever it appears, whatever the key.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from voice_call.config.schema import Config
from voice_call.config.substitution import hide_all

_SECRET_WORDS = ("token", "apikey", "secret", "password", "passwd", "privatekey")
_SECRET_NAMES = frozenset({"key", "auth", "authorization", "credentials"})


def _is_secret_key(key: str) -> bool:
    folded = key.lower().replace("_", "").replace("-", "")
    return folded in _SECRET_NAMES or any(word in folded for word in _SECRET_WORDS)


def _mask(value: str) -> str:
    # The last 4 characters of a long secret help tell two keys apart without revealing them.
    return "***" + value[-4:] if len(value) >= 16 else "***"


def _scrub_url(value: str) -> str:
    """Hide a password inside a URL such as ``redis://:pw@host:6379/0``."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _mask(value) if isinstance(value, str) and _is_secret_key(key) else _redact(value)
            for key, value in node.items()
            if value is not None
        }
    if isinstance(node, list):
        return [_redact(item) for item in node]
    if isinstance(node, str):
        return _scrub_url(node)
    return node


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as camelCase JSON with every secret masked and nulls left out."""
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    result: dict[str, Any] = _redact(hide_all(dumped, config.env_values))
    return result
