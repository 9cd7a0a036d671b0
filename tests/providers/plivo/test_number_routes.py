"""Per-number routing on Plivo, through its emulator: a call to SALES hears SALES's greeting in
its voice and language (`<Speak>`) and is answered by SALES's own responder with SALES's prompt;
SUPPORT rejects a caller not on its own allowFrom while SALES stays open to the same caller."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.providers.number_routes_support import (
    SALES_GREETING,
    SALES_PROMPT,
    SALES_REPLY,
    routed_config,
    routed_model,
)
from tests.providers.plivo.stack import APP_NUMBER, CALLER, plivo_stack
from voice_call.sim.callee import CalleeScript
from voice_call.sim.plivo.call import REJECTED

SUPPORT = "+15550004000"


def without_plus(number: str) -> str:
    return number.lstrip("+")  # Plivo writes numbers without the +


async def test_a_routed_number_gets_its_greeting_prompt_voice_and_policy(tmp_path: Path) -> None:
    script = CalleeScript(replies=("Do you have a discount?",), hangup_after_turns=1)
    async with routed_model() as (fake, log):
        config = routed_config(fake, APP_NUMBER, SUPPORT, voice="Polly.Amy", language="en-GB")
        async with plivo_stack(tmp_path, config=config) as stack:
            refused = await stack.emulator.place_inbound(
                without_plus(CALLER), without_plus(SUPPORT)
            )
            await stack.emulator.wait_ended(refused.id)
            assert refused.answered_at is None and refused.callee.heard == []
            assert stack.leg_by_uuid(refused.id).ended == REJECTED

            carrier = await stack.emulator.place_inbound(
                without_plus(CALLER), without_plus(APP_NUMBER), script
            )
            await stack.emulator.wait_ended(carrier.id)
            assert carrier.callee.heard[:2] == [SALES_GREETING, SALES_REPLY]
            assert log.prompts and log.prompts[0].startswith(SALES_PROMPT)
            speaks = [
                node
                for hook in stack.hooks("transfer", carrier.id)
                for node in ET.fromstring(hook.response_body).iter("Speak")
            ]
            assert speaks and all(
                node.attrib == {"voice": "Polly.Amy", "language": "en-GB"} for node in speaks
            )
