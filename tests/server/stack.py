"""The mock-provider server the server, client and agent tests run against: its config, its
HTTP limits and the shape of the `rpc` caller (the fixtures that start it are in conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.support import merge
from voice_call.config import Config, parse_config
from voice_call.server.limits import Limits

SERVER_CONFIG: dict[str, Any] = {
    "provider": "mock",
    "serve": {"port": 0},
    "responder": {"provider": "echo"},
    "mock": {"answerDelayMs": 50, "replyDelayMs": 50},
    "maxConcurrentCalls": 20,
    "staleCallReaperSeconds": 0,
}
# Short enough to keep the 408/429 tests quick, long enough for a loaded CI machine.
TEST_LIMITS = Limits(body_timeout_s=0.5, max_in_flight=2)

Rpc = Callable[..., Awaitable[dict[str, Any]]]


def server_config(**overrides: Any) -> Config:
    """`SERVER_CONFIG` with `overrides` merged over it, parsed."""
    return parse_config(merge(SERVER_CONFIG, overrides))
