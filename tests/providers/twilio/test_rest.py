"""The Twilio REST client and the provider's REST-facing actions, over httpx.MockTransport:
request shapes, regional hosts, the 21220 retry, and clear errors that never leak the token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.models import CallRecord, Direction, Mode, Speaker, TranscriptEntry
from voice_call.providers.base import DialRequest, ProviderError
from voice_call.providers.twilio.provider import TwilioProvider
from voice_call.providers.twilio.rest import TwilioApiError, TwilioRest, api_base

SID = "AC" + "3" * 32
TOKEN = "super-secret-auth-token-000111"
CALL = "CA" + "9" * 32
Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: int, message: str) -> httpx.Response:
    body = {"code": code, "message": message, "more_info": "x", "status": status}
    return httpx.Response(status, json=body)


class Recorder:
    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer

    def form(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(self.requests[index].content.decode(), keep_blank_values=True)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def rest(recorder: Recorder, base: str = "https://api.twilio.com/2010-04-01") -> TwilioRest:
    return TwilioRest(
        SID, TOKEN, base, sleep=recorder.sleep, transport=httpx.MockTransport(recorder)
    )


def twilio(recorder: Recorder, **extra: Any) -> TwilioProvider:
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": "+15550001000",
        "twilio": {"accountSid": SID, "authToken": TOKEN, "voice": "nova"},
        "publicUrl": "https://voice.example.com/voice/webhook?tenant=a",
        "ringTimeoutMs": 25_500,
        "maxDurationSeconds": 120,
    }
    raw.update(extra)
    provider = TwilioProvider(parse_config(raw, env={}), RealClock(), rest=rest(recorder))
    return provider


def record(**fields: Any) -> CallRecord:
    base: dict[str, Any] = {
        "call_id": "11111111-2222-3333-4444-555555555555",
        "provider": "twilio",
        "provider_call_id": CALL,
        "direction": Direction.OUTBOUND,
        "mode": Mode.CONVERSATION,
        "from_number": "+15550001000",
        "to_number": "+15550002000",
        "started_at": 0.0,
    }
    base.update(fields)
    return CallRecord(**base)


@pytest.mark.parametrize(
    ("region", "override", "expected"),
    [
        ("us1", None, "https://api.twilio.com/2010-04-01"),
        ("ie1", None, "https://api.dublin.ie1.twilio.com/2010-04-01"),
        ("au1", None, "https://api.sydney.au1.twilio.com/2010-04-01"),
        ("ie1", "http://127.0.0.1:9999/", "http://127.0.0.1:9999/2010-04-01"),
        ("us1", "http://sim/2010-04-01", "http://sim/2010-04-01"),
    ],
)
def test_regional_hosts_and_base_override(region: str, override: str | None, expected: str) -> None:
    assert api_base(region, override) == expected


async def test_conversation_dial_asks_for_every_status_event_and_a_ring_timeout() -> None:
    recorder = Recorder(httpx.Response(201, json={"sid": CALL, "status": "queued"}))
    provider = twilio(recorder)
    result = await provider.initiate_call(
        DialRequest("c-1", "+15550001000", "+15550002000", "", "conversation", "Hi")
    )
    assert result.provider_call_id == CALL and result.status == "queued"
    request = recorder.requests[0]
    assert request.url == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Calls.json"
    assert request.headers["authorization"].startswith("Basic ")
    form = recorder.form()
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["Timeout"] == ["26"] and form["TimeLimit"] == ["180"]
    assert "Twiml" not in form
    url = urlsplit(form["Url"][0])
    assert url.netloc == "voice.example.com" and url.path == "/voice/webhook"
    query = parse_qs(url.query)
    assert query["tenant"] == ["a"] and query["type"] == ["voice"] and query["callId"] == ["c-1"]
    status = parse_qs(urlsplit(form["StatusCallback"][0]).query)
    assert status["type"] == ["status"] and "flow" not in status


async def test_notify_dial_hands_over_escaped_say_and_a_redirect_once_said() -> None:
    recorder = Recorder(httpx.Response(201, json={"sid": CALL, "status": "queued"}))
    provider = twilio(recorder)
    message = 'Pick up <b>"milk"</b> & eggs'
    await provider.initiate_call(
        DialRequest("c-2", "+15550001000", "+15550002000", "", "notify", message)
    )
    form = recorder.form()
    assert "Url" not in form
    [twiml] = form["Twiml"]
    assert twiml.startswith(
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say voice="Polly.Salli" language="en-US">'
        'Pick up &lt;b&gt;"milk"&lt;/b&gt; &amp; eggs</Say><Redirect method="POST">'
        "https://voice.example.com/voice/webhook?tenant=a&amp;type=played&amp;callId=c-2&amp;n="
    )
    assert twiml.endswith("</Redirect></Response>")  # the hang-up is ours, once it was said
    assert parse_qs(urlsplit(form["StatusCallback"][0]).query)["flow"] == ["inline"]


async def test_notify_too_long_for_inline_twiml_is_refused_before_dialing() -> None:
    recorder = Recorder(httpx.Response(201, json={"sid": CALL}))
    with pytest.raises(ProviderError, match="too long"):
        await twilio(recorder).initiate_call(
            DialRequest("c", "+15550001000", "+15550002000", "", "notify", "&" * 900)
        )
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(401, 20003, "Authenticate"), "HTTP 401, error 20003): Authenticate — check"),
        (error(404, 20404, "not found"), "HTTP 404, error 20404): not found"),
        (error(429, 20429, "Too Many Requests"), "rate limiting"),
        (error(503, 20500, "Service Unavailable"), "HTTP 503, error 20500"),
        (httpx.Response(502, text="<html>bad gateway</html>"), "HTTP 502): Bad Gateway"),
        (error(400, 21211, "The 'To' number is not valid"), "error 21211): The 'To' number"),
    ],
)
async def test_errors_are_clear_and_never_name_the_token(
    response: httpx.Response, expected: str
) -> None:
    recorder = Recorder(response)
    with pytest.raises(TwilioApiError) as caught:
        await rest(recorder).create_call({"To": "+1", "From": "+2", "Url": "http://x"})
    text = str(caught.value)
    assert text.startswith("Twilio create call failed (") and expected in text
    assert TOKEN not in text


async def test_transport_failures_and_timeouts_are_provider_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderError, match="could not reach Twilio"):
        await rest(Recorder(refuse)).fetch_call(CALL)
    with pytest.raises(ProviderError, match="no answer in time"):
        await rest(Recorder(slow)).fetch_call(CALL)
    with pytest.raises(ProviderError, match="not JSON"):
        await rest(Recorder(httpx.Response(200, text="<xml/>"))).fetch_call(CALL)
    with pytest.raises(ProviderError, match="not a Twilio call sid"):
        await rest(Recorder(httpx.Response(200, json={}))).fetch_call("../Accounts")


async def test_live_update_retries_the_not_in_progress_race() -> None:
    busy = error(400, 21220, "Call is not in-progress. Cannot redirect.")
    recorder = Recorder(busy, busy, httpx.Response(200, json={"sid": CALL}))
    await rest(recorder).update_call(CALL, {"Twiml": "<Response/>"})
    assert len(recorder.requests) == 3 and recorder.sleeps == [0.25, 0.75]
    stuck = Recorder(busy)
    with pytest.raises(TwilioApiError, match="21220"):
        await rest(stuck).update_call(CALL, {"Twiml": "<Response/>"})
    assert len(stuck.requests) == 3
    other = Recorder(error(400, 21211, "nope"))
    with pytest.raises(TwilioApiError):
        await rest(other).update_call(CALL, {"Twiml": "<Response/>"})
    assert len(other.requests) == 1


async def test_hangup_tolerates_calls_that_are_already_gone() -> None:
    for gone in (error(404, 20404, "gone"), error(400, 21220, "not in progress")):
        recorder = Recorder(gone)
        await twilio(recorder).hangup(record(), "hangup-bot")
        assert recorder.form() == {"Status": ["completed"]}
    with pytest.raises(ProviderError):
        await twilio(Recorder(error(500, 20500, "oops"))).hangup(record(), "hangup-bot")


async def test_refused_inbound_call_is_not_hung_up_over_rest() -> None:
    recorder = Recorder(httpx.Response(200, json={}))
    inbound = record(direction=Direction.INBOUND)
    await twilio(recorder).hangup(inbound, "inbound-policy")
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("response", "status", "terminal", "unknown"),
    [
        (httpx.Response(200, json={"status": "in-progress"}), "in-progress", False, False),
        (httpx.Response(200, json={"status": "ringing"}), "ringing", False, False),
        (httpx.Response(200, json={"status": "completed"}), "completed", True, False),
        (httpx.Response(200, json={"status": "canceled"}), "canceled", True, False),
        (httpx.Response(200, json={"status": "no-answer"}), "no-answer", True, False),
        (error(404, 20404, "gone"), "not-found", True, False),
        (error(503, 20500, "down"), None, False, True),
        (httpx.Response(200, json={}), "unknown", False, True),
    ],
)
async def test_call_status_for_restore(
    response: httpx.Response, status: str | None, terminal: bool, unknown: bool
) -> None:
    result = await twilio(Recorder(response)).get_call_status(CALL)
    assert (result.terminal, result.unknown) == (terminal, unknown)
    if status is not None:
        assert result.status == status


async def test_speak_and_listen_updates() -> None:
    recorder = Recorder(httpx.Response(200, json={"sid": CALL}))
    provider = twilio(recorder)
    call = record()
    await provider.speak(call, "Hello & welcome")
    twiml = recorder.form()["Twiml"][0]
    assert twiml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Gather ')
    assert 'input="dtmf speech"' in twiml and 'speechTimeout="1"' in twiml
    assert '<Say voice="Polly.Salli" language="en-US">Hello &amp; welcome</Say></Gather>' in twiml
    assert "type=reprompt" in twiml and "</Redirect></Response>" in twiml
    # listening right after a prompt leaves the prompt (and its Gather) alone
    spoken = call.model_copy(update={"transcript": [_entry(Speaker.BOT, "Hello & welcome")]})
    await provider.start_listening(spoken, "tok-1")
    assert len(recorder.requests) == 1
    # after the caller spoke, listening installs a Gather that carries the turn token
    answered = call.model_copy(update={"transcript": [_entry(Speaker.USER, "hi")]})
    await provider.start_listening(answered, "tok-2")
    twiml = recorder.form()["Twiml"][0]
    assert "turnToken=tok-2" in twiml and "<Say" not in twiml
    # a manager that records the waiting turn's token gets it into the prompt's Gather
    with_token = call.model_copy(update={"metadata": {"turnToken": "tok-3"}})
    await provider.speak(with_token, "Which day?")
    assert "turnToken=tok-3" in recorder.form()["Twiml"][0]
    # DTMF: the digits (mapped to Twilio's alphabet), then listening again
    await provider.send_dtmf(call, "1,2W#")
    twiml = recorder.form()["Twiml"][0]
    assert '<Play digits="1w2ww#" />' in twiml and "<Gather" in twiml
    # speaking on a notify call says it, then reports it was said, as notify does
    await provider.speak(record(mode=Mode.NOTIFY), "Bye")
    assert "Bye</Say><Redirect" in recorder.form()["Twiml"][0]
    assert "type=played" in recorder.form()["Twiml"][0]
    assert all(r.url.path.endswith(f"/Calls/{CALL}.json") for r in recorder.requests)


def _entry(speaker: Speaker, text: str) -> TranscriptEntry:
    return TranscriptEntry(at=1.0, speaker=speaker, text=text)


async def test_close_closes_the_http_client() -> None:
    recorder = Recorder(httpx.Response(200, json={}))
    provider = twilio(recorder)
    await provider.close()
    assert provider.rest._http.is_closed


def test_missing_credentials_are_refused() -> None:
    config = parse_config(
        {"provider": "twilio", "fromNumber": "+15550001000", "enabled": False}, env={}
    )
    with pytest.raises(ProviderError, match="accountSid"):
        TwilioProvider(config, RealClock())


async def test_dialing_without_a_webhook_url_is_refused() -> None:
    recorder = Recorder(httpx.Response(201, json={"sid": CALL}))
    provider = twilio(recorder)
    provider.set_webhook_url("")
    with pytest.raises(ProviderError, match="no webhook URL"):
        await provider.initiate_call(
            DialRequest("c", "+15550001000", "+15550002000", "", "conversation", "Hi")
        )
    assert recorder.requests == []
