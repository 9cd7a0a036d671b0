"""Inbound Plivo calls end to end: the application's answer URL is our webhook, policy decides."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.providers.plivo.stack import APP_NUMBER, CALLER, plivo_stack
from voice_call.models import CallRecord, CallState, Direction, Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.plivo.call import REJECTED


def without_plus(number: str) -> str:
    return number.lstrip("+")  # Plivo writes numbers without the +


class SentenceEcho:
    """The echo responder, streamed one sentence at a time as a model's reply would be."""

    async def stream(self, call: CallRecord, context: Any) -> AsyncIterator[str]:
        for sentence in re.findall(r"[^.!?]+[.!?]*", await self.respond(call) or ""):
            yield sentence.strip()

    async def respond(self, call: CallRecord) -> str | None:
        said = [e.text for e in call.transcript if e.speaker == Speaker.USER]
        return f"You said: {said[-1]}" if said else None


def turns(record: CallRecord) -> list[tuple[str, str]]:
    """The transcript with each side's consecutive lines (streamed sentences) joined."""
    out: list[tuple[str, str]] = []
    for entry in record.transcript:
        if out and out[-1][0] == entry.speaker:
            out[-1] = (entry.speaker, f"{out[-1][1]} {entry.text}")
        else:
            out.append((entry.speaker, entry.text))
    return out


async def test_inbound_call_on_a_routed_number_is_greeted_and_answered(tmp_path: Path) -> None:
    script = CalleeScript(
        replies=("I need a plumber. It is urgent!", "Tomorrow morning."), hangup_after_turns=2
    )
    config = {
        "inboundPolicy": "allowlist",
        "allowFrom": [CALLER],
        "responder": {"provider": "echo"},
        "numbers": {
            APP_NUMBER: {
                "inboundGreeting": "Thanks for calling Acme <Plumbing>.",
                "voice": "Polly.Amy",
                "language": "en-GB",
            }
        },
    }
    async with plivo_stack(tmp_path, config=config) as stack:
        stack.runtime.manager.responder = SentenceEcho()  # type: ignore[assignment]
        carrier = await stack.emulator.place_inbound(
            without_plus(CALLER), without_plus(APP_NUMBER), script
        )
        await stack.emulator.wait_ended(carrier.id)
        record = await stack.runtime.store.find_by_provider_call_id("plivo", carrier.id)
        assert record is not None
        record = await stack.wait_ended(record.call_id)
        assert record.direction == Direction.INBOUND
        assert (record.from_number, record.to_number) == (CALLER, APP_NUMBER)
        assert record.metadata["numberRouteKey"] == APP_NUMBER
        assert record.end_reason == CallState.HANGUP_USER
        assert turns(record) == [
            (Speaker.BOT, "Thanks for calling Acme <Plumbing>."),
            (Speaker.USER, "I need a plumber. It is urgent!"),
            (Speaker.BOT, "You said: I need a plumber. It is urgent!"),
            (Speaker.USER, "Tomorrow morning."),
            (Speaker.BOT, "You said: Tomorrow morning."),
        ]
        assert carrier.callee.heard == [
            "Thanks for calling Acme <Plumbing>.",
            "You said: I need a plumber. It is urgent!",  # both sentences, once, in order
            "You said: Tomorrow morning.",
        ]
        # The first answer answers by coming straight back; every Speak has the route's voice.
        first = ET.fromstring(stack.hooks("answer", carrier.id)[0].response_body)
        assert [child.tag for child in first] == ["Redirect"]
        speaks = [
            node
            for hook in stack.hooks("transfer", carrier.id)
            for node in ET.fromstring(hook.response_body).iter("Speak")
        ]
        assert speaks and all(
            node.attrib == {"voice": "Polly.Amy", "language": "en-GB"} for node in speaks
        )


async def test_inbound_caller_not_allowed_is_rejected_without_answering(tmp_path: Path) -> None:
    config = {"inboundPolicy": "allowlist", "allowFrom": ["+15559990000"]}
    async with plivo_stack(tmp_path, config=config) as stack:
        carrier = await stack.emulator.place_inbound(without_plus(CALLER), without_plus(APP_NUMBER))
        await stack.emulator.wait_ended(carrier.id)
        assert carrier.answered_at is None and carrier.callee.heard == []
        assert stack.leg_by_uuid(carrier.id).ended == REJECTED
        reply = ET.fromstring(stack.hooks("answer", carrier.id)[0].response_body)
        assert [(c.tag, c.attrib) for c in reply] == [("Hangup", {"reason": "rejected"})]
        record = await stack.runtime.store.find_by_provider_call_id("plivo", carrier.id)
        assert record is not None and record.end_reason == CallState.HANGUP_BOT
        assert record.metadata["rejectionReason"] == "inbound-policy"
        # Plivo's hangup callback for the refused call changes nothing.
        await stack.wait_hook("hangup", carrier.id)
        assert (await stack.record(record.call_id)).end_reason == CallState.HANGUP_BOT


async def test_inbound_disabled_by_default_rejects(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path) as stack:
        carrier = await stack.emulator.place_inbound(without_plus(CALLER), without_plus(APP_NUMBER))
        await stack.emulator.wait_ended(carrier.id)
        assert carrier.answered_at is None
        assert stack.leg_by_uuid(carrier.id).ended == REJECTED
