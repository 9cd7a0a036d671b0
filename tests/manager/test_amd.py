"""Answering-machine detection on the mock carrier: who answered lands on the record, a machine
never hears the conversation, and voicemail-drop leaves the message after the beep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.manager.stack import harness
from tests.support import wait_until
from voice_call.agent.tool import run_tool, tool_schema
from voice_call.cli import call as cli_call
from voice_call.cli.main import cli as voicecall
from voice_call.client.rpc import RpcClient
from voice_call.config import ConfigError, parse_config
from voice_call.errors import InvalidInput
from voice_call.models import CallState, EventType, ManagerEntry, Mode
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer

TO = "+15555550123"
MACHINE = {"outcome": "machine", "answerDelayMs": 1000, "greetingMs": 4000}


def amd(mode: str, **more: Any) -> dict[str, Any]:
    return {"outbound": {"amd": {"enabled": True, "mode": mode, **more}}}


async def test_voicemail_drop_leaves_the_message_after_the_beep(tmp_path: Path) -> None:
    async with harness(tmp_path, {**amd("voicemail-drop"), "mock": MACHINE}) as h:
        call = await h.manager.initiate(to=None, message="Hi, it's Sam", mode=Mode.CONVERSATION)
        await h.advance(1.0)  # answered: the greeting waits for the verdict
        await h.advance(0.5)  # verdict: a machine
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.metadata["amd"]["answeredBy"] == "machine"
        assert h.provider.callees[f"mock-{call.call_id}"].heard == []  # not into the greeting
        await h.advance(3.5)  # the beep
        await h.advance(0.5)  # the message was said
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.VOICEMAIL
        machine = h.provider.machines[f"mock-{call.call_id}"]
        assert [text for text, _ in machine.started] == ["Hi, it's Sam"]
        assert all(0 <= offset < 0.5 for offset in machine.offsets())
        assert rec.metadata["amd"]["voicemail"] == "left"
        kinds = [e.type for e in await h.store.events(call_id=call.call_id)]
        assert EventType.AMD in kinds and EventType.MACHINE_GREETING_ENDED in kinds
        assert ManagerEntry.VOICEMAIL in kinds and ManagerEntry.GREETED not in kinds


async def test_the_voicemail_message_can_differ_from_the_calls_message(tmp_path: Path) -> None:
    overrides = {**amd("voicemail-drop", message="Please call us back."), "mock": MACHINE}
    async with harness(tmp_path, overrides) as h:
        call = await h.manager.initiate(to=None, message="Hello there", mode=Mode.NOTIFY)
        await h.advance(6.0)
        await h.advance(0.5)
        machine = h.provider.machines[f"mock-{call.call_id}"]
        assert [text for text, _ in machine.started] == ["Please call us back."]
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.VOICEMAIL


async def test_detect_ends_a_machine_answered_call_as_voicemail_unsaid(tmp_path: Path) -> None:
    async with harness(tmp_path, {**amd("detect"), "mock": MACHINE}) as h:
        call = await h.manager.initiate(to=None, message="Hi, it's Sam", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        await h.advance(0.5)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.VOICEMAIL
        assert rec.metadata["amd"] == {"mode": "detect", "answeredBy": "machine"}
        assert h.provider.machines[f"mock-{call.call_id}"].started == []
        assert h.ledger()[-1]["op"] == "hangup"


async def test_a_person_gets_the_conversation_after_the_verdict(tmp_path: Path) -> None:
    overrides = {**amd("voicemail-drop"), "mock": {"answerDelayMs": 1000}}
    async with harness(tmp_path, overrides) as h:
        call = await h.manager.initiate(to=None, message="Hi, it's Sam", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        callee = h.provider.callees[f"mock-{call.call_id}"]
        assert callee.heard == []  # answered, verdict pending
        await h.advance(0.5)
        assert callee.heard == ["Hi, it's Sam"]
        await h.advance(0.6)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.metadata["amd"]["answeredBy"] == "human"
        assert [e.text for e in rec.transcript] == ["Hi, it's Sam", "first reply"]


async def test_a_verdict_that_never_comes_counts_as_a_person(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"answerDelayMs": 1000}}) as h:
        # the carrier was asked for a verdict (per call) but says nothing: timeoutMs + grace
        h.provider._detect = lambda *args: None
        call = await h.manager.initiate(
            to=None, message="Hi", mode=Mode.CONVERSATION, amd_choice="detect"
        )
        await h.advance(1.0)
        await h.advance(30.0)
        callee = h.provider.callees[f"mock-{call.call_id}"]
        assert callee.heard == []
        await h.advance(5.1)
        assert callee.heard == ["Hi"]
        rec = await h.manager.get(call.call_id)
        assert rec is not None
        assert rec.metadata["amd"] == {"mode": "detect", "answeredBy": "unknown", "timedOut": True}


async def test_a_fax_ends_the_call_as_failed(tmp_path: Path) -> None:
    async with harness(
        tmp_path, {**amd("voicemail-drop"), "mock": {**MACHINE, "outcome": "fax"}}
    ) as h:
        call = await h.manager.initiate(to=None, message="Hi", mode=Mode.CONVERSATION)
        await h.advance(1.5)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.FAILED
        assert rec.metadata["error"] == "a fax machine answered"


async def test_amd_false_turns_detection_off_for_one_call(tmp_path: Path) -> None:
    async with harness(tmp_path, {**amd("detect"), "mock": MACHINE}) as h:
        call = await h.manager.initiate(
            to=None, message="Hi", mode=Mode.CONVERSATION, amd_choice=False
        )
        await h.advance(1.0)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and "amd" not in rec.metadata
        assert h.provider.callees[f"mock-{call.call_id}"].heard == ["Hi"]  # into the greeting


async def test_a_bad_per_call_amd_is_refused_before_anything_is_dialled(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        with pytest.raises(InvalidInput, match='amd must be "detect", "voicemail-drop" or false'):
            await h.manager.initiate(to=None, message="Hi", amd_choice="maybe")
        assert h.ledger() == []


@pytest.mark.parametrize(
    ("amd_config", "where"),
    [
        ({"mode": "voicemail"}, "outbound.amd.mode"),
        ({"timeoutMs": 500}, "outbound.amd.timeoutMs"),
        ({"enabled": "yes"}, "outbound.amd.enabled"),
        ({"beep": True}, "outbound.amd.beep"),
    ],
)
def test_bad_amd_settings_are_config_errors(amd_config: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        parse_config({"provider": "mock", "outbound": {"amd": amd_config}}, env={})


# ---- the faces: RPC, the agent tool, the CLI


async def test_rpc_takes_amd_and_status_shows_who_answered(rpc: Any, vc_runtime: Runtime) -> None:
    reply = await rpc(
        "voicecall.initiate",
        {"to": TO, "message": "Hi", "mode": "conversation", "amd": "voicemail-drop"},
    )
    call_id = reply["result"]["callId"]
    record = await vc_runtime.store.get(call_id)
    assert record is not None and record.metadata["amd"]["mode"] == "voicemail-drop"

    async def verdict() -> bool:
        status = await rpc("voicecall.status", {"callId": call_id})
        return bool(status["result"]["call"].get("answeredBy") == "human")

    await wait_until(verdict)
    bad = await rpc("voicecall.initiate", {"to": TO, "message": "Hi", "amd": "maybe"})
    assert "amd" in bad["error"]["message"] and "detect" in bad["error"]["message"]
    assert len(await vc_runtime.store.list_recent()) == 1  # the bad one changed nothing


async def test_the_agent_tool_takes_amd(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    props = tool_schema()["function"]["parameters"]["properties"]
    assert props["amd"]["enum"] == ["detect", "voicemail-drop", "off"]
    client = RpcClient(vc_server.url, vc_runtime.rpc_token)
    started = await run_tool(
        {"action": "initiate_call", "message": "Hi", "to": TO, "amd": "detect"}, client
    )
    record = await vc_runtime.store.get(started["callId"])
    assert record is not None and record.metadata["amd"] == {"mode": "detect"}
    bad = await run_tool({"action": "initiate_call", "message": "Hi", "amd": "yes"}, client)
    assert bad["error"].startswith("amd must be detect, voicemail-drop, off")


@pytest.mark.parametrize(("flag", "sent"), [("voicemail-drop", "voicemail-drop"), ("off", False)])
def test_the_cli_passes_amd(monkeypatch: pytest.MonkeyPatch, flag: str, sent: object) -> None:
    seen: list[dict[str, Any]] = []

    def fake_rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        return {"callId": "c1", "initiated": True}

    monkeypatch.setattr(cli_call, "rpc", fake_rpc)
    args = ["call", "--message", "Hi", "--amd", flag]
    result = CliRunner().invoke(voicecall, args, env={"VOICECALL_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert seen == [{"message": "Hi", "amd": sent}]
    refused = CliRunner().invoke(voicecall, [*args[:-1], "maybe"], env={"VOICECALL_CONFIG": ""})
    assert refused.exit_code == 2 and "maybe" in refused.output
