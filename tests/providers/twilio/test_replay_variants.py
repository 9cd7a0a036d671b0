"""A Twilio signature covers the sorted SET of form pairs: a body with an empty pair (`&=`)
appended or a pair repeated carries the same valid signature, so over the real server it must
be recognised as the same request (a replay) and change nothing."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from tests.providers.twilio.stack import TwilioStack, twilio_stack
from voice_call.models import EventType

GREETING = "Good morning, this is the library calling about a book."


def _variants(params: dict[str, str]) -> list[bytes]:
    """The same signed form: with `&=` appended, with its first pair repeated, reordered."""
    body = urlencode(params)
    first = urlencode(dict(list(params.items())[:1]))
    reordered = urlencode(dict(reversed(list(params.items()))))
    return [f"{body}&=".encode(), f"{body}&{first}".encode(), f"{reordered}&&=".encode()]


async def _count(stack: TwilioStack, call_id: str, kind: EventType) -> int:
    """Rows of one kind in the call's event log (the live call logs silences meanwhile)."""
    return sum(e.type == kind for e in await stack.runtime.store.events(call_id=call_id))


async def test_signed_variants_of_a_gather_are_replays(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        hook = stack.hooks("action", record.provider_call_id)[0]
        before = await _count(stack, call_id, EventType.SPEECH)
        signature = hook.headers["X-Twilio-Signature"]
        for body in _variants(dict(hook.params)):
            response = await stack.post(hook.url, {}, signature, body=body)
            assert response.status_code == 200, body
            assert response.text == hook.response_body  # the first answer, nothing new
        await stack.runtime.manager.settle()
        assert await _count(stack, call_id, EventType.SPEECH) == before
        assert (await stack.record(call_id)).transcript == record.transcript
        await stack.call("voicecall.end", callId=call_id)


async def test_signed_variants_of_a_speech_callback_apply_it_once(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        url = f"{stack.webhook}?type=gather&callId={call_id}"
        params = {
            "CallSid": str(record.provider_call_id),
            "CallStatus": "in-progress",
            "SpeechResult": "Please send it twice.",
            "Confidence": "0.8",
        }
        signature = stack.sign(url, params)
        first = await stack.post(url, params, signature)
        assert first.status_code == 200
        await stack.runtime.manager.settle()
        after_first = await _count(stack, call_id, EventType.SPEECH)
        for body in _variants(params):
            assert (await stack.post(url, {}, signature, body=body)).status_code == 200
        await stack.runtime.manager.settle()
        assert await _count(stack, call_id, EventType.SPEECH) == after_first
        heard = [e.text for e in (await stack.record(call_id)).transcript]
        assert heard.count("Please send it twice.") == 1
        await stack.call("voicecall.end", callId=call_id)


async def test_signed_variants_of_a_status_callback_apply_it_once(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        url = f"{stack.webhook}?type=status&callId={call_id}"
        params = {"CallSid": str(record.provider_call_id), "CallStatus": "ringing"}
        signature = stack.sign(url, params)
        assert (await stack.post(url, params, signature)).status_code == 200
        await stack.runtime.manager.settle()
        after_first = await _count(stack, call_id, EventType.RINGING)
        assert after_first >= 1
        for body in _variants(params):
            assert (await stack.post(url, {}, signature, body=body)).status_code == 200
        await stack.runtime.manager.settle()
        assert await _count(stack, call_id, EventType.RINGING) == after_first
        await stack.call("voicecall.end", callId=call_id)
