"""Field types shared by the sections: strict numbers, phone numbers, URL paths and URLs.

Each validator's message is the ``message — fix`` half of a config error; the path is added
when the error is worded (``wording.py``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Strict
from pydantic_core import PydanticCustomError

from voice_call.models import E164

# Strict: JSON5 has real numbers and booleans, so "3334" or "true" in quotes is a mistake to
# report, not something to coerce silently.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]

_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def _blank_to_none(value: Any) -> Any:
    """An empty string means "not set", so it gets the same "required" message as a gap."""
    return None if isinstance(value, str) and not value.strip() else value


def _e164(value: str) -> str:
    # Accept the usual visual separators ("+1 (555) 000-1234") and store the compact form.
    compact = _PHONE_SEPARATORS.sub("", value)
    if not E164.fullmatch(compact):
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not an E.164 phone number"
            ' — write + country code and number, e.g. "+15550001234"'
        )
    return compact


def _url_path(value: str) -> str:
    """One leading slash, no trailing slash: "voice/webhook/" → "/voice/webhook"."""
    path = "/" + value.strip().strip("/")
    if any(ch.isspace() or ch in "?#" for ch in path):
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not a URL path"
            ' — use a plain path such as "/voice/webhook" (no spaces, "?" or "#")'
        )
    return path


def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not an http(s) URL"
            ' — write the full URL, e.g. "https://example.ngrok.app/voice/webhook"'
        )
    return value.strip()


OptStr = Annotated[str | None, BeforeValidator(_blank_to_none)]
E164Number = Annotated[str, AfterValidator(_e164)]
OptE164 = Annotated[E164Number | None, BeforeValidator(_blank_to_none)]
UrlPath = Annotated[str, AfterValidator(_url_path)]
OptUrlPath = Annotated[UrlPath | None, BeforeValidator(_blank_to_none)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
# `apiBaseUrl` points a provider at another REST host (a regional edge, or `voicecall sim`).
OptHttpUrl = Annotated[HttpUrl | None, BeforeValidator(_blank_to_none)]

# The error type a section's own validator raises; `wording.py` reports it at section.field.
FIELD_ERROR = "config_field"


def field_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field problem inside one section, reported at ``section.field``."""
    return PydanticCustomError(FIELD_ERROR, "{message}", {"field": field, "message": message})
