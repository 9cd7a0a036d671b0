"""The emulator's Voice API, driven by the official plivo SDK (and raw HTTP for the edges)."""

from __future__ import annotations

import asyncio

import httpx
import plivo.exceptions
import pytest

from tests.sim.plivo.app import (
    AUTH_ID,
    AUTH_TOKEN,
    FakeApp,
    SdkClient,
    kinds,
    running,
    sdk_call,
)
from voice_call.sim.callee import CalleeScript

WAIT_LONG = "<Response><Wait length='600'/></Response>"


async def test_create_call_answers_201_call_fired() -> None:
    app = FakeApp(replies={"/answer": "<Response><Speak>Hi</Speak></Response>"})
    async with running(app) as emu:
        client = SdkClient(emu.url)
        response = await asyncio.to_thread(
            client.calls.create,
            from_="14155550100",
            to_="14155550199",
            answer_url=app.url("/answer"),
            hangup_url=app.url("/hangup"),
        )
        assert response.message == "call fired"
        assert response.api_id
        await emu.wait_ended(response.request_uuid)
    call = emu.calls[emu.requests[response.request_uuid]]
    assert (call.from_number, call.to_number, call.direction) == (
        "14155550100",
        "14155550199",
        "outbound",
    )
    assert all(r.signature_ok for r in app.received)


async def test_raw_create_call_status_and_body() -> None:
    app = FakeApp()
    async with running(app) as emu, httpx.AsyncClient(auth=(AUTH_ID, AUTH_TOKEN)) as http:
        response = await http.post(
            f"{emu.url}/v1/Account/{AUTH_ID}/Call/",
            json={"from": "14155550100", "to": "14155550199", "answer_url": app.url("/answer")},
        )
        assert response.status_code == 201
        body = response.json()
        assert body.keys() == {"api_id", "message", "request_uuid"}
        assert body["message"] == "call fired"
        # form bodies are accepted too
        form = await http.post(
            f"{emu.url}/v1/Account/{AUTH_ID}/Call/",
            data={"from": "14155550100", "to": "14155550198", "answer_url": app.url("/answer")},
        )
        assert form.status_code == 201
        await emu.wait_ended(body["request_uuid"])
        await emu.wait_ended(form.json()["request_uuid"])


async def test_live_call_then_hangup_then_cdr() -> None:
    app = FakeApp(replies={"/answer": WAIT_LONG})
    async with running(app) as emu:
        client = SdkClient(emu.url)
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda hook: hook.kind == "answer")
        call_uuid = emu.requests[request_uuid]
        live = await asyncio.to_thread(client.live_calls.get, call_uuid)
        assert live.call_status == "in-progress"
        assert (live.call_uuid, live.request_uuid, live.direction) == (
            call_uuid,
            request_uuid,
            "outbound",
        )
        with pytest.raises(plivo.exceptions.ResourceNotFoundError):  # no CDR while live
            await asyncio.to_thread(client.calls.get, call_uuid)
        await asyncio.to_thread(client.calls.delete, call_uuid)
        await emu.wait_ended(call_uuid)
        cdr = await asyncio.to_thread(client.calls.get, call_uuid)
        with pytest.raises(plivo.exceptions.ResourceNotFoundError):
            await asyncio.to_thread(client.live_calls.get, call_uuid)
    assert (cdr.call_uuid, cdr.call_direction, cdr.hangup_source) == (
        call_uuid,
        "outbound",
        "API Request",
    )
    assert cdr.hangup_cause_code == 4000 and cdr.answer_time and cdr.end_time
    assert cdr.resource_uri == f"/v1/Account/{AUTH_ID}/Call/{call_uuid}/"
    hangup = app.of("/hangup")[0].params
    assert (hangup["CallStatus"], hangup["HangupCause"], hangup["HangupSource"]) == (
        "completed",
        "NORMAL_CLEARING",
        "API Request",
    )


async def test_cancel_request_before_answer() -> None:
    app = FakeApp()
    async with running(app, script=CalleeScript(answer_delay_ms=60_000)) as emu:
        client = SdkClient(emu.url)
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda hook: hook.kind == "ring")
        await asyncio.to_thread(client.calls.cancel, request_uuid)
        call = await emu.wait_ended(request_uuid)
        with pytest.raises(plivo.exceptions.ResourceNotFoundError):  # nothing left to cancel
            await asyncio.to_thread(client.calls.cancel, request_uuid)
    assert kinds(emu) == ["ring", "hangup"]
    hangup = app.of("/hangup")[0].params
    assert (hangup["CallStatus"], hangup["HangupCause"]) == ("cancel", "ORIGINATOR_CANCEL")
    assert hangup["RequestUUID"] == request_uuid
    assert call.answered_at is None


async def test_delete_call_while_ringing_cancels_it() -> None:
    app = FakeApp()
    async with running(app, script=CalleeScript(answer_delay_ms=60_000)) as emu:
        client = SdkClient(emu.url)
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda hook: hook.kind == "ring")
        await asyncio.to_thread(client.calls.delete, emu.requests[request_uuid])
        call = await emu.wait_ended(request_uuid)
    assert call.status == "cancel"


async def test_transfer_runs_the_new_xml() -> None:
    app = FakeApp(replies={"/answer": WAIT_LONG})
    app.replies["/moved"] = "<Response><Speak>You have been moved</Speak><Hangup/></Response>"
    async with running(app) as emu:
        client = SdkClient(emu.url)
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda hook: hook.kind == "answer")
        call_uuid = emu.requests[request_uuid]
        response = await asyncio.to_thread(
            client.calls.transfer, call_uuid, legs="aleg", aleg_url=app.url("/moved")
        )
        assert response.message == "call transferred"
        call = await emu.wait_ended(call_uuid)
    assert kinds(emu) == ["ring", "answer", "transfer", "hangup"]
    assert app.of("/moved")[0].params["CallStatus"] == "in-progress"
    assert call.callee.heard == ["You have been moved"]
    assert all(r.signature_ok for r in app.received)


