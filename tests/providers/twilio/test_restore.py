"""Restart mid-call: non-terminal Twilio calls are reconciled with `GET Calls/{sid}.json`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.providers.twilio.stack import LINES, script, twilio_stack
from voice_call.models import Speaker

GREETING = "Hello, this is the garage about your car."


async def test_live_call_is_kept_across_a_restart_and_carries_on(tmp_path: Path) -> None:
    callee = script(replies=("Hello?", *LINES))
    async with twilio_stack(tmp_path, callee) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        await stack.wait_record(
            call_id, lambda r: any(e.speaker == Speaker.USER for e in r.transcript)
        )
        await stack.restart()
        assert stack.runtime.restored == {"kept": 1}
        reply = await stack.call("voicecall.continue", callId=call_id, message="Still there?")
        assert reply["transcript"] == LINES[0]
        record = await stack.record(call_id)
        assert stack.emulated(record).ended.is_set() is False
        await stack.call("voicecall.end", callId=call_id)
        assert (await stack.wait_ended(call_id)).end_reason.value == "hangup-bot"  # type: ignore[union-attr]


async def test_call_that_ended_while_we_were_down_is_closed_on_restore(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, script(silent=True)) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_state(call_id, "listening")
        await stack.server.stop()  # down: the completed callback finds nobody
        assert record.provider_call_id is not None
        await stack.emu.hangup(record.provider_call_id)
        call = stack.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 5)
        assert stack.hooks("status")[-1].status_code is None
        await stack.restart()
        assert stack.runtime.restored == {"ended": 1}
        ended = await stack.record(call_id)
        assert ended.end_reason is not None and ended.end_reason.value == "completed"
        assert ended.metadata["restoreOutcome"] == "carrier-completed"
