"""Call lifecycles against docs/carriers.md §4 "Twilio": webhook order, parameters, signatures.

The REST side is driven with the official twilio SDK; the application is a TwimlApp.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

from twilio.rest import Client

from tests.sim.twilio.app import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FAST,
    TwimlApp,
    in_thread,
    sdk_client,
    signed_by_twilio,
    status_hooks,
)
from tests.support import wait_until
from voice_call.asgi_server import BackgroundServer
from voice_call.sim.callee import CalleeScript
from voice_call.sim.twilio.emulator import APPLICATION_ERROR_TEXT, TwilioEmulator

TO, FROM = "+15550001111", "+15550002222"
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


@asynccontextmanager
async def running(app: TwimlApp, **emulator: Any) -> AsyncIterator[tuple[TwilioEmulator, Client]]:
    emulator.setdefault("time_scale", FAST)
    async with BackgroundServer(app.asgi) as server:
        app.base = server.url
        for key in ("voice_url", "status_callback"):
            if key in emulator:
                emulator[key] = app.url(emulator[key])
        async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, **emulator) as emu:
            yield emu, sdk_client(emu.url)


def assert_all_signed(app: TwimlApp, emu: TwilioEmulator) -> None:
    assert app.received, "the app got no webhooks"
    assert all(r.signature_ok for r in app.received), [r.url for r in app.received]
    assert all(signed_by_twilio(h) for h in emu.webhooks)


def assert_common_fields(params: dict[str, Any], call_sid: str, direction: str) -> None:
    assert params["CallSid"] == call_sid
    assert params["AccountSid"] == ACCOUNT_SID
    assert params["ApiVersion"] == "2010-04-01"
    assert params["Direction"] == direction


async def test_answered_notify_call_sends_all_four_events_in_order() -> None:
    app = TwimlApp()
    async with running(app, script=CalleeScript(answer_delay_ms=500)) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            twiml="<Response><Say>Your table is booked for eight.</Say><Hangup/></Response>",
            status_callback=app.url("/status"),
            status_callback_event=ALL_EVENTS,
        )
        assert call.status == "queued"
        assert call.direction == "outbound-api"
        assert call.start_time is None and call.duration is None
        ended = await emu.wait_ended(call.sid)
        fetched = await in_thread(client.calls(call.sid).fetch)

    assert ended.status == "completed" and ended.hangup_cause == "hangup"
    assert ended.callee.heard == ["Your table is booked for eight."]
    hooks = status_hooks(emu.webhooks)
    assert [h.params["CallStatus"] for h in hooks] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [h.params["SequenceNumber"] for h in hooks] == ["0", "1", "2", "3"]
    for hook in hooks:
        assert_common_fields(hook.params, call.sid, "outbound-api")
        assert hook.params["CallbackSource"] == "call-progress-events"
        assert hook.params["From"] == FROM and hook.params["To"] == TO
        assert parsedate_to_datetime(hook.params["Timestamp"]).tzinfo is not None
        assert hook.url == app.url("/status") and hook.status_code == 204
    # "Your table is booked for eight." is about 2 s of speech in emulated time.
    assert int(hooks[-1].params["CallDuration"]) >= 2
    assert "CallDuration" not in hooks[0].params
    assert [h.kind for h in emu.webhooks] == ["status"] * 4  # inline Twiml: no voice request
    assert fetched.status == "completed"
    assert fetched.duration == hooks[-1].params["CallDuration"]
    assert fetched.start_time is not None and fetched.end_time is not None
    assert_all_signed(app, emu)


async def test_conversation_url_gather_speech_posts_speech_result_to_action() -> None:
    app = TwimlApp(
        {
            "/voice": (
                '<Response><Gather input="speech" action="/gathered" timeout="3">'
                "<Say>How can I help?</Say></Gather><Say>Nothing heard.</Say></Response>"
            ),
            "/gathered": lambda p: (
                f"<Response><Say>You said {p['SpeechResult']}</Say><Hangup/></Response>"
            ),
        }
    )
    script = CalleeScript(replies=("A table for two, please",))
    async with running(app, script=script) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            url=app.url("/voice"),
            status_callback=app.url("/status"),
        )
        ended = await emu.wait_ended(call.sid)

    assert app.paths() == ["/voice", "/gathered", "/status"]  # default events: completed only
    voice, action, completed = app.received
    assert voice.method == "POST"
    assert_common_fields(voice.params, call.sid, "outbound-api")
    assert voice.params["CallStatus"] == "in-progress"
    assert voice.params["From"] == FROM and voice.params["To"] == TO
    assert action.params["SpeechResult"] == "A table for two, please"
    assert 0.0 <= float(action.params["Confidence"]) <= 1.0
    assert "Digits" not in action.params
    assert completed.params["CallStatus"] == "completed"
    assert completed.params["SequenceNumber"] == "0"
    assert [h.kind for h in emu.webhooks] == ["voice", "action", "status"]
    assert ended.callee.heard == ["How can I help?", "You said A table for two, please"]
    assert ended.callee.said == ["A table for two, please"]
    assert_all_signed(app, emu)


async def test_dtmf_gather_digits_get_action_and_silent_gather_falls_through() -> None:
    app = TwimlApp(
        {
            "/voice": (
                '<Response><Gather input="dtmf" numDigits="6" action="/pin" method="GET">'
                "<Say>Enter your PIN, then hash.</Say></Gather></Response>"
            ),
            "/pin": (
                '<Response><Gather input="dtmf" timeout="2" action="/never"><Say>Again?</Say>'
                "</Gather><Say>Goodbye.</Say></Response>"
            ),
        }
    )
    async with running(app, dtmf_replies=("1234#9",)) as (emu, client):
        call = await in_thread(
            client.calls.create, to=TO, from_=FROM, url=app.url("/voice"), method="GET"
        )
        started = time.monotonic()
        ended = await emu.wait_ended(call.sid)
        elapsed = time.monotonic() - started

    assert app.paths() == ["/voice", "/pin"]  # no input: no request to /never
    voice, pin = app.received
    assert voice.method == "GET" and voice.params["CallSid"] == call.sid
    assert pin.method == "GET" and pin.params["Digits"] == "1234"  # up to finishOnKey
    assert pin.url.startswith(app.url("/pin?"))
    assert ended.callee.digits == ["1234#9"]
    assert ended.callee.heard == ["Enter your PIN, then hash.", "Again?", "Goodbye."]
    assert elapsed >= 2 * FAST  # the second Gather waited its timeout
    assert_all_signed(app, emu)


async def test_busy_never_requests_url() -> None:
    app = TwimlApp({"/voice": "<Response><Say>unreachable</Say></Response>"})
    async with running(app, script=CalleeScript(outcome="busy")) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            url=app.url("/voice"),
            status_callback=app.url("/status"),
            status_callback_event=ALL_EVENTS,
        )
        ended = await emu.wait_ended(call.sid)
        fetched = await in_thread(client.calls(call.sid).fetch)

    assert "/voice" not in app.paths()
    assert [h.params["CallStatus"] for h in status_hooks(emu.webhooks)] == [
        "initiated",
        "ringing",
        "busy",
    ]
    assert status_hooks(emu.webhooks)[-1].params["CallDuration"] == "0"
    assert ended.status == "busy" and ended.answered_at is None
    assert fetched.status == "busy" and fetched.duration == "0"
    assert_all_signed(app, emu)


async def test_no_answer_after_ring_timeout() -> None:
    app = TwimlApp({"/voice": "<Response><Say>unreachable</Say></Response>"})
    # The callee would answer after 30 s, but the call only rings for Timeout=10 s.
    script = CalleeScript(answer_delay_ms=30_000)
    async with running(app, script=script) as (emu, client):
        started = time.monotonic()
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            url=app.url("/voice"),
            timeout=10,
            status_callback=app.url("/status"),
            status_callback_event=ALL_EVENTS,
        )
        ended = await emu.wait_ended(call.sid)
        elapsed = time.monotonic() - started

    assert [h.params["CallStatus"] for h in status_hooks(emu.webhooks)] == [
        "initiated",
        "ringing",
        "no-answer",
    ]
    assert ended.status == "no-answer"
    assert elapsed >= 10 * FAST  # rang for the whole Timeout, not the 30 s answer delay
    assert "/voice" not in app.paths()


async def test_failed_call_skips_ringing() -> None:
    app = TwimlApp()
    async with running(app, script=CalleeScript(outcome="failed")) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            twiml="<Response/>",
            status_callback=app.url("/status"),
            status_callback_event=ALL_EVENTS,
        )
        ended = await emu.wait_ended(call.sid)
    assert ended.status == "failed"
    assert [h.params["CallStatus"] for h in status_hooks(emu.webhooks)] == ["initiated", "failed"]


async def test_inbound_call_requests_voice_url_then_completed_only() -> None:
    app = TwimlApp(
        {
            "/voice": (
                '<Response><Gather input="speech dtmf" action="/heard"><Say>Hello, who is this?'
                "</Say></Gather></Response>"
            ),
            "/heard": "<Response><Say>Thanks, bye.</Say></Response>",
        }
    )
    script = CalleeScript(replies=("It is Sam",))
    async with running(app, voice_url="/voice", status_callback="/status") as (emu, _):
        call = await emu.place_inbound(FROM, TO, script=script)
        ended = await emu.wait_ended(call.id)

    assert app.paths() == ["/voice", "/heard", "/status"]
    voice, heard, completed = app.received
    assert_common_fields(voice.params, call.id, "inbound")
    assert voice.params["CallStatus"] == "ringing"
    assert voice.params["From"] == FROM and voice.params["To"] == TO
    assert heard.params["CallStatus"] == "in-progress"
    assert heard.params["SpeechResult"] == "It is Sam"
    assert completed.params["CallStatus"] == "completed"
    assert_common_fields(completed.params, call.id, "inbound")
    assert ended.direction == "inbound" and ended.answered_at is not None
    assert ended.callee.heard == ["Hello, who is this?", "Thanks, bye."]
    assert_all_signed(app, emu)


async def test_inbound_reject_leaves_the_call_unanswered() -> None:
    app = TwimlApp(
        {
            "/busy": '<Response><Reject reason="busy"/><Say>unreachable</Say></Response>',
            "/reject": "<Response><Reject/></Response>",
        }
    )
    async with running(app, voice_url="/busy", status_callback="/status") as (emu, _):
        busy = await emu.wait_ended((await emu.place_inbound(FROM, TO)).id)
        emu.voice_url = app.url("/reject")
        rejected = await emu.wait_ended((await emu.place_inbound(FROM, TO)).id)

    assert busy.status == "busy" and busy.answered_at is None and busy.callee.heard == []
    assert rejected.status == "no-answer" and rejected.answered_at is None
    assert [h.params["CallStatus"] for h in status_hooks(emu.webhooks)] == ["busy", "no-answer"]


async def test_rest_redirect_replaces_running_twiml_and_rest_hangup_ends_call() -> None:
    app = TwimlApp(
        {
            "/hold": '<Response><Say>Please hold.</Say><Pause length="60"/></Response>',
            "/next": '<Response><Say>Thanks for holding.</Say><Pause length="60"/></Response>',
        }
    )
    async with running(app) as (emu, client):
        call = await in_thread(client.calls.create, to=TO, from_=FROM, url=app.url("/hold"))
        callee = emu.calls[call.sid].callee
        await wait_until(lambda: callee.heard == ["Please hold."])
        updated = await in_thread(client.calls(call.sid).update, url=app.url("/next"))
        assert updated.status == "in-progress"
        await emu.webhooks.wait_for(lambda h: h.kind == "redirect")
        await wait_until(lambda: len(callee.heard) == 2)
        hung = await in_thread(client.calls(call.sid).update, status="completed")
        ended = await emu.wait_ended(call.sid)

    assert hung.status == "completed"
    assert ended.callee.heard == ["Please hold.", "Thanks for holding."]
    assert ended.hangup_cause == "api-hangup"
    redirect = next(h for h in emu.webhooks if h.kind == "redirect")
    assert redirect.url == app.url("/next") and redirect.params["CallStatus"] == "in-progress"


async def test_rest_cancel_while_ringing() -> None:
    app = TwimlApp()
    script = CalleeScript(answer_delay_ms=50_000)
    async with running(app, script=script) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            twiml="<Response/>",
            status_callback=app.url("/status"),
            status_callback_event=ALL_EVENTS,
        )
        await emu.webhooks.wait_for(lambda h: h.params.get("CallStatus") == "ringing")
        await in_thread(client.calls(call.sid).update, status="canceled")
        ended = await emu.wait_ended(call.sid, timeout=5)
    assert ended.status == "canceled" and ended.answered_at is None
    assert status_hooks(emu.webhooks)[-1].params["CallStatus"] == "canceled"


async def test_broken_twiml_is_an_application_error() -> None:
    app = TwimlApp({"/voice": "<Response><Say>unclosed</Response>"})
    async with running(app) as (emu, client):
        bad_xml = await in_thread(client.calls.create, to=TO, from_=FROM, url=app.url("/voice"))
        missing = await in_thread(client.calls.create, to=TO, from_=FROM, url=app.url("/gone"))
        first = await emu.wait_ended(bad_xml.sid)
        second = await emu.wait_ended(missing.sid)

    assert first.status == "completed" and first.hangup_cause == "application-error"
    assert [e["code"] for e in first.extra["errors"]] == [12100]
    assert first.callee.heard == [APPLICATION_ERROR_TEXT]
    assert [e["code"] for e in second.extra["errors"]] == [11200]  # the app answered 404
    assert second.callee.heard == [APPLICATION_ERROR_TEXT]


async def test_fallback_url_gets_error_code_when_url_fails() -> None:
    app = TwimlApp({"/fallback": "<Response><Say>Fallback speaking.</Say></Response>"})
    async with running(app) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            url="http://127.0.0.1:9/unreachable",
            fallback_url=app.url("/fallback"),
        )
        ended = await emu.wait_ended(call.sid)
    fallback = app.received[-1]
    assert fallback.params["ErrorCode"] == "11200"
    assert fallback.params["ErrorUrl"] == "http://127.0.0.1:9/unreachable"
    assert [h.kind for h in emu.webhooks] == ["voice", "fallback"]
    assert emu.webhooks[0].status_code is None  # connection refused, logged
    assert ended.callee.heard == ["Fallback speaking."]


async def test_voicemail_with_machine_detection() -> None:
    app = TwimlApp({"/voice": "<Response><Say>Leave a message.</Say></Response>"})
    script = CalleeScript(outcome="voicemail", replies=("never said",))
    async with running(app, script=script) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            url=app.url("/voice"),
            machine_detection="Enable",
        )
        ended = await emu.wait_ended(call.sid)
        fetched = await in_thread(client.calls(call.sid).fetch)
    assert app.received[0].params["AnsweredBy"] == "machine_start"
    assert fetched.answered_by == "machine_start"
    assert ended.callee.said == []


async def test_status_callback_method_get_signs_the_query_url() -> None:
    app = TwimlApp()
    async with running(app) as (emu, client):
        call = await in_thread(
            client.calls.create,
            to=TO,
            from_=FROM,
            twiml="<Response><Hangup/></Response>",
            status_callback=app.url("/status?tenant=7"),
            status_callback_method="GET",
        )
        await emu.wait_ended(call.sid)
    (hook,) = app.received
    assert hook.method == "GET" and hook.params["tenant"] == "7"
    assert hook.params["CallStatus"] == "completed"
    assert_all_signed(app, emu)


async def test_time_limit_and_remote_hangup_end_answered_calls() -> None:
    app = TwimlApp({"/voice": '<Response><Pause length="600"/></Response>'})
    async with running(app, voice_url="/voice", status_callback="/status") as (emu, client):
        limited = await in_thread(
            client.calls.create, to=TO, from_=FROM, url=app.url("/voice"), time_limit=3
        )
        inbound = await emu.place_inbound(FROM, TO)
        await wait_until(lambda: inbound.answered_at is not None)
        await emu.hangup(inbound.id)
        first = await emu.wait_ended(limited.sid)
        second = await emu.wait_ended(inbound.id)
    assert (first.status, first.hangup_cause) == ("completed", "time-limit")
    assert first.ended_at is not None and first.answered_at is not None
    assert first.ended_at - first.answered_at < 600 * FAST / 2
    assert (second.status, second.hangup_cause) == ("completed", "callee-hangup")
    assert status_hooks(emu.webhooks)[-1].params["CallStatus"] == "completed"


async def test_leaving_the_emulator_mid_call_stops_cleanly() -> None:
    app = TwimlApp({"/voice": '<Response><Pause length="600"/></Response>'})
    async with running(app, status_callback="/status") as (emu, client):
        call = await in_thread(client.calls.create, to=TO, from_=FROM, url=app.url("/voice"))
        await wait_until(lambda: emu.calls[call.sid].answered_at is not None)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert emu.calls[call.sid].ended.is_set()
    assert "errors" not in emu.calls[call.sid].extra
