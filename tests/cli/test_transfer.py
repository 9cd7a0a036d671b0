"""`voicecall transfer`, the `voicecall.transfer` RPC and the tool's `transfer_call`, against a
real `voicecall serve` on the mock carrier (whose transfer targets all answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, mock_config, stop, wait_for_port, write_config
from tests.support import free_port, wait_until
from voice_call.agent.tool import run_tool, tool_schema
from voice_call.client.rpc import RpcClient
from voice_call.config import load_config


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Cli]:
    port = free_port()
    config = write_config(tmp_path / "config.json5", mock_config(port))
    cli = Cli(base_env(tmp_path), config)
    proc = cli.popen("serve")
    try:
        wait_for_port(proc, port)
        yield cli
    finally:
        stop(proc)


def _live_call(cli: Cli) -> str:
    call_id = str(cli.json("call", "--mode", "conversation", "--message", "Hello")["callId"])

    async def live() -> bool:
        return cli.json("status", "--call-id", call_id)["call"]["state"] == "listening"

    asyncio.run(wait_until(live))
    return call_id


def test_cli_transfer_cold_then_status_shows_it(served: Cli) -> None:
    cli = served
    call_id = _live_call(cli)
    done = cli.run("transfer", call_id, "+15555550777", "--say", "Putting you through.")
    assert done.returncode == 0, done.stderr
    assert "Transferring to +15555550777" in done.stdout

    async def transferred() -> bool:
        call = cli.json("status", "--call-id", call_id, "--full")["call"]
        return call["metadata"].get("transfer", {}).get("status") == "bridged"

    asyncio.run(wait_until(transferred))
    call = cli.json("status", "--call-id", call_id, "--full")["call"]
    assert call["state"] == "completed" and call["metadata"]["transferred"] is True
    assert call["metadata"]["transfer"]["mode"] == "cold"


def test_cli_transfer_warm_over_json(served: Cli) -> None:
    cli = served
    call_id = _live_call(cli)
    reply = cli.json("transfer", call_id, "sip:desk@pbx.example.com", "--warm")
    assert reply == {
        "success": True,
        "callId": call_id,
        "to": "sip:desk@pbx.example.com",
        "mode": "warm",
        "status": "dialing",
    }


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("+19005550100",), "denyPrefixes"),
        (("agent-desk",), "E.164 number"),
        (("+15555550777", "--say", ""), "say"),
    ],
)
def test_cli_transfer_refusals_are_usage_errors(
    served: Cli, args: tuple[str, ...], words: str
) -> None:
    cli = served
    call_id = _live_call(cli)
    done = cli.run("transfer", call_id, *args)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert "transfer" not in cli.json("status", "--call-id", call_id, "--full")["call"]["metadata"]


def test_cli_transfer_of_an_unknown_call_fails(served: Cli) -> None:
    done = served.run("transfer", "no-such-call", "+15555550777")
    assert done.returncode == 1 and "no-such-call" in done.stderr


def test_rpc_and_tool_validation(served: Cli, tmp_path: Path) -> None:
    cli = served
    call_id = _live_call(cli)
    assert cli.config is not None
    config = load_config(cli.config)
    client = RpcClient.from_home(config, tmp_path / "state")

    async def run(args: dict[str, Any]) -> dict[str, Any]:
        return await run_tool(args, client)

    def tool(**args: Any) -> dict[str, Any]:
        return asyncio.run(run({"action": "transfer_call", **args}))

    assert (
        "transfer_call" in tool_schema()["function"]["parameters"]["properties"]["action"]["enum"]
    )
    assert tool(callId=call_id) == {"error": "transfer_call needs to"}
    assert (
        "mode must be cold or warm"
        in tool(callId=call_id, to="+15555550777", mode="notify")["error"]
    )
    assert "denyPrefixes" in tool(callId=call_id, to="+19005550100")["error"]
    with pytest.raises(Exception, match="mode"):
        client.call_sync("voicecall.transfer", {"callId": call_id, "to": "+1555", "mode": "x"})
    with pytest.raises(Exception, match="to"):
        client.call_sync("voicecall.transfer", {"callId": call_id})
    ok = tool(callId=call_id, to="+15555550777", mode="warm", say="One moment.")
    assert ok["success"] is True and ok["mode"] == "warm"
