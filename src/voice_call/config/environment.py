"""Environment-variable fallbacks: secrets the file leaves out, taken from the environment.

A value from the environment is remembered with its variable's name, so an error about it
says ``twilio.authToken (from TWILIO_AUTH_TOKEN): ...`` rather than blaming the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from voice_call.config.errors import Loc
from voice_call.config.raw import is_missing, lookup


def environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """The given environment, or the process's own when none is given (tests pass one)."""
    return os.environ if env is None else env


PROVIDER_ENV = {
    "twilio": {"accountSid": "TWILIO_ACCOUNT_SID", "authToken": "TWILIO_AUTH_TOKEN"},
    "telnyx": {
        "apiKey": "TELNYX_API_KEY",
        "connectionId": "TELNYX_CONNECTION_ID",
        "publicKey": "TELNYX_PUBLIC_KEY",
    },
    "plivo": {"authId": "PLIVO_AUTH_ID", "authToken": "PLIVO_AUTH_TOKEN"},
}
_TUNNEL_ENV = {"ngrokAuthToken": "NGROK_AUTHTOKEN", "ngrokDomain": "NGROK_DOMAIN"}
_TOP_ENV = {
    "openaiApiKey": "OPENAI_API_KEY",
    "elevenlabsApiKey": "ELEVENLABS_API_KEY",
    "deepgramApiKey": "DEEPGRAM_API_KEY",
    "cartesiaApiKey": "CARTESIA_API_KEY",
}


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[Loc, str]:
    """Fill keys the file leaves out from the environment; returns which key came from where."""
    sources: dict[Loc, str] = {}

    def fill(section: Any, loc: Loc, table: Mapping[str, str]) -> None:
        for key, var in table.items():
            value = (env.get(var) or "").strip()
            if value and isinstance(section, dict) and is_missing(lookup(section, key)):
                section[key] = value
                sources[(*loc, key)] = var

    def section(name: str, wanted: bool, table: Mapping[str, str]) -> Any:
        # Create a missing block only when it is needed and the env has something for it,
        # so a mock setup does not grow a twilio block just because TWILIO_* is exported.
        if raw.get(name) is None and wanted and any(env.get(v) for v in table.values()):
            raw[name] = {}
        return raw.get(name)

    provider = lookup(raw, "provider", "mock")
    for name, table in PROVIDER_ENV.items():
        fill(section(name, provider == name, table), (name,), table)
    if provider == "twilio":
        fill(raw, (), {"fromNumber": "TWILIO_FROM_NUMBER"})
    fill(section("tunnel", True, _TUNNEL_ENV), ("tunnel",), _TUNNEL_ENV)
    fill(raw, (), _TOP_ENV)
    return sources
