"""Seed settings this version does not build are refused at load and by `config check`, never
accepted and ignored: the realtime keys it does not build (with realtime on), `inboundPolicy:
"pairing"`. The `realtime` block itself has the plugin's documented keys and nothing else.
(`store.backend: "redis"` is built now: tests/store/test_redis_config.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, write_config
from voice_call.config import ConfigError, parse_config

REALTIME_ON_MOCK = (
    'realtime.enabled: needs a carrier with media streams (provider "twilio", "telnyx" or'
    ' "plivo"): the mock provider has none — to try realtime voice offline run'
    " `voicecall demo --realtime`"
)
REALTIME_INBOUND_DISABLED = (
    'inboundPolicy: must not be "disabled" when realtime.enabled is true — set "allowlist"'
    ' (the callers to let in under allowFrom) or "open"'
)
PAIRING_REFUSED = (
    'inboundPolicy: "pairing" is not available in this version — use "allowlist" and list the'
    ' callers to let in under allowFrom (e.g. allowFrom: ["+15550001234"])'
)
# Every key the plugin documents for `realtime`, with realtime itself off.
FULL_REALTIME: dict[str, Any] = {
    "enabled": False,
    "provider": "google",
    "streamPath": "/voice/stream/realtime",
    "idleHangupMs": 30000,
    "instructions": "Be brief.",
    "toolPolicy": "owner",
    "consultPolicy": "substantive",
    "consultThinkingLevel": "low",
    "consultFastMode": True,
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
        }
    ],
    "fastContext": {
        "enabled": True,
        "timeoutMs": 500,
        "maxResults": 2,
        "sources": ["memory"],
        "fallbackToConsult": True,
    },
    "agentContext": {
        "enabled": True,
        "maxChars": 4000,
        "includeIdentity": False,
        "includeWorkspaceFiles": False,
        "files": ["SOUL.md"],
    },
    "providers": {"google": {"apiKey": "g", "speakerVoice": "Kore", "silenceDurationMs": 500}},
}


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return info.value.errors


# --- realtime ------------------------------------------------------------------------------


def test_every_documented_realtime_key_loads() -> None:
    realtime = parse_config({"realtime": FULL_REALTIME}, env={}).realtime
    assert (realtime.tool_policy, realtime.consult_thinking_level) == ("owner", "low")
    assert realtime.tools[0].parameters.required == ["id"]
    assert realtime.fast_context.sources == ["memory"]
    assert realtime.agent_context.files == ["SOUL.md"]
    google = realtime.providers.google
    assert google is not None and (google.voice, google.silence_duration_ms) == ("Kore", 500)


def test_unknown_realtime_keys_get_a_suggestion() -> None:
    assert errors_of({"realtime": {"enabeld": True}}) == [
        "realtime.enabeld: unknown key — remove it or check its spelling (did you mean 'enabled'?)"
    ]
    errors = errors_of({"realtime": {"fastContext": {"timeoutMS": 1}, "toolPolicy": "safe"}})
    assert errors == [
        "realtime.fastContext.timeoutMS: unknown key"
        " — remove it or check its spelling (did you mean 'timeoutMs'?)",
        'realtime.toolPolicy: must be one of "safe-read-only", "owner" or "none", got "safe"'
        " — use one of those",
    ]


def test_realtime_tools_have_the_function_shape() -> None:
    errors = errors_of(
        {
            "realtime": {
                "tools": [
                    {"type": "function", "name": "x"},
                    {**FULL_REALTIME["tools"][0], "name": "openclaw_end_call"},
                ]
            }
        }
    )
    assert errors == [
        "realtime.tools[0].description: required — add it",
        "realtime.tools[0].parameters: required — add it",
        'realtime.tools[1].name: "openclaw_end_call" is built in — choose another name',
    ]


def test_realtime_keys_not_built_are_refused_once_realtime_is_on() -> None:
    # Off, every documented key loads (above); on, what this version does not build is
    # refused, each on its own line, even with the service off.
    assert errors_of({"realtime": {**FULL_REALTIME, "enabled": True}}) == [
        REALTIME_ON_MOCK,
        'realtime.toolPolicy: "owner" offers the consult tool, which asks the responder, and'
        ' none is configured — set responder.provider ("openai" or "hook"), or toolPolicy:'
        ' "none"',
        "realtime.consultThinkingLevel: the consult's thinking level is not available in this"
        " version — remove it",
        "realtime.consultFastMode: the consult's fast mode is not available in this version"
        " — remove it",
        "realtime.tools: custom tools are answered by the HTTP hook — set responder.provider:"
        ' "hook" with responder.url, or remove them',
        "realtime.fastContext.enabled: the fast memory/session lookup is not available in"
        " this version — remove it",
        "realtime.agentContext.enabled: the workspace persona capsule is not available in"
        " this version — remove it",
        REALTIME_INBOUND_DISABLED,
    ]
    off = {"enabled": False, "realtime": {"enabled": True}}
    assert errors_of(off) == [REALTIME_ON_MOCK, REALTIME_INBOUND_DISABLED]


def test_legacy_realtime_key_still_migrates() -> None:
    config = parse_config({"realtime": {"agentContext": {"includeSystemPrompt": True}}}, env={})
    assert config.warnings == [
        "realtime.agentContext.includeSystemPrompt: no longer used — remove it"
    ]


# --- store and inbound policy ----------------------------------------------------------------


def test_pairing_is_refused_and_the_other_policies_load() -> None:
    assert errors_of({"inboundPolicy": "pairing"}) == [PAIRING_REFUSED]
    for policy in ("disabled", "allowlist", "open"):
        assert parse_config({"inboundPolicy": policy}, env={}).inbound_policy == policy


# --- through the CLI -------------------------------------------------------------------------


def test_config_check_refuses_each_one_on_its_own_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "refused.json5",
        {
            "inboundPolicy": "pairing",
            "realtime": {"enabled": True},
        },
    )
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"Error: invalid config in {config}:",
        f"  {PAIRING_REFUSED}",
        f"  {REALTIME_ON_MOCK}",
    ]