async def test_errors_through_the_sdk() -> None:
    app = FakeApp()
    async with running(app) as emu:
        wrong = SdkClient(emu.url, token="not-the-token")
        with pytest.raises(plivo.exceptions.AuthenticationError):
            await asyncio.to_thread(
                wrong.calls.create,
                from_="14155550100",
                to_="14155550199",
                answer_url=app.url("/answer"),
            )
        client = SdkClient(emu.url)
        for action in (client.calls.get, client.calls.delete, client.live_calls.get):
            with pytest.raises(plivo.exceptions.ResourceNotFoundError):
                await asyncio.to_thread(action, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(plivo.exceptions.ResourceNotFoundError):
            await asyncio.to_thread(
                client.calls.transfer,
                "00000000-0000-0000-0000-000000000000",
                legs="aleg",
                aleg_url=app.url("/x"),
            )
    assert emu.calls == {}


async def test_error_shapes_over_raw_http() -> None:
    app = FakeApp()
    async with running(app) as emu, httpx.AsyncClient() as http:
        base = f"{emu.url}/v1/Account/{AUTH_ID}"
        auth = (AUTH_ID, AUTH_TOKEN)
        cases = [
            (await http.post(f"{base}/Call/", json={}), 401),
            (await http.post(f"{base}/Call/", json={}, auth=(AUTH_ID, "bad")), 401),
            (await http.get(f"{emu.url}/v1/Account/MAOTHER0000000000001/Call/x/", auth=auth), 401),
            (await http.post(f"{base}/Call", json={}, auth=auth), 404),  # no trailing slash
            (await http.get(f"{base}/Nope/", auth=auth), 404),
            (await http.get(f"{base}/Call/", auth=auth), 405),
            (await http.post(f"{base}/Call/", json={"from": "1", "to": "2"}, auth=auth), 400),
            (
                await http.post(
                    f"{base}/Call/",
                    json={"from": "1", "to": "2", "answer_url": "ftp://x"},
                    auth=auth,
                ),
                400,
            ),
            (await http.post(f"{base}/Call/", content=b"{not json", auth=auth), 400),
            (await http.post(f"{base}/Call/x/", json={"legs": "aleg"}, auth=auth), 400),
        ]
        for response, status in cases:
            assert response.status_code == status, response.request.url
            body = response.json()
            assert body.keys() == {"api_id", "error"} and body["error"]


async def test_several_destinations_give_several_requests() -> None:
    app = FakeApp(replies={"/answer": "<Response><Speak>Hi</Speak></Response>"})
    async with running(app) as emu, httpx.AsyncClient(auth=(AUTH_ID, AUTH_TOKEN)) as http:
        response = await http.post(
            f"{emu.url}/v1/Account/{AUTH_ID}/Call/",
            json={
                "from": "14155550100",
                "to": "14155550101<14155550102",
                "answer_url": app.url("/answer"),
            },
        )
        uuids = response.json()["request_uuid"]
        assert isinstance(uuids, list) and len(uuids) == 2
        calls = [await emu.wait_ended(u) for u in uuids]
    assert [c.to_number for c in calls] == ["14155550101", "14155550102"]


def test_sdk_client_stays_pinned_to_the_emulator() -> None:
    client = SdkClient("http://127.0.0.1:9")
    client.base_uri = "https://api.plivo.com/v1/Account"  # what the SDK does before voice calls
    request = client.create_request("GET", ("Call", "abc"))
    assert request.url == f"http://127.0.0.1:9/v1/Account/{AUTH_ID}/Call/abc/"


async def test_send_digits_reaches_the_callee() -> None:
    app = FakeApp(replies={"/answer": WAIT_LONG})
    async with running(app) as emu, httpx.AsyncClient(auth=(AUTH_ID, AUTH_TOKEN)) as http:
        client = SdkClient(emu.url)
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda hook: hook.kind == "answer")
        call_uuid = emu.requests[request_uuid]
        response = await asyncio.to_thread(client.calls.send_digits, call_uuid, "12w#")
        assert response.message == "digits sent" and response.api_id
        dtmf = f"{emu.url}/v1/Account/{AUTH_ID}/Call/{call_uuid}/DTMF/"
        raw = await http.post(dtmf, json={"digits": "9", "leg": "aleg"})
        assert raw.status_code == 202
        refused = {
            "x": (await http.post(dtmf, json={"digits": "1x"})).json()["error"],
            "leg": (await http.post(dtmf, json={"digits": "1", "leg": "cleg"})).json()["error"],
            "none": (await http.post(dtmf, json={})).json()["error"],
        }
        gone = await http.post(dtmf.replace(call_uuid, "no-such-call"), json={"digits": "1"})
        await asyncio.to_thread(client.calls.delete, call_uuid)
        call = await emu.wait_ended(call_uuid)
        after = await http.post(dtmf, json={"digits": "1"})
    assert call.callee.digits == ["12w#", "9"]
    assert "[digits 12w#]" in call.callee.heard
    assert refused == {
        "x": "digits may hold only 0-9, *, #, A-D, w and W",
        "leg": "leg must be aleg or bleg",
        "none": "digits is a required parameter",
    }
    assert (gone.status_code, after.status_code) == (404, 404)
