"""The `realtime` block, turned on: what it needs of the rest of the file (a carrier, an inbound
policy, no streaming), the keys built into the session and the bridge, and a missing model key
failing at server start with the config path to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, write_config
from tests.support import merge
from voice_call.config import ConfigError, parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.realtime.factory import RealtimeFactory, RealtimeUnavailable
from voice_call.runtime import Runtime

CARRIER: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001000",
    "twilio": {"accountSid": "AC" + "0" * 32, "authToken": "t"},
    "inboundPolicy": "allowlist",
    "realtime": {"enabled": True},
}
TOOL = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
}


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return info.value.errors


def config(**extra: Any) -> Any:
    return parse_config(merge(CARRIER, extra), env={})


def test_realtime_on_a_carrier_loads() -> None:
    loaded = config(openaiApiKey="sk")
    assert loaded.realtime.enabled and loaded.realtime.stream_path == "/voice/stream/realtime"


def test_what_realtime_needs_of_the_rest_of_the_file() -> None:
    assert errors_of({**CARRIER, "inboundPolicy": "disabled"}) == [
        'inboundPolicy: must not be "disabled" when realtime.enabled is true — set "allowlist"'
        ' (the callers to let in under allowFrom) or "open"'
    ]
    mock = {k: v for k, v in CARRIER.items() if k not in ("provider", "twilio", "fromNumber")}
    [error] = errors_of(mock)
    assert error.startswith("realtime.enabled: needs a carrier with media streams")
    assert "`voicecall demo --realtime`" in error
    [error] = errors_of({**CARRIER, "streaming": {"enabled": True}})
    assert error.startswith("realtime.enabled: cannot be used together with streaming.enabled")


def test_custom_tools_need_the_hook_and_may_not_take_a_built_in_name() -> None:
    [error] = errors_of(merge(CARRIER, {"realtime": {"tools": [TOOL]}}))
    assert error.startswith("realtime.tools: custom tools are answered by the HTTP hook — set")
    hook = {"responder": {"provider": "hook", "url": "http://127.0.0.1:9/hook"}}
    assert config(realtime={"tools": [TOOL]}, **hook).realtime.tools[0].name == "lookup_order"
    assert (
        errors_of(merge(CARRIER, {**hook, "realtime": {"tools": [{**TOOL, "name": "consult"}]}}))[0]
        == 'realtime.tools[0].name: "consult" is built in — choose another name'
    )


def test_an_explicit_tool_policy_needs_a_responder_to_consult() -> None:
    [error] = errors_of(merge(CARRIER, {"realtime": {"toolPolicy": "owner"}}))
    assert error.startswith('realtime.toolPolicy: "owner" offers the consult tool')
    assert config(realtime={"toolPolicy": "none"}).realtime.tool_policy == "none"
    assert config(realtime={"toolPolicy": "owner"}, responder={"provider": "echo"})


def test_keys_not_built_are_refused_once_realtime_is_on() -> None:
    errors = errors_of(
        merge(
            CARRIER,
            {
                "realtime": {
                    "fastContext": {"enabled": True},
                    "agentContext": {"enabled": True},
                    "consultThinkingLevel": "low",
                    "consultFastMode": True,
                }
            },
        )
    )
    assert {e.split(":")[0] for e in errors} == {
        "realtime.consultThinkingLevel",
        "realtime.consultFastMode",
        "realtime.fastContext.enabled",
        "realtime.agentContext.enabled",
    }
    assert all(e.endswith("is not available in this version — remove it") for e in errors)
    # off is what this version does: saying so is fine
    assert config(realtime={"consultFastMode": False, "fastContext": {"enabled": False}})


def test_a_missing_openai_key_fails_at_server_start(tmp_path: Path) -> None:
    with pytest.raises(RealtimeUnavailable) as info:
        Runtime(config(), tmp_path / "home")
    assert str(info.value).startswith("realtime.providers.openai.apiKey: required")
    Runtime(config(openaiApiKey="sk"), tmp_path / "home")  # the top-level key will do


def test_gemini_takes_its_key_from_the_block_then_gemini_then_google_api_key() -> None:
    google = config(realtime={"provider": "google"})
    with pytest.raises(RealtimeUnavailable) as info:
        RealtimeFactory(google, consult=False, env={})
    assert "realtime.providers.google.apiKey" in str(info.value)
    for env in ({"GEMINI_API_KEY": "g"}, {"GOOGLE_API_KEY": "g"}):
        assert RealtimeFactory(google, consult=False, env=env).name == "google"
    keyed = config(realtime={"provider": "google", "providers": {"google": {"apiKey": "g"}}})
    assert RealtimeFactory(keyed, consult=False, env={}).new_model().name == "google"


def test_the_session_and_the_bridge_are_built_from_the_block() -> None:
    loaded = config(
        openaiApiKey="sk",
        responseSystemPrompt="You are the clinic's receptionist.",
        realtime={
            "instructions": "You are Sam from the clinic.",
            "consultPolicy": "always",
            "idleHangupMs": 45_000,
            "silenceTimeoutMs": 20_000,
            "consultFillerMs": 800,
        },
    )
    factory = RealtimeFactory(loaded, consult=True, env={})
    setup = factory.setup(None)
    assert setup.instructions.startswith("You are Sam from the clinic.")
    assert "Call the consult tool before you answer anything" in setup.instructions
    assert [tool.name for tool in setup.tools] == ["end_call", "send_dtmf", "consult"]
    bridge = factory.bridge_settings()
    assert (bridge.idle_hangup_s, bridge.silence_timeout_s, bridge.consult_filler_s) == (
        45.0,
        20.0,
        0.8,
    )
    assert bridge.tool_policy == "safe-read-only"
    # no responder to ask: no consult tool, and the instructions do not mention it
    alone = RealtimeFactory(loaded, consult=False, env={})
    assert [tool.name for tool in alone.setup(None).tools] == ["end_call", "send_dtmf"]
    assert "consult" not in alone.setup(None).instructions
    assert alone.bridge_settings().tool_policy == "none"


def test_an_inbound_call_to_a_routed_number_gets_its_prompt_and_language() -> None:
    number = "+15550001000"
    loaded = config(
        openaiApiKey="sk",
        numbers={
            number: {"responseSystemPrompt": "You answer for the bakery.", "language": "fr-FR"}
        },
    )
    record = CallRecord(
        call_id="c1",
        provider="twilio",
        direction=Direction.INBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550009999",
        to_number=number,
        started_at=1.0,
        metadata={"numberRouteKey": number},  # what the inbound screen chose
    )
    setup = RealtimeFactory(loaded, consult=False, env={}).setup(record)
    assert setup.instructions.startswith("You answer for the bakery.")
    assert setup.language == "fr-FR"


def test_serve_stops_at_start_naming_the_missing_key(tmp_path: Path) -> None:
    serve = {"serve": {"port": 0, "bind": "127.0.0.1"}}
    path = write_config(tmp_path / "realtime.json5", merge(CARRIER, serve))
    done = Cli(base_env(tmp_path), path).run("serve", timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "realtime.providers.openai.apiKey: required" in done.stderr
