"""Our Plivo provider's DTMF, through our server, lands on the emulated call (issue 21 item 2)."""

from __future__ import annotations

from pathlib import Path

from tests.providers.plivo.stack import CALLEE, plivo_stack
from tests.support import wait_until
from voice_call.sim.callee import CalleeScript


async def test_voicecall_dtmf_reaches_the_plivo_callee(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=200, replies=("Hello?",), reply_delay_ms=200)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Joining the bridge.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        await stack.call("voicecall.dtmf", callId=call_id, digits="1234#")
        carrier = stack.carrier_call(await stack.record(call_id))
        await wait_until(lambda: carrier.callee.digits, 5, what="digits on the emulated call")
        assert carrier.callee.digits == ["1234#"]
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)
