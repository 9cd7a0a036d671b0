"""Outbound Telnyx calls end to end: our server + the Telnyx emulator over loopback, via RPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.providers.telnyx.stack import (
    APP_NUMBER,
    CALLEE,
    commands,
    decoded_state,
    hooks_of,
    telnyx_stack,
)
from tests.support import wait_until
from voice_call.errors import Conflict, Unavailable
from voice_call.models import CallState, Speaker
from voice_call.sim.callee import CalleeScript

LONG_MESSAGE = (
    "Hello, this is the pharmacy on Main Street calling about your prescription. "
    "It is ready for pickup at the counter, and we are open until eight tonight. "
    "Please bring a photo ID and your insurance card, and if someone else is collecting it "
    "for you, they will need a signed note. If you have any questions about the dosage, "
    "our pharmacist is happy to go through it with you. Thank you, and have a good evening."
)


async def test_notify_waits_for_speak_ended_so_a_long_message_is_heard_whole(
    tmp_path: Path,
) -> None:
    # ~29 s of speech at 15 chars/s, 1.5 s at this time scale: a hang-up 1 s after the speak
    # command was accepted (the seed's fixed delay) would cut it off half way.
    async with telnyx_stack(tmp_path, outbound={"notifyHangupDelaySec": 1}) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=LONG_MESSAGE, mode="notify"
        )
        call_id = started["callId"]
        leg = await stack.leg(call_id)
        await stack.emu.wait_ended(leg.id, timeout=15)
        record = await stack.wait_ended(call_id)

        assert leg.callee.heard == [LONG_MESSAGE]  # heard to the end, exactly once
        hooks = hooks_of(stack.emu, leg.id)
        kinds = [h.kind for h in hooks]
        assert kinds.index("call.speak.ended") < kinds.index("call.hangup")
        speak_ended = hooks[kinds.index("call.speak.ended")]
        hangup = hooks[kinds.index("call.hangup")]
        assert speak_ended.params["data"]["payload"]["status"] == "completed"
        assert hangup.params["data"]["payload"]["hangup_source"] == "caller"  # we hung up
        assert hangup.at - speak_ended.at >= 0.9  # notifyHangupDelaySec after playback ended

        assert record.state == CallState.HANGUP_BOT
        assert [e.text for e in record.transcript if e.speaker == Speaker.BOT] == [LONG_MESSAGE]
        dial = leg.call.extra
        assert decoded_state(dial["client_state"]) == call_id
        assert dial["webhook_url"] == stack.webhook_url
        speak = commands(leg, "speak")
        assert len(speak) == 1
        assert speak[0]["body"]["voice"] == "female"
        assert speak[0]["body"]["language"] == "en-US"
        ids = [c["body"]["command_id"] for c in commands(leg)]
        assert len(ids) == len(set(ids)) and all(ids)
        assert "call.playback-ended" in await stack.events(call_id)


async def test_conversation_three_turns_with_continue(tmp_path: Path) -> None:
    script = CalleeScript(
        replies=("Hi, this is Sam.", "Tuesday works.", "Three of us.", "No, that's all."),
        answer_delay_ms=200,
        reply_delay_ms=200,
    )
    async with telnyx_stack(tmp_path, script=script) as stack:
        started = await stack.call(
            "voicecall.initiate",
            to=CALLEE,
            message="Hello, this is the clinic.",
            mode="conversation",
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)  # the callee answers the greeting

        answers = []
        for prompt in ("Which day suits you?", "How many people?", "Anything else?"):
            reply = await stack.call("voicecall.continue", callId=call_id, message=prompt)
            answers.append(reply["transcript"])
        assert answers == ["Tuesday works.", "Three of us.", "No, that's all."]

        await stack.call("voicecall.end", callId=call_id)
        record = await stack.record(call_id)
        assert record.state == CallState.HANGUP_BOT
        assert [(e.speaker.value, e.text) for e in record.transcript] == [
            ("bot", "Hello, this is the clinic."),
            ("user", "Hi, this is Sam."),
            ("bot", "Which day suits you?"),
            ("user", "Tuesday works."),
            ("bot", "How many people?"),
            ("user", "Three of us."),
            ("bot", "Anything else?"),
            ("user", "No, that's all."),
        ]
        assert len(record.latency) == 3

        leg = await stack.leg(call_id)
        await stack.emu.wait_ended(leg.id)
        starts = commands(leg, "transcription_start")
        assert len(starts) == 4  # after the greeting, then once per turn
        states = [decoded_state(c["body"]["client_state"]) for c in starts]
        assert states[0] == call_id  # listening with no turn waiting: no token
        assert all(s.startswith(call_id + ":") for s in states[1:])  # one token per turn
        assert len(set(states[1:])) == 3
        assert len(commands(leg, "transcription_stop")) == 3
        assert leg.call.hangup_cause == "normal_clearing"


async def test_conversation_auto_response_on_telnyx(tmp_path: Path) -> None:
    script = CalleeScript(
        replies=("I would like a table.", "For two, please.", "At seven."),
        answer_delay_ms=200,
        reply_delay_ms=200,
    )
    async with telnyx_stack(tmp_path, script=script, responder={"provider": "echo"}) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Bella's, how can I help?", mode="conversation"
        )
        call_id = started["callId"]
        record = await stack.wait_record(call_id, lambda r: len(r.transcript) >= 7)
        leg = await stack.leg(call_id)
        await wait_until(lambda: len(leg.callee.heard) >= 4)  # the last reply played
        await stack.call("voicecall.end", callId=call_id)

        assert [e.text for e in record.transcript[:7]] == [
            "Bella's, how can I help?",
            "I would like a table.",
            "You said: I would like a table.",
            "For two, please.",
            "You said: For two, please.",
            "At seven.",
            "You said: At seven.",
        ]
        assert leg.callee.heard[1:4] == [
            "You said: I would like a table.",
            "You said: For two, please.",
            "You said: At seven.",
        ]


@pytest.mark.parametrize(
    ("outcome", "state", "cause"),
    [("busy", CallState.BUSY, "user_busy"), ("no-answer", CallState.NO_ANSWER, "timeout")],
)
async def test_unanswered_outcomes(
    tmp_path: Path, outcome: str, state: CallState, cause: str
) -> None:
    script = CalleeScript(outcome=outcome, answer_delay_ms=100)
    async with telnyx_stack(tmp_path, script=script, ringTimeoutMs=5000) as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message="Hi", mode="notify")
        record = await stack.wait_ended(started["callId"])
        assert record.state == state
        assert record.end_reason == state
        assert record.answered_at is None
        leg = await stack.leg(started["callId"])
        assert leg.call.hangup_cause == cause
        assert leg.timeout_secs == 5  # ringTimeoutMs, in Telnyx's seconds
        assert not commands(leg)  # nothing was said to a call nobody answered


async def test_callee_hangs_up_mid_turn(tmp_path: Path) -> None:
    script = CalleeScript(replies=("Hello?",), answer_delay_ms=100, reply_delay_ms=100)
    async with telnyx_stack(tmp_path, script=script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hi, it's the garage.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        leg = await stack.leg(call_id)
        turn = asyncio.ensure_future(
            stack.call("voicecall.continue", callId=call_id, message="Is now OK?")
        )
        await wait_until(lambda: len(commands(leg, "transcription_start")) >= 2)
        await stack.emu.remote_hangup(leg.id)

        with pytest.raises(Conflict, match="Call ended"):
            await turn
        record = await stack.wait_ended(call_id)
        assert record.state == CallState.COMPLETED
        assert record.transcript[-1].text == "Is now OK?"


async def test_dtmf_both_ways(tmp_path: Path) -> None:
    script = CalleeScript(replies=(), answer_delay_ms=100)
    async with telnyx_stack(tmp_path, script=script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Press a key.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_record(call_id, lambda r: r.metadata.get("greeted") is True)
        await stack.call("voicecall.dtmf", callId=call_id, digits="12p#")
        leg = await stack.leg(call_id)
        assert leg.callee.digits == ["12w#"]  # our pause, in Telnyx's alphabet

        await stack.emu.press_digits(leg.id, "7")
        await stack.wait_event(call_id, "call.dtmf")
        logged = await stack.runtime.store.events(call_id=call_id)
        assert [e.data.get("digits") for e in logged if e.type == "call.dtmf"] == ["7"]
        assert leg.call.from_number == APP_NUMBER
        await stack.call("voicecall.end", callId=call_id)


async def test_a_refused_dial_fails_the_call_with_telnyx_reason(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, telnyx={"apiKey": "KEYwrong"}) as stack:
        with pytest.raises(Unavailable) as caught:
            await stack.call("voicecall.initiate", to=CALLEE, message="Hi", mode="notify")
        message = str(caught.value)
        assert "HTTP 401 10009: Authentication failed" in message
        assert "KEYwrong" not in message
        [record] = await stack.runtime.store.list_recent()
        assert record.state == CallState.FAILED
        assert not stack.emu.calls
