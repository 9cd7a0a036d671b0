"""The emulator's REST surface through the official twilio SDK, and Twilio's error shapes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.base.exceptions import TwilioRestException

from tests.sim.twilio.app import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FAST,
    in_thread,
    sdk_client,
)
from tests.support import wait_until
from voice_call.sim.callee import CalleeScript
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.twilio.rest import ApiError, parse_create, parse_update

TO, FROM = "+15550001111", "+15550002222"
CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
HOLD = '<Response><Pause length="600"/></Response>'


@pytest.fixture
async def emu() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(
        ACCOUNT_SID, AUTH_TOKEN, CalleeScript(answer_delay_ms=0), time_scale=FAST
    ) as emulator:
        yield emulator


def assert_error(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) >= {"code", "message", "more_info", "status"}
    assert body["code"] == code and body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str) and body["message"]


async def test_create_returns_201_call_json(emu: TwilioEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        response = await http.post(CALLS, data={"To": TO, "From": FROM, "Twiml": HOLD})
    assert response.status_code == 201
    call = response.json()
    assert re.fullmatch(r"CA[0-9a-f]{32}", call["sid"])
    assert call["status"] == "queued" and call["direction"] == "outbound-api"
    assert call["account_sid"] == ACCOUNT_SID and call["api_version"] == "2010-04-01"
    assert call["to"] == TO and call["from"] == FROM
    assert call["start_time"] is None and call["end_time"] is None and call["duration"] is None
    assert call["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call['sid']}.json"
    assert call["subresource_uris"]["recordings"].endswith(f"/Calls/{call['sid']}/Recordings.json")
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", call["date_created"])


async def test_sdk_create_fetch_update(emu: TwilioEmulator) -> None:
    client = sdk_client(emu.url)
    created = await in_thread(
        client.calls.create,
        to=TO,
        from_=FROM,
        twiml=HOLD,
        status_callback_event=["initiated", "answered"],
        timeout=30,
    )
    assert isinstance(created.date_created, datetime)  # the SDK parsed the RFC 2822 date
    call = emu.calls[created.sid]
    await wait_until(lambda: call.answered_at is not None)
    fetched = await in_thread(client.calls(created.sid).fetch)
    assert fetched.status == "in-progress" and fetched.start_time is not None
    hung = await in_thread(client.calls(created.sid).update, status="completed")
    assert hung.status == "completed"
    ended = await emu.wait_ended(created.sid)
    assert ended.status == "completed"
    # Hanging up again is harmless; redirecting an ended call is error 21220.
    again = await in_thread(client.calls(created.sid).update, status="completed")
    assert again.status == "completed"
    with pytest.raises(TwilioRestException) as info:
        await in_thread(client.calls(created.sid).update, twiml="<Response/>")
    assert info.value.status == 400 and info.value.code == 21220
    assert await in_thread(client.calls(created.sid).delete)


async def test_401_wrong_or_missing_credentials(emu: TwilioEmulator) -> None:
    with pytest.raises(TwilioRestException) as info:
        await in_thread(
            sdk_client(emu.url, token="wrong").calls.create, to=TO, from_=FROM, twiml=HOLD
        )
    assert info.value.status == 401 and info.value.code == 20003
    async with httpx.AsyncClient(base_url=emu.url) as http:
        anonymous = await http.post(CALLS, data={"To": TO})
        wrong = await http.get(CALLS.replace(".json", "/CA0.json"), auth=(ACCOUNT_SID, "nope"))
    assert_error(anonymous, 401, 20003)
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert_error(wrong, 401, 20003)
    assert emu.calls == {}


async def test_404_unknown_call_path_or_account(emu: TwilioEmulator) -> None:
    with pytest.raises(TwilioRestException) as info:
        await in_thread(sdk_client(emu.url).calls("CA" + "0" * 32).fetch)
    assert info.value.status == 404 and info.value.code == 20404
    async with httpx.AsyncClient(base_url=emu.url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        unknown = await http.get(CALLS.replace(".json", "/CAdeadbeef.json"))
        other_account = await http.get("/2010-04-01/Accounts/AC" + "1" * 32 + "/Calls.json")
        other_path = await http.get("/2010-04-01/Accounts/" + ACCOUNT_SID + "/Messages.json")
    for response in (unknown, other_account, other_path):
        assert_error(response, 404, 20404)
    assert "CAdeadbeef" in unknown.json()["message"]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": FROM, "Twiml": HOLD}, 21201),
        ({"To": TO, "Twiml": HOLD}, 21213),
        ({"To": "5550001111", "From": FROM, "Twiml": HOLD}, 21211),
        ({"To": "+1-555-CALL-NOW", "From": FROM, "Twiml": HOLD}, 21211),
        ({"To": TO, "From": "nobody", "Twiml": HOLD}, 21212),
        ({"To": TO, "From": FROM}, 21205),
        ({"To": TO, "From": FROM, "Url": "not a url"}, 21205),
        ({"To": TO, "From": FROM, "Twiml": HOLD, "Method": "PUT"}, 21200),
        ({"To": TO, "From": FROM, "Twiml": HOLD, "StatusCallbackEvent": "hungup"}, 21200),
        ({"To": TO, "From": FROM, "Twiml": "<Response>" + "x" * 4000 + "</Response>"}, 21200),
    ],
)
async def test_400_invalid_create(emu: TwilioEmulator, form: dict[str, str], code: int) -> None:
    async with httpx.AsyncClient(base_url=emu.url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        response = await http.post(CALLS, data=form)
    assert_error(response, 400, code)
    assert emu.calls == {}


async def test_sdk_surfaces_invalid_to(emu: TwilioEmulator) -> None:
    with pytest.raises(TwilioRestException) as info:
        await in_thread(sdk_client(emu.url).calls.create, to="12", from_=FROM, twiml=HOLD)
    assert info.value.status == 400 and info.value.code == 21211


async def test_update_rejects_bad_status(emu: TwilioEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        sid = (await http.post(CALLS, data={"To": TO, "From": FROM, "Twiml": HOLD})).json()["sid"]
        response = await http.post(CALLS.replace(".json", f"/{sid}.json"), data={"Status": "busy"})
        live = await http.delete(CALLS.replace(".json", f"/{sid}.json"))
    assert_error(response, 400, 21200)
    assert_error(live, 400, 21220)  # a live call's record cannot be deleted


_FIELDS = [
    "To",
    "From",
    "Url",
    "Twiml",
    "Method",
    "Timeout",
    "StatusCallback",
    "StatusCallbackEvent",
    "StatusCallbackMethod",
    "MachineDetection",
    "ApplicationSid",
]
_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from([TO, FROM, "https://a.example/x", "GET", "POST", "60", "answered", "Enable"]),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), st.lists(_VALUES, min_size=1, max_size=3)))
def test_any_create_form_is_accepted_or_a_400(form: dict[str, list[str]]) -> None:
    try:
        request = parse_create(form)
    except ApiError as exc:
        assert exc.status == 400 and (21200 <= exc.code < 21300 or exc.code == 21609), exc
        return
    assert request.to and request.from_ and (request.url or request.twiml)
    assert 1 <= request.timeout <= 600
    assert request.status_callback_events <= {"initiated", "ringing", "answered", "completed"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Url", "Twiml", "Status", "Method"]), st.lists(_VALUES, min_size=1)
    )
)
def test_any_update_form_is_accepted_or_a_400(form: dict[str, list[str]]) -> None:
    try:
        request = parse_update(form)
    except ApiError as exc:
        assert exc.status == 400
        return
    assert request.status in (None, "completed", "canceled")


def test_a_status_callback_that_is_not_a_url_is_twilio_s_21609() -> None:
    """Found by the property above: the emulator answered 21502, not a voice API code."""
    form = {"To": [TO], "From": [FROM], "Twiml": ["<Response/>"], "StatusCallback": ["0"]}
    with pytest.raises(ApiError) as refused:
        parse_create(form)
    assert (refused.value.status, refused.value.code) == (400, 21609)
