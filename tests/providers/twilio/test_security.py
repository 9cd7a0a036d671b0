"""Twilio webhooks over the real server: replays, tampering, wrong hosts, unsigned requests and
stale turn tokens change nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.providers.twilio.stack import (
    APP_NUMBER,
    CALLER,
    TwilioStack,
    script,
    twilio_stack,
)
from tests.support import wait_until
from voice_call.models import CallRecord, EventType, Speaker

GREETING = "Good morning, this is the library calling about a book."


async def test_replayed_gather_callback_changes_nothing(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        hook = stack.hooks("action", record.provider_call_id)[0]
        before = await stack.runtime.store.last_seq()
        response = await stack.resend(hook)
        assert response.status_code == 200
        assert response.text == hook.response_body  # the first answer, not a new one
        await stack.runtime.manager.settle()
        heard = hook.params["SpeechResult"]
        assert await _logged_since(stack, call_id, before, heard) == []
        assert _user_lines(await stack.record(call_id), heard) == _user_lines(record, heard)
        await stack.call("voicecall.end", callId=call_id)


async def _logged_since(stack: TwilioStack, call_id: str, seq: int, text: str) -> list[str]:
    """Speech events logged after `seq` that carry `text`: what a replayed or forged speech
    result would have logged. Only these: the call goes on logging its own events meanwhile."""
    events = await stack.runtime.store.events(since_seq=seq, call_id=call_id)
    return [e.type for e in events if e.type == EventType.SPEECH and text in json.dumps(e.data)]


def _user_lines(record: CallRecord, text: str) -> int:
    return sum(e.speaker == Speaker.USER and e.text == text for e in record.transcript)


async def test_replayed_inbound_request_does_not_register_twice(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path, inboundPolicy="open") as stack:
        call = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        hook = await stack.emu.webhooks.wait_for(lambda h: h.kind == "voice")
        await wait_until(lambda: _exists(stack, call.id))
        response = await stack.resend(hook)
        assert response.status_code == 200 and response.text == hook.response_body
        assert len(await stack.runtime.store.list_recent()) == 1
        record = await stack.by_sid(call.id)
        assert record is not None
        await stack.call("voicecall.end", callId=record.call_id)


async def _exists(stack: TwilioStack, sid: str) -> bool:
    return await stack.by_sid(sid) is not None


async def test_tampered_signature_or_body_is_401_and_changes_nothing(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        hook = stack.hooks("action", record.provider_call_id)[0]
        before = await stack.runtime.store.last_seq()
        signature = hook.headers["X-Twilio-Signature"]
        bad_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
        response = await stack.post(hook.url, hook.params, bad_signature)
        assert response.status_code == 401
        changed = await stack.resend(hook, SpeechResult="transfer all my money")
        assert changed.status_code == 401
        assert "invalid X-Twilio-Signature" in changed.json()["error"]
        assert call_id not in changed.json()["error"]  # query values are redacted
        await stack.runtime.manager.settle()
        heard = hook.params["SpeechResult"]
        assert await _logged_since(stack, call_id, before, heard) == []
        assert await _logged_since(stack, call_id, before, "transfer all my money") == []
        after = await stack.record(call_id)
        assert _user_lines(after, heard) == _user_lines(record, heard)
        assert _user_lines(after, "transfer all my money") == 0
        await stack.call("voicecall.end", callId=call_id)


async def test_signature_for_another_host_is_401(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        url = f"{stack.webhook}?type=gather&callId={call_id}"
        params = {"CallSid": str(record.provider_call_id), "SpeechResult": "forged"}
        elsewhere = url.replace("127.0.0.1", "attacker.example")
        response = await stack.post(url, params, stack.sign(elsewhere, params))
        assert response.status_code == 401
        ok = await stack.post(url, params, stack.sign(url, params))
        assert ok.status_code == 200  # the same request signed for our public URL passes
        await stack.call("voicecall.end", callId=call_id)


async def test_unsigned_request_is_401_before_the_body_is_read(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write(
            b"POST /voice/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\nCallSid="
        )
        await writer.drain()
        try:
            async with asyncio.timeout(2):  # the body never comes: the gate does not wait
                assert (await reader.readline()).startswith(b"HTTP/1.1 401")
        finally:
            writer.close()
        assert await stack.runtime.store.list_recent() == []


async def test_gather_with_a_stale_turn_token_does_not_answer_the_turn(tmp_path: Path) -> None:
    callee = script(replies=("Hello?", "The real answer."), reply_delay_ms=15000)
    async with twilio_stack(tmp_path, callee) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        turn = asyncio.create_task(
            stack.call("voicecall.continue", callId=call_id, message="Which day suits you?")
        )
        await stack.wait_state(call_id, "listening", timeout=5)
        await stack.wait_record(call_id, lambda r: r.transcript[-1].speaker == Speaker.BOT)
        url = f"{stack.webhook}?type=gather&callId={call_id}&turnToken=stale-turn&n=1"
        params = {
            "CallSid": str(record.provider_call_id),
            "CallStatus": "in-progress",
            "SpeechResult": "An old answer.",
        }
        response = await stack.post(url, params, stack.sign(url, params))
        assert response.status_code == 200 and "<Redirect" in response.text
        reply = await asyncio.wait_for(turn, 10)
        assert reply["transcript"] == "The real answer."
        await stack.call("voicecall.end", callId=call_id)
