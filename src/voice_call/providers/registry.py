"""Provider registry: one line per carrier. Adding a carrier touches only this file and its own."""

from __future__ import annotations

from pathlib import Path

from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.errors import Unavailable
from voice_call.providers.base import Provider
from voice_call.providers.mock import MockProvider
from voice_call.sim.callee import CalleeScript


def build_provider(config: Config, clock: Clock, home: Path) -> Provider:
    if config.provider == "mock":
        mock = config.mock
        script = CalleeScript(
            outcome=mock.outcome,
            answer_delay_ms=mock.answer_delay_ms,
            replies=tuple(mock.replies),
            reply_delay_ms=mock.reply_delay_ms,
            hangup_after_turns=mock.hangup_after_turns,
            silent=mock.silent,
        )
        return MockProvider(clock, script, ledger_path=home / "mock-carrier.jsonl")
    raise Unavailable(
        f"provider {config.provider!r} is configured but not available in this build yet; "
        'use provider: "mock" for now'
    )
