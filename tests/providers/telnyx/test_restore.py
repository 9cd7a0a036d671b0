"""Restart mid-call: restore asks Telnyx (`GET /v2/calls/{id}`) and keeps or ends each call."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.providers.telnyx.stack import CALLEE, commands, telnyx_stack
from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.models import CallState
from voice_call.providers.telnyx.provider import build
from voice_call.providers.telnyx.rest import TelnyxRest
from voice_call.security.signatures import telnyx as signatures
from voice_call.sim.callee import CalleeScript

SCRIPT = CalleeScript(
    replies=("Yes, speaking.", "Still here."), answer_delay_ms=100, reply_delay_ms=100
)


async def test_restart_mid_call_keeps_a_live_call_and_the_conversation_goes_on(
    tmp_path: Path,
) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello, is that Sam?", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        leg = await stack.leg(call_id)

        await stack.restart()
        assert stack.runtime.restored == {"kept": 1}
        logged = await stack.runtime.store.events(call_id=call_id)
        restored = [e for e in logged if e.type == "call.restored"]
        assert restored[-1].data == {"outcome": "kept", "carrierStatus": "in-progress"}

        reply = await stack.call("voicecall.continue", callId=call_id, message="Are you there?")
        assert reply["transcript"] == "Still here."
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.record(call_id)
        assert record.state == CallState.HANGUP_BOT
        await stack.emu.wait_ended(leg.id)
        assert leg.call.hangup_cause == "normal_clearing"
        assert len(commands(leg, "speak")) == 2  # the greeting was not said again


async def test_call_that_ended_while_we_were_down_is_closed_on_restore(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello there.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        leg = await stack.leg(call_id)

        await stack.server.stop()
        await stack.emu.remote_hangup(leg.id)  # its call.hangup cannot be delivered
        await stack.emu.wait_ended(leg.id)
        await stack.restart()  # stopping twice is harmless

        assert stack.runtime.restored == {"ended": 1}
        record = await stack.record(call_id)
        assert record.state == CallState.COMPLETED
        assert record.metadata["restoreOutcome"] == "carrier-completed"


async def test_status_mapping(tmp_path: Path) -> None:
    """is_alive true → live; false → ended; 404 → ended; no field / 5xx / no network → unknown."""
    replies = {
        "v3:alive": httpx.Response(200, json={"data": {"is_alive": True}}),
        "v3:over": httpx.Response(200, json={"data": {"is_alive": False}}),
        "v3:gone": httpx.Response(404, json={"errors": [{"code": "10005", "title": "Not found"}]}),
        "v3:odd": httpx.Response(200, json={"data": {"call_control_id": "v3:odd"}}),
        "v3:down": httpx.Response(503, text="maintenance"),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        pid = request.url.path.rsplit("/", 1)[-1].replace("%3A", ":")
        if pid == "v3:offline":
            raise httpx.ConnectError("refused", request=request)
        return replies[pid]

    config = parse_config(
        {
            "provider": "telnyx",
            "fromNumber": "+15550001000",
            "telnyx": {
                "apiKey": "KEY",
                "connectionId": "c",
                "publicKey": signatures.generate_keypair()[1],
            },
        },
        env={},
    )
    provider = build(config, RealClock(), tmp_path)
    await provider.rest.close()
    provider.rest = TelnyxRest("KEY", transport=httpx.MockTransport(handler), retry_pause_s=0)
    try:
        seen = {pid: await provider.get_call_status(pid) for pid in [*replies, "v3:offline"]}
    finally:
        await provider.close()
    assert (seen["v3:alive"].terminal, seen["v3:alive"].unknown) == (False, False)
    assert (seen["v3:over"].terminal, seen["v3:over"].status) == (True, "completed")
    assert (seen["v3:gone"].terminal, seen["v3:gone"].status) == (True, "not-found")
    for pid in ("v3:odd", "v3:down", "v3:offline"):
        assert seen[pid].unknown and not seen[pid].terminal, pid
