"""Per-number routing on Twilio, through its emulator: a call to SALES hears SALES's greeting in
its voice and language and is answered by SALES's own responder with SALES's prompt; SUPPORT
refuses a caller not on its own allowFrom while SALES stays open to the same caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.providers.number_routes_support import (
    SALES_GREETING,
    SALES_PROMPT,
    SALES_REPLY,
    routed_config,
    routed_model,
)
from tests.providers.twilio.stack import APP_NUMBER, CALLER, LINES, twilio_stack
from tests.support import wait_until

SUPPORT = "+15550004000"


async def test_a_routed_number_gets_its_greeting_prompt_voice_and_policy(tmp_path: Path) -> None:
    async with routed_model() as (fake, log):
        config = routed_config(fake, APP_NUMBER, SUPPORT, voice="Polly.Amy", language="en-GB")
        async with twilio_stack(tmp_path, **config) as stack:
            refused = await stack.emu.place_inbound(CALLER, SUPPORT)
            await asyncio.wait_for(refused.ended.wait(), 5)
            assert refused.hangup_cause == "reject" and refused.callee.heard == []

            call = await stack.emu.place_inbound(CALLER, APP_NUMBER)
            await wait_until(lambda: _at_least(call.callee.heard, 2))
            assert call.callee.heard[:2] == [SALES_GREETING, SALES_REPLY]
            assert log.prompts and log.prompts[0].startswith(SALES_PROMPT)
            twiml = stack.updates(call.id)[0]["Twiml"]
            assert 'voice="Polly.Amy"' in twiml and 'language="en-GB"' in twiml
            assert SALES_GREETING in twiml
            record = await stack.by_sid(call.id)
            assert record is not None and record.metadata["numberRouteKey"] == APP_NUMBER
            said = [e.text for e in record.transcript]
            assert LINES[0] in said
            await stack.call("voicecall.end", callId=record.call_id)
            await asyncio.wait_for(call.ended.wait(), 5)


async def _at_least(items: list[str], count: int) -> bool:
    return len(items) >= count
