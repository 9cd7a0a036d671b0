"""Outbound Plivo calls end to end: our server and the Plivo emulator on loopback, driven by RPC."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.providers.plivo.stack import CALLEE, plivo_stack
from voice_call.errors import Conflict
from voice_call.models import CallState, Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.plivo.call import CANCELED

REPLIES = ("Hi, this is Sam.", "Tuesday works.", "Three o'clock is fine.", "No, that's all.")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_notify_says_the_message_once_then_we_hang_up(tmp_path: Path) -> None:
    message = 'Your table for 2 <at 7pm> is ready & "waiting".'
    async with plivo_stack(tmp_path) as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message=message, mode="notify")
        call_id = started["callId"]
        record = await stack.wait_ended(call_id)
        assert record.end_reason == CallState.HANGUP_BOT  # ours, once it was said
        assert [(e.speaker, e.text) for e in record.transcript] == [(Speaker.BOT, message)]
        carrier = stack.carrier_call(record)
        assert carrier.callee.heard == [message]  # escaped in XML, heard verbatim, once
        assert record.metadata["providerCallIdAliases"] == [carrier.extra["request_uuid"]]
        answer = stack.hooks("answer", carrier.id)[0]
        assert query(answer.url)["callId"] == call_id
        root = ET.fromstring(answer.response_body)
        assert [child.tag for child in root] == ["Speak", "Redirect"]  # it was said: tell us
        assert root[0].attrib == {"voice": "WOMAN", "language": "en-US"}
        leg = stack.leg(record)
        assert leg.ring_timeout == 30 and leg.hangup_on_ring is None
        assert leg.time_limit == 300 + 60
        assert stack.hooks("transfer", carrier.id) == []  # one path: no speak transfer


async def test_conversation_runs_three_turns_and_hangs_up(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=300, replies=REPLIES, reply_delay_ms=300)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hi, it's the clinic.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)  # the greeting was answered
        prompts = ["Which day suits you?", "What time?", "Anything else?"]
        answers = [
            (await stack.call("voicecall.continue", callId=call_id, message=p))["transcript"]
            for p in prompts
        ]
        assert answers == list(REPLIES[1:])
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_ended(call_id)
        assert record.end_reason == CallState.HANGUP_BOT
        assert [e.text for e in record.transcript] == [
            "Hi, it's the clinic.",
            REPLIES[0],
            *[line for pair in zip(prompts, REPLIES[1:], strict=True) for line in pair],
        ]
        assert len(record.latency) == 3
        carrier = stack.carrier_call(record)
        assert carrier.callee.heard == ["Hi, it's the clinic.", *prompts]  # each once, whole
        await stack.emulator.wait_ended(carrier.id)
        # Each turn's GetInput action carried that turn's token (stale answers cannot match).
        tokens = [query(h.url).get("turnToken") for h in stack.hooks("action", carrier.id)]
        assert tokens[0] is None and len(set(tokens[1:])) == 3


async def test_a_plain_speak_mid_call_is_heard_then_the_caller_is_listened_to(
    tmp_path: Path,
) -> None:
    script = CalleeScript(answer_delay_ms=300, replies=REPLIES, reply_delay_ms=300)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hi there.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        await stack.call("voicecall.speak", callId=call_id, message="Your order has shipped.")
        await stack.wait_user_lines(call_id, 2)  # the caller's answer, heard after the Speak
        record = await stack.record(call_id)
        assert [e.text for e in record.transcript][-2:] == ["Your order has shipped.", REPLIES[1]]
        events = await stack.runtime.store.events(call_id=call_id)
        assert "call.playback-ended" in [e.type for e in events]
        assert stack.carrier_call(record).callee.heard == ["Hi there.", "Your order has shipped."]
        await stack.call("voicecall.end", callId=call_id)


async def test_busy_and_no_answer(tmp_path: Path) -> None:
    def script(to: str) -> CalleeScript:
        return CalleeScript(outcome="busy" if to.endswith("1") else "no-answer")

    async with plivo_stack(tmp_path, config={"ringTimeoutMs": 2000}) as stack:
        stack.emulator.script = script
        busy = await stack.call("voicecall.initiate", to="+15550002001", message="Hi")
        silent = await stack.call("voicecall.initiate", to="+15550002002", message="Hi")
        assert (await stack.wait_ended(busy["callId"])).end_reason == CallState.BUSY
        assert (await stack.wait_ended(silent["callId"])).end_reason == CallState.NO_ANSWER


async def test_callee_hanging_up_mid_turn_fails_the_turn(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=300, replies=REPLIES, hangup_after_turns=2)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello!", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        reply = await stack.call("voicecall.continue", callId=call_id, message="How are you?")
        assert reply["transcript"] == REPLIES[1]
        with pytest.raises(Conflict, match="hangup-user"):
            await stack.call("voicecall.continue", callId=call_id, message="One more thing...")
        record = await stack.wait_ended(call_id)
        assert record.end_reason == CallState.HANGUP_USER


async def test_hang_up_before_plivo_reports_the_call_cancels_the_request(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=20_000)
    async with plivo_stack(tmp_path, script, time_scale=1.0) as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message="Hi")
        call_id = started["callId"]
        record = await stack.record(call_id)
        request_uuid = record.provider_call_id
        assert request_uuid in stack.emulator.requests  # still the RequestUUID
        await stack.call("voicecall.end", callId=call_id)
        leg = stack.emulator.legs[stack.emulator.requests[str(request_uuid)]]
        assert leg.ended == CANCELED
        assert (await stack.record(call_id)).end_reason == CallState.HANGUP_BOT


async def test_hang_up_while_ringing_uses_the_call_uuid(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=60_000)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message="Hi")
        call_id = started["callId"]
        record = await stack.wait_record(call_id, lambda r: r.state == CallState.RINGING)
        assert record.metadata["providerCallIdAliases"]  # RequestUUID kept, CallUUID learnt
        await stack.call("voicecall.end", callId=call_id)
        carrier = stack.carrier_call(record)
        await stack.emulator.wait_ended(carrier.id)
        assert stack.leg(record).ended == CANCELED
        assert carrier.answered_at is None


async def test_restart_mid_call_keeps_the_call_and_continues(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=300, replies=REPLIES)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello again.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        await stack.restart()
        assert stack.runtime.restored == {"kept": 1}
        reply = await stack.call("voicecall.continue", callId=call_id, message="Still there?")
        assert reply["transcript"] == REPLIES[1]
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_ended(call_id)
        assert record.end_reason == CallState.HANGUP_BOT
        carrier = stack.carrier_call(record)
        await stack.emulator.wait_ended(carrier.id)
        assert carrier.callee.heard == ["Hello again.", "Still there?"]


async def test_a_call_that_ended_while_we_were_down_is_reconciled_on_restart(
    tmp_path: Path,
) -> None:
    script = CalleeScript(answer_delay_ms=300, replies=REPLIES)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hello.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        uuid = str((await stack.record(call_id)).provider_call_id)
        await stack.stop()
        stack.emulator.hangup_by_callee(uuid)  # its hangup callback finds nobody
        await stack.emulator.wait_ended(uuid)
        assert stack.hooks("hangup", uuid)[0].status_code is None
        await stack.start()
        assert stack.runtime.restored == {"ended": 1}
        record = await stack.record(call_id)
        assert record.end_reason == CallState.COMPLETED
        assert record.metadata["restoreOutcome"] == "carrier-completed"


async def test_status_of_a_live_and_an_ended_call(tmp_path: Path) -> None:
    script = CalleeScript(answer_delay_ms=300, replies=REPLIES)
    async with plivo_stack(tmp_path, script) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hi.", mode="conversation"
        )
        call_id = started["callId"]
        record = await stack.wait_record(call_id, lambda r: r.state.live)
        provider = stack.runtime.provider
        uuid = str(record.provider_call_id)
        live = await provider.get_call_status(uuid)
        assert (live.status, live.terminal) == ("in-progress", False)
        stack.emulator.hangup_by_callee(uuid)
        await stack.emulator.wait_ended(uuid)
        ended = await provider.get_call_status(uuid)
        assert (ended.status, ended.terminal) == ("completed", True)
        gone = await provider.get_call_status("00000000-0000-0000-0000-000000000000")
        assert (gone.status, gone.terminal) == ("not-found", True)
        await stack.wait_ended(call_id)
