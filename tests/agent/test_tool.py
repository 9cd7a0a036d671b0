"""The `voice_call` agent tool: schema shape, each action against a real server, and errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, wait_until
from voice_call.agent.tool import ACTIONS, TOOL_NAME, run_tool, run_tool_sync, tool_schema
from voice_call.client.rpc import RpcClient
from voice_call.config import parse_config
from voice_call.runtime import Runtime
from voice_call.server.serve import start_background

REPLIES = ["Hi, who's calling?", "Sure, that works.", "Bye now."]
ALL_ACTIONS = [
    "initiate_call",
    "continue_call",
    "speak_to_user",
    "send_dtmf",
    "end_call",
    "transfer_call",
    "get_status",
]


def test_schema_is_an_openai_function() -> None:
    schema = tool_schema()
    json.dumps(schema)  # plain JSON
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == TOOL_NAME == "voice_call"
    assert isinstance(function["description"], str) and function["description"]
    params = function["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["action"]
    assert params["additionalProperties"] is False
    assert "oneOf" not in params and "anyOf" not in params
    props = params["properties"]
    assert props["action"]["enum"] == ALL_ACTIONS == list(ACTIONS)
    assert set(props) == {
        "action",
        "message",
        "to",
        "mode",
        "sessionKey",
        "dtmfSequence",
        "record",
        "amd",
        "language",
        "callId",
        "digits",
        "say",
    }
    assert props["mode"]["enum"] == ["notify", "conversation", "cold", "warm"]
    for name, prop in props.items():
        assert prop["type"] == ("boolean" if name == "record" else "string"), name
        assert prop.get("description"), name
    for action in ALL_ACTIONS:  # the description says what each action needs
        assert action in function["description"]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[RpcClient]:
    config = parse_config(
        {
            "provider": "mock",
            "toNumber": "+15555550123",
            "serve": {"port": 0},
            "maxConcurrentCalls": 3,
            "responder": {"provider": "none"},
            "mock": {"answerDelayMs": 10, "replyDelayMs": 30, "replies": REPLIES},
        },
        env={},
    )
    runtime = Runtime(config, tmp_path)
    server = await start_background(runtime)
    try:
        yield RpcClient(server.url, runtime.rpc_token)
    finally:
        await server.stop()


async def test_every_action_against_a_server(client: RpcClient) -> None:
    started = await run_tool(
        {"action": "initiate_call", "message": "Hello!", "mode": "conversation"}, client
    )
    assert set(started) == {"callId", "initiated"} and started["initiated"] is True
    call_id = started["callId"]

    async def first_reply() -> bool:
        status = await run_tool({"action": "get_status", "callId": call_id}, client)
        assert status["found"] is True
        full = await client.call("voicecall.status", {"callId": call_id, "full": True})
        return any(e["speaker"] == "user" for e in full["call"]["transcript"])

    await wait_until(first_reply)

    reply = await run_tool(
        {"action": "continue_call", "callId": call_id, "message": "Tuesday?"}, client
    )
    assert reply == {"success": True, "transcript": REPLIES[1]}
    assert await run_tool(
        {"action": "speak_to_user", "callId": call_id, "message": "Noted."}, client
    ) == {"success": True}
    dtmf = {"action": "send_dtmf", "callId": call_id, "digits": "1w2#"}
    assert await run_tool(dtmf, client) == {"success": True}

    status = await run_tool({"action": "get_status", "callId": call_id}, client)
    assert status["found"] is True
    assert status["call"]["callId"] == call_id
    assert status["call"]["state"] in ("speaking", "listening", "active")
    listing = await run_tool({"action": "get_status"}, client)
    assert [c["callId"] for c in listing["calls"]] == [call_id]

    assert await run_tool({"action": "end_call", "callId": call_id}, client) == {"success": True}
    ended = await run_tool({"action": "get_status", "callId": call_id}, client)
    assert ended["call"]["state"] == "hangup-bot"
    assert ended["call"]["endReason"] == "hangup-bot"

    again = await run_tool({"action": "speak_to_user", "callId": call_id, "message": "hi"}, client)
    assert set(again) == {"error"} and "not active" in again["error"]


async def test_initiate_uses_configured_number_and_default_mode(client: RpcClient) -> None:
    started = await run_tool({"action": "initiate_call", "message": "Reminder"}, client)
    status = await run_tool({"action": "get_status", "callId": started["callId"]}, client)
    assert status["call"]["to"] == "+15555550123"
    assert status["call"]["mode"] == "notify"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ("not a dict", "JSON object"),
        ({}, "action is required"),
        ({"action": "fly"}, "unknown action"),
        ({"action": "initiate_call"}, "needs message"),
        ({"action": "initiate_call", "message": "  "}, "message"),
        ({"action": "initiate_call", "message": "hi", "mode": "loud"}, "mode"),
        ({"action": "continue_call", "message": "hi"}, "needs callId"),
        ({"action": "send_dtmf", "callId": "x"}, "needs digits"),
        ({"action": "end_call", "callId": 42}, "callId must be a string"),
        ({"action": "end_call", "callId": "x", "sid": "y"}, "unknown field"),
        ({"action": "initiate_call", "message": "hi", "to": "555"}, "E.164"),
        ({"action": "send_dtmf", "callId": "x", "digits": "12ab"}, "digits"),
    ],
)
async def test_bad_args_are_errors(client: RpcClient, args: Any, words: str) -> None:
    result = await run_tool(args, client)
    assert set(result) == {"error"}, result
    assert words in result["error"]


@pytest.mark.parametrize(
    "args",
    [
        {"action": "continue_call", "callId": "nope", "message": "hi"},
        {"action": "speak_to_user", "callId": "nope", "message": "hi"},
        {"action": "send_dtmf", "callId": "nope", "digits": "1"},
        {"action": "end_call", "callId": "nope"},
    ],
)
async def test_unknown_call_is_an_error(client: RpcClient, args: dict[str, Any]) -> None:
    result = await run_tool(args, client)
    assert set(result) == {"error"}
    assert "nope" in result["error"]


async def test_status_of_unknown_call_is_not_found(client: RpcClient) -> None:
    assert await run_tool({"action": "get_status", "callId": "nope"}, client) == {"found": False}


async def test_server_down_is_an_error() -> None:
    client = RpcClient(f"http://127.0.0.1:{free_port()}", "token")
    result = await run_tool({"action": "get_status"}, client)
    assert set(result) == {"error"}
    assert "voicecall serve" in result["error"]


def test_run_tool_sync_without_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECALL_HOME", str(tmp_path))
    config = tmp_path / "config.json5"
    config.write_text(json.dumps({"serve": {"port": free_port()}}), encoding="utf-8")
    result = run_tool_sync({"action": "get_status"}, config)
    assert set(result) == {"error"}
    bad = tmp_path / "bad.json5"
    bad.write_text('{provider: "nope"}', encoding="utf-8")
    result = run_tool_sync({"action": "get_status"}, bad)
    assert set(result) == {"error"} and "provider" in result["error"]
    unknown = run_tool_sync({"action": "nope"}, config)
    assert set(unknown) == {"error"} and "unknown action" in unknown["error"]


def test_run_tool_sync_refuses_while_the_service_is_switched_off(tmp_path: Path) -> None:
    config = tmp_path / "config.json5"
    config.write_text(json.dumps({"enabled": False}), encoding="utf-8")
    result = run_tool_sync({"action": "get_status"}, config)
    assert result == {
        "error": "the voice-call service is switched off (enabled is false in the config)"
        " — set it to true to use the voice_call tool"
    }


async def test_run_tool_sync_finds_the_running_server(
    client: RpcClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fixture's server uses tmp_path as its state folder and announces itself there.
    monkeypatch.setenv("VOICECALL_HOME", str(tmp_path))
    config = tmp_path / "config.json5"
    config.write_text("{}", encoding="utf-8")
    args = {"action": "initiate_call", "message": "Hi from Python"}
    started = await asyncio.to_thread(run_tool_sync, args, config)
    assert started["initiated"] is True
    status = await asyncio.to_thread(
        run_tool_sync, {"action": "get_status", "callId": started["callId"]}, config
    )
    assert status["found"] is True and status["call"]["to"] == "+15555550123"


async def test_initiate_takes_the_calls_language_and_refuses_a_bad_one(
    client: RpcClient,
) -> None:
    started = await run_tool(
        {"action": "initiate_call", "message": "您好", "language": "zh-tw"}, client
    )
    full = await client.call("voicecall.status", {"callId": started["callId"], "full": True})
    assert full["call"]["metadata"]["language"] == "zh-TW"
    refused = await run_tool(
        {"action": "initiate_call", "message": "Hi", "language": "not a tag!"}, client
    )
    assert set(refused) == {"error"} and "BCP-47" in refused["error"]
