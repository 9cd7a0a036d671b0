"""Per-number routing on Telnyx, through its emulator: a call to SALES hears SALES's greeting in
its voice and language (`speak`, `transcription_start`) and is answered by SALES's own responder
with SALES's prompt; SUPPORT rejects a caller not on its own allowFrom while SALES stays open."""

from __future__ import annotations

from pathlib import Path

from tests.providers.number_routes_support import (
    SALES_GREETING,
    SALES_PROMPT,
    SALES_REPLY,
    routed_config,
    routed_model,
)
from tests.providers.telnyx.stack import APP_NUMBER, CALLER, commands, telnyx_stack
from tests.support import wait_until
from voice_call.sim.callee import CalleeScript

SUPPORT = "+15550004000"


async def test_a_routed_number_gets_its_greeting_prompt_voice_and_policy(tmp_path: Path) -> None:
    script = CalleeScript(replies=("Do you have a discount?",), reply_delay_ms=100)
    async with routed_model() as (fake, log):
        voice = "AWS.Polly.Amy-Neural"
        config = routed_config(fake, APP_NUMBER, SUPPORT, voice=voice, language="en-GB")
        async with telnyx_stack(tmp_path, script=script, **config) as stack:
            refused = await stack.emu.place_inbound(CALLER, SUPPORT)
            ended = await stack.emu.wait_ended(refused.id, timeout=5)
            assert ended.hangup_cause == "call_rejected"
            assert [c["action"] for c in commands(stack.emu.leg(refused.id))] == ["reject"]

            emulated = await stack.emu.place_inbound(CALLER, APP_NUMBER)
            leg = stack.emu.leg(emulated.id)
            await wait_until(lambda: len(leg.callee.heard) >= 2)
            assert leg.callee.heard[:2] == [SALES_GREETING, SALES_REPLY]
            assert log.prompts and log.prompts[0].startswith(SALES_PROMPT)
            speaks = commands(leg, "speak")
            assert speaks and all(
                (s["body"]["voice"], s["body"]["language"]) == (voice, "en-GB") for s in speaks
            )
            assert commands(leg, "transcription_start")[0]["body"]["language"] == "en-GB"
            await stack.emu.remote_hangup(leg.id)
            await stack.emu.wait_ended(leg.id, timeout=5)
