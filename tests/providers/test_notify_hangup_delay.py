"""A notify call ends alike on every carrier: the message is heard whole, then the call is hung
up by us `outbound.notifyHangupDelaySec` after its playback finished (`hangup-bot`).

Measured on the emulator's side: when the callee had heard the message to its end, and when the
carrier ended the call. "Not before the delay" is strict; the upper bound is generous (a loaded
2-core machine).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.providers.carriers import CALLEE, CARRIERS, carrier_stack
from voice_call.models import CallState, Speaker
from voice_call.sim.callee import CalleeScript

MESSAGE = "Your order is ready."
SLACK_S = 4.0  # webhook round trips and a busy event loop, at most


@pytest.mark.parametrize("delay", [0, 1])
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_notify_hangs_up_the_delay_after_the_message_ended(
    tmp_path: Path, carrier: str, delay: int
) -> None:
    script = CalleeScript(answer_delay_ms=200)
    # a fifth of real time: the message takes ~0.3 s to say; the carrier's own backstop
    # hang-up (30 s after the delay, scaled) stays far behind ours
    async with carrier_stack(
        carrier, tmp_path, script, scale=0.2, outbound={"notifyHangupDelaySec": delay}
    ) as c:
        started = await c.call("voicecall.initiate", to=CALLEE, message=MESSAGE, mode="notify")
        record = await c.wait_ended(started["callId"])
        call = c.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 10)

        assert call.callee.heard == [MESSAGE]  # heard once, whole
        assert record.end_reason == CallState.HANGUP_BOT  # we hung up, on every carrier
        assert [e.text for e in record.transcript if e.speaker == Speaker.BOT] == [MESSAGE]
        assert call.ended_at is not None
        gap = call.ended_at - c.heard_whole_at(call)
        assert delay <= gap < delay + SLACK_S, gap
