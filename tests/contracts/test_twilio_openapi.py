"""Our Twilio provider and the Twilio emulator, held to Twilio's OpenAPI description (issue 21).

A whole call lifecycle runs through our server against the emulator — create (Url, then inline
Twiml), fetch, live updates with Twiml, DTMF, hang up, fetch after the end, a fetch of an
unknown call — and every request the provider sent and every response the emulator returned is
validated against ../shared/reference/openapi/twilio_api_v2010.json. The official twilio SDK
adds what our provider never sends: an update with `Url`, a list, a DELETE.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twilio.rest import Client

from tests.contracts.twilio_openapi import (
    Exchange,
    Recorder,
    request_problems,
    response_problems,
)
from tests.providers.twilio.stack import ACCOUNT_SID, AUTH_TOKEN, script, serving
from tests.sim.twilio.app import TwimlApp, in_thread
from tests.support import free_port, wait_until
from voice_call.asgi_server import BackgroundServer
from voice_call.models import Speaker
from voice_call.sim.twilio import TwilioEmulator


class RecordingTwilio(TwilioEmulator):
    """The emulator, keeping every REST exchange it served."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exchanges: list[Exchange] = []

    def asgi_app(self) -> Any:
        return Recorder(super().asgi_app(), self.exchanges)


def problems(exchanges: list[Exchange]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for n, ex in enumerate(exchanges):
        wrong = request_problems(ex) + response_problems(ex)
        if wrong:
            found[f"{n}: {ex.method} {ex.path} {ex.body[:120]!r} -> {ex.status}"] = wrong
    return found


def recording_emulator(port: int) -> RecordingTwilio:
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    return RecordingTwilio(
        ACCOUNT_SID,
        AUTH_TOKEN,
        script=script(answer_delay_ms=200, reply_delay_ms=200),
        time_scale=0.05,
        voice_url=webhook,
        status_callback=webhook,
    )


async def test_provider_requests_and_emulator_responses_follow_twilio_openapi(
    tmp_path: Path,
) -> None:
    port = free_port()
    emu = recording_emulator(port)
    async with emu, serving(emu, tmp_path, port, {}) as stack:
        call_id = await stack.start_call("conversation", "Hello, this is the clinic.")
        record = await stack.wait_record(
            call_id, lambda r: any(e.speaker == Speaker.USER for e in r.transcript)
        )
        sid = record.provider_call_id
        assert sid is not None
        await stack.call("voicecall.speak", callId=call_id, message="One moment please.")
        await stack.call("voicecall.dtmf", callId=call_id, digits="12#")
        live = await stack.runtime.provider.get_call_status(sid)
        assert live.status == "in-progress"
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)
        await emu.wait_ended(sid)
        ended = await stack.runtime.provider.get_call_status(sid)
        assert ended.terminal
        missing = await stack.runtime.provider.get_call_status("CA" + "0" * 32)
        assert missing.status == "not-found"
        notify = await stack.start_call("notify", "Your table is ready.")
        await stack.wait_ended(notify)

    methods = {(ex.method, ex.path.endswith("Calls.json")) for ex in emu.exchanges}
    assert methods >= {("POST", True), ("POST", False), ("GET", False)}
    forms = [dict(ex.form()) for ex in emu.exchanges if ex.method == "POST"]
    assert any("Url" in f for f in forms) and any("Twiml" in f and "To" in f for f in forms)
    assert any(f.get("Status") == "completed" for f in forms)
    assert any(ex.status == 404 for ex in emu.exchanges)
    found = problems(emu.exchanges)
    assert found == {}, json.dumps(found, indent=1)


async def test_sdk_lifecycle_against_the_emulator_follows_twilio_openapi() -> None:
    hold = "<Response><Pause length='600'/></Response>"
    app = TwimlApp({"/moved": hold})
    emu = recording_emulator(free_port())
    async with BackgroundServer(app.asgi) as app_server, emu:
        app.base = app_server.url
        # the SDK's own host override: its Api domain's base_url
        client = Client(ACCOUNT_SID, AUTH_TOKEN)
        client.api.base_url = emu.url
        call = await in_thread(
            client.calls.create,
            to="+15550002000",
            from_="+15550001000",
            twiml=hold,
            status_callback=app.url("/status"),
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            timeout=30,
            machine_detection="Enable",
        )
        await wait_until(lambda: emu.calls[call.sid].answered_at, 10, what="the answer")
        assert (await in_thread(client.calls(call.sid).fetch)).status == "in-progress"
        await in_thread(client.calls(call.sid).update, url=app.url("/moved"), method="POST")
        await wait_until(lambda: "/moved" in app.paths(), 10, what="the redirect")
        await in_thread(client.calls(call.sid).update, twiml=hold)
        ended = await in_thread(client.calls(call.sid).update, status="completed")
        await emu.wait_ended(call.sid)
        assert (await in_thread(client.calls(call.sid).fetch)).status == ended.status
        assert await in_thread(client.calls(call.sid).delete)
    assert {ex.method for ex in emu.exchanges} == {"POST", "GET", "DELETE"}
    found = problems(emu.exchanges)
    assert found == {}, json.dumps(found, indent=1)


def test_the_validator_catches_what_twilio_would_refuse() -> None:
    """Not vacuous: a wrong enum, an unknown or missing field, an invented response field."""
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    form = {"content-type": "application/x-www-form-urlencoded", "authorization": "Basic eDp5"}
    bad = Exchange("POST", path, "", form, b"From=%2B15550001000&Method=PUT&Bogus=1", 201)
    bad.response_headers = {"content-type": "application/json"}
    bad.response_body = json.dumps({"sid": "CA1", "status": "dialing", "made_up": 1}).encode()
    wrong = " ".join(request_problems(bad) + response_problems(bad))
    for expected in (
        "'To' is a required property",
        "'PUT' is not one of",
        "'Bogus'",
        "'dialing' is not one of",
        "'made_up'",
    ):
        assert expected in wrong, wrong
    error = Exchange("GET", path.replace(".json", "/CA1.json"), "", {}, b"", 404)
    error.response_body = b'{"message": "gone"}'
    assert response_problems(error)
