"""Outbound Twilio calls end to end: our server + Twilio provider against the emulator.

Notify (the message said once, by Twilio, from inline TwiML), conversations driven by
`voicecall.continue` and by the echo auto-responder, busy / no-answer / failed, the callee
hanging up mid-turn, and DTMF.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.providers.twilio.stack import CALLEE, LINES, script, twilio_stack
from tests.support import wait_until
from voice_call.errors import Conflict
from voice_call.models import Speaker

GREETING = "Hello, this is the clinic calling about your appointment next week."


async def test_notify_says_the_message_once_and_ends(tmp_path: Path) -> None:
    message = "Your table for two is booked for 8 pm tonight & we look forward to <seeing> you."
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.start_call("notify", message)
        record = await stack.wait_ended(call_id)
        call = stack.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 5)
        assert call.callee.heard == [message]  # escaped on the way, heard once
        assert call.hangup_cause == "api-hangup"  # ours, once the <Say> was over
        assert record.end_reason is not None and record.end_reason.value == "hangup-bot"
        assert [e.text for e in record.transcript if e.speaker == Speaker.BOT] == [message]
        # one path: no TwiML fetch, no live update; the <Redirect> after the <Say> says it ended
        assert not stack.hooks("voice") and not stack.updates(record.provider_call_id)
        [played] = stack.hooks("redirect")
        assert parse_qs(urlsplit(played.url).query)["type"] == ["played"]
        assert "call.playback-ended" in [
            e.type for e in await stack.runtime.store.events(call_id=call_id)
        ]
        statuses = [h.params["CallStatus"] for h in stack.hooks("status")]
        assert statuses == ["initiated", "ringing", "in-progress", "completed"]
        query = parse_qs(urlsplit(stack.hooks("status")[0].url).query)
        assert query["callId"] == [call_id] and query["flow"] == ["inline"]
        assert record.answered_at is not None


async def test_conversation_three_turns_driven_by_continue(tmp_path: Path) -> None:
    prompts = ["Is this Sam?", "When would suit you for the visit?", "Anything else today?"]
    callee = script(replies=("Hello?", *LINES))
    async with twilio_stack(tmp_path, callee) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        # the greeting is a prompt too: the callee answers it before the agent's first turn
        # (a `continue` sent while the greeting plays would replace it, as any live update does)
        await stack.wait_record(
            call_id, lambda r: bool(r.transcript) and r.transcript[-1].text == "Hello?"
        )
        heard = []
        for prompt in prompts:
            reply = await stack.call("voicecall.continue", callId=call_id, message=prompt)
            heard.append(reply["transcript"])
        assert heard == list(LINES)
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_ended(call_id)
        call = stack.emulated(record)
        await asyncio.wait_for(call.ended.wait(), 5)
        assert call.callee.heard == [GREETING, *prompts]  # each exactly once, in order
        assert call.hangup_cause == "api-hangup"
        assert record.end_reason is not None and record.end_reason.value == "hangup-bot"
        texts = [(e.speaker.value, e.text) for e in record.transcript]
        assert texts == [("bot", GREETING), ("user", "Hello?")] + [
            pair
            for p, line in zip(prompts, LINES, strict=True)
            for pair in (("bot", p), ("user", line))
        ]
        assert [t.turn for t in record.latency] == [1, 2, 3]
        # live updates carry escaped TwiML: the prompt inside a Gather, then a Redirect back
        form = stack.updates(record.provider_call_id)[-1]
        assert (
            form["Twiml"].index("<Gather")
            < form["Twiml"].index("<Say")
            < form["Twiml"].index("<Redirect")
        )


async def test_conversation_with_the_echo_responder(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, responder={"provider": "echo"}) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_record(
            call_id, lambda r: sum(e.speaker == Speaker.BOT for e in r.transcript) == 4
        )
        call = stack.emulated(record)
        await wait_until(lambda: _true(len(call.callee.heard) == 4))
        assert call.callee.heard == [GREETING] + [f"You said: {line}" for line in LINES]
        assert [e.text for e in record.transcript if e.speaker == Speaker.USER] == list(LINES)
        await stack.call("voicecall.end", callId=call_id)
        assert (await stack.wait_ended(call_id)).end_reason.value == "hangup-bot"  # type: ignore[union-attr]


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize(
    ("outcome", "reason"), [("busy", "busy"), ("no-answer", "no-answer"), ("failed", "failed")]
)
async def test_unanswered_calls_end_with_the_carrier_reason(
    tmp_path: Path, outcome: str, reason: str
) -> None:
    async with twilio_stack(tmp_path, script(outcome=outcome), ringTimeoutMs=2000) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == reason
        assert record.answered_at is None and not stack.hooks("voice")
        call = stack.emulated(record)
        assert call.callee.heard == []
    # the ring Timeout we asked for (2 s) is what ended the no-answer call


async def test_callee_hanging_up_mid_turn_ends_the_wait(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, script(hangup_after_turns=1)) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        await stack.wait_state(call_id, "listening")
        first = await stack.call("voicecall.continue", callId=call_id, message="Is this Sam?")
        assert first["transcript"] == LINES[0]
        with pytest.raises(Conflict, match="ended"):
            await stack.call("voicecall.continue", callId=call_id, message="Still there?")
        record = await stack.wait_ended(call_id)
        assert record.end_reason is not None and record.end_reason.value == "completed"
        assert stack.emulated(record).hangup_cause == "callee-hangup"


async def test_callee_hanging_up_while_listened_to(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, script(silent=True)) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_state(call_id, "listening")
        await wait_until(lambda: _true(stack.emulated(record).callee.heard == [GREETING]))
        waiting = asyncio.create_task(
            stack.call("voicecall.continue", callId=call_id, message="Hello?")
        )
        await wait_until(lambda: _true(len(stack.emulated(record).callee.heard) == 2))
        assert record.provider_call_id is not None
        await stack.emu.hangup(record.provider_call_id)
        with pytest.raises(Conflict, match="ended"):
            await waiting
        assert (await stack.wait_ended(call_id)).end_reason.value == "completed"  # type: ignore[union-attr]


async def test_dtmf_plays_digits_and_keeps_listening(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.start_call("conversation", GREETING)
        record = await stack.wait_state(call_id, "listening")
        await stack.call("voicecall.dtmf", callId=call_id, digits="12#w3")
        call = stack.emulated(record)
        await wait_until(lambda: _true("[digits 12#w3]" in call.callee.heard))
        reply = await stack.call("voicecall.continue", callId=call_id, message="Thanks.")
        assert reply["transcript"] in LINES
        await stack.call("voicecall.end", callId=call_id)


async def test_callee_recipient_is_the_dialled_number(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.start_call("notify", "Short note.")
        record = await stack.wait_ended(call_id)
        assert stack.emulated(record).to_number == CALLEE
