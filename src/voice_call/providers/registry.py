"""Provider registry: one line per carrier. Adding a carrier touches only this file and its own.

Each carrier module exposes `build(config, clock, home) -> Provider`; modules are imported only
when chosen, so the CLI and the mock path never load carrier code.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.errors import Unavailable
from voice_call.providers.base import Provider

CARRIER_MODULES = {
    "mock": "voice_call.providers.mock",
    "twilio": "voice_call.providers.twilio.provider",
    "telnyx": "voice_call.providers.telnyx.provider",
    "plivo": "voice_call.providers.plivo.provider",
}


def build_provider(config: Config, clock: Clock, home: Path) -> Provider:
    name = CARRIER_MODULES.get(config.provider)
    if name is None:
        raise Unavailable(f"unknown provider {config.provider!r}")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise Unavailable(
            f"provider {config.provider!r} is configured but not available in this build yet; "
            'use provider: "mock" for now'
        ) from None
    provider: Provider = module.build(config, clock, home)
    return provider
