"""Inbound Telnyx calls end to end: answered (really), greeted per number, refused by policy."""

from __future__ import annotations

import json
from pathlib import Path

from tests.providers.telnyx.stack import (
    APP_NUMBER,
    CALLER,
    commands,
    decoded_state,
    hooks_of,
    telnyx_stack,
)
from tests.support import wait_until
from voice_call.models import CallState, Direction
from voice_call.sim.callee import CalleeScript

ROUTES = {
    APP_NUMBER: {
        "inboundGreeting": "Thanks for calling Acme support.",
        "voice": "AWS.Polly.Amy-Neural",
        "language": "en-GB",
    }
}


async def test_inbound_allowed_is_answered_greeted_and_auto_responded(tmp_path: Path) -> None:
    script = CalleeScript(replies=("My router is broken.",), reply_delay_ms=100)
    async with telnyx_stack(
        tmp_path,
        script=script,
        inboundPolicy="allowlist",
        allowFrom=[CALLER],
        numbers=ROUTES,
        responder={"provider": "echo"},
    ) as stack:
        emulated = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        leg = stack.emu.leg(emulated.id)
        await wait_until(lambda: len(leg.callee.heard) >= 2)  # greeting, then the reply

        assert leg.callee.heard == [
            "Thanks for calling Acme support.",
            "You said: My router is broken.",
        ]
        answer = commands(leg, "answer")
        assert len(answer) == 1  # answered once: the seed's inbound calls rang forever
        call_id = decoded_state(answer[0]["body"]["client_state"])
        record = await stack.record(call_id)
        assert record.direction == Direction.INBOUND
        assert (record.from_number, record.to_number) == (CALLER, APP_NUMBER)
        assert record.provider_call_id == leg.id
        assert record.metadata["numberRouteKey"] == APP_NUMBER
        assert record.answered_at is not None
        for speak in commands(leg, "speak"):  # the number's own voice and language
            assert speak["body"]["voice"] == "AWS.Polly.Amy-Neural"
            assert speak["body"]["language"] == "en-GB"
        assert commands(leg, "transcription_start")[0]["body"]["language"] == "en-GB"

        await stack.emu.remote_hangup(leg.id)  # the caller hangs up
        record = await stack.wait_ended(call_id)
        assert record.state == CallState.COMPLETED
        assert [e.text for e in record.transcript] == [
            "Thanks for calling Acme support.",
            "My router is broken.",
            "You said: My router is broken.",
        ]


async def test_inbound_refused_by_policy_is_rejected_not_left_ringing(tmp_path: Path) -> None:
    async with telnyx_stack(
        tmp_path, inboundPolicy="allowlist", allowFrom=["+15559998888"], numbers=ROUTES
    ) as stack:
        emulated = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        ended = await stack.emu.wait_ended(emulated.id, timeout=5)
        leg = stack.emu.leg(emulated.id)

        assert ended.hangup_cause == "call_rejected"
        assert [c["action"] for c in commands(leg)] == ["reject"]
        assert leg.callee.heard == []
        initiated = hooks_of(stack.emu, leg.id)[0]
        assert initiated.kind == "call.initiated"
        assert json.loads(initiated.response_body) == {
            "results": ["rejected: caller not in allowFrom"]
        }

        [record] = await stack.runtime.store.list_recent()
        assert record.provider_call_id == leg.id
        assert record.state == CallState.HANGUP_BOT
        assert record.metadata["rejectionReason"] == "inbound-policy"
        assert record.answered_at is None
        # Telnyx's hang-up, logged as ignored: the refused call was recorded already ended
        await stack.wait_event(record.call_id, "call.ignored")


async def test_inbound_disabled_by_default(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path) as stack:
        emulated = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        ended = await stack.emu.wait_ended(emulated.id, timeout=5)
        assert ended.hangup_cause == "call_rejected"
        assert not commands(stack.emu.leg(emulated.id), "answer")
