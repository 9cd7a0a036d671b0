"""Inbound Twilio calls end to end: the number's Voice URL is our webhook.

Accepted callers are answered (a Redirect straight back), greeted with the route's greeting,
voice and language, and answered by the auto-responder; refused callers get `<Reject>` and no
REST call; calls we do not know get an empty `<Response/>`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.providers.twilio.stack import APP_NUMBER, CALLER, LINES, twilio_stack
from tests.support import wait_until
from voice_call.models import Direction, Speaker

ROUTE_GREETING = "Thanks for calling the bakery. What can I get you?"


async def _true(value: bool) -> bool:
    return value


async def test_allowed_caller_is_greeted_by_route_and_answered(tmp_path: Path) -> None:
    settings = {
        "inboundPolicy": "allowlist",
        "allowFrom": ["+1 (555) 000-3000"],  # normalised before comparison
        "numbers": {
            APP_NUMBER: {"inboundGreeting": ROUTE_GREETING, "voice": "onyx", "language": "en-GB"}
        },
        "responder": {"provider": "echo"},
    }
    async with twilio_stack(tmp_path, **settings) as stack:
        call = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        record = None

        async def registered() -> bool:
            nonlocal record
            record = await stack.by_sid(call.id)
            return record is not None

        await wait_until(registered)
        assert record is not None
        call_id = record.call_id
        record = await stack.wait_record(
            call_id, lambda r: sum(e.speaker == Speaker.USER for e in r.transcript) == 3
        )
        await wait_until(lambda: _true(len(call.callee.heard) == 4))
        assert call.callee.heard == [ROUTE_GREETING] + [f"You said: {line}" for line in LINES]
        assert record.direction == Direction.INBOUND and record.from_number == CALLER
        assert record.to_number == APP_NUMBER
        assert record.metadata["numberRouteKey"] == APP_NUMBER
        # the route's voice (an OpenAI name, mapped to Polly) and language reach the TwiML
        twiml = stack.updates(call.id)[0]["Twiml"]
        assert 'voice="Polly.Brian"' in twiml and 'language="en-GB"' in twiml
        assert ROUTE_GREETING in twiml
        # the Voice URL request was answered with a Redirect that answers the call
        voice = stack.hooks("voice", call.id)[0]
        assert "<Redirect" in voice.response_body and "type=answered" in voice.response_body
        await stack.call("voicecall.end", callId=call_id)
        await asyncio.wait_for(call.ended.wait(), 5)
        ended = await stack.wait_ended(call_id)
        assert ended.end_reason is not None and ended.end_reason.value == "hangup-bot"


@pytest.mark.parametrize(
    "settings",
    [
        {"inboundPolicy": "disabled"},
        {"inboundPolicy": "allowlist", "allowFrom": ["+15550009999"]},
    ],
    ids=["disabled", "not-in-allowlist"],
)
async def test_refused_caller_gets_reject(tmp_path: Path, settings: dict[str, object]) -> None:
    async with twilio_stack(tmp_path, **settings) as stack:
        call = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        await asyncio.wait_for(call.ended.wait(), 5)
        assert call.hangup_cause == "reject" and call.answered_at is None
        assert call.callee.heard == []
        voice = stack.hooks("voice", call.id)[0]
        assert '<Reject reason="rejected" />' in voice.response_body
        record = await stack.by_sid(call.id)
        assert record is not None and record.terminal
        assert record.end_reason is not None and record.end_reason.value == "hangup-bot"
        assert record.metadata["rejectionReason"] == "inbound-policy"
        assert stack.updates(call.id) == []  # refused by the reply, not over REST
        # the number's status callback (no-answer) changes nothing on the ended record
        await stack.emu.webhooks.wait_for(lambda h: h.kind == "status")
        await stack.runtime.manager.settle()
        assert (await stack.record(record.call_id)).end_reason == record.end_reason


async def test_open_policy_uses_the_default_greeting(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, inboundPolicy="open") as stack:
        call = await stack.emu.place_inbound("anonymous", APP_NUMBER)
        await wait_until(lambda: _true(len(call.callee.heard) >= 1))
        assert call.callee.heard[0] == "Hello! How can I help you today?"
        record = await stack.by_sid(call.id)
        assert record is not None and record.from_number == "anonymous"
        await stack.call("voicecall.end", callId=record.call_id)


async def test_unknown_call_gets_an_empty_response(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        url = f"{stack.webhook}?type=gather&callId=nope"
        params = {"CallSid": "CA" + "0" * 32, "CallStatus": "in-progress", "SpeechResult": "hi"}
        response = await stack.post(url, params, stack.sign(url, params))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/xml")
        assert response.text.endswith("<Response />")
        assert await stack.runtime.store.list_recent() == []
