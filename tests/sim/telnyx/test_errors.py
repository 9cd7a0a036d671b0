"""Telnyx emulator error shapes and webhook delivery failures."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tests.sim.telnyx.app import API_KEY, CONNECTION_ID, running
from voice_call.sim.callee import CalleeScript
from voice_call.sim.telnyx import TelnyxEmulator

SCALE = 0.05


def emulator(script: CalleeScript | None = None) -> TelnyxEmulator:
    return TelnyxEmulator(
        API_KEY, script=script or CalleeScript(answer_delay_ms=100), time_scale=SCALE
    )


def only_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"errors"}
    assert len(body["errors"]) == 1
    error: dict[str, Any] = body["errors"][0]
    assert {"code", "title", "detail"} <= set(error)
    assert isinstance(error["code"], str)
    return error


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {API_KEY}", API_KEY])
async def test_401_without_the_right_bearer_key(authorization: str | None) -> None:
    emu = emulator()
    async with running(emu) as app:
        headers = {} if authorization is None else {"Authorization": authorization}
        async with httpx.AsyncClient(base_url=emu.url, headers=headers) as anonymous:
            response = await anonymous.post("/v2/calls", json={"to": "+15550002000"})
            assert response.status_code == 401
            assert only_error(response)["code"] == "10009"
            assert (await anonymous.get("/v2/calls/v3:nope")).status_code == 401
        assert app.events == []


async def test_404_for_unknown_calls_actions_and_paths() -> None:
    emu = emulator()
    async with running(emu) as app:
        assert app.api is not None
        for response in (
            await app.api.get("/v2/calls/v3:does-not-exist"),
            await app.command("v3:does-not-exist", "hangup"),
            await app.api.get("/v2/no-such-thing"),
        ):
            assert response.status_code == 404
            assert only_error(response)["code"] == "10005"
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        response = await app.command(call_id, "teleport")
        assert response.status_code == 404
        assert only_error(response)["code"] == "10005"


async def test_422_for_a_command_on_an_ended_call() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        await app.wait_for("call.answered")
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)
        for action in ("speak", "hangup"):
            response = await app.command(call_id, action, payload="Hi", voice="female")
            assert response.status_code == 422
            error = only_error(response)
            assert (error["code"], error["title"]) == ("90018", "Call has already ended")


@pytest.mark.parametrize(
    ("body", "code", "pointer"),
    [
        ({"connection_id": None}, "10004", "/connection_id"),
        ({"to": None}, "10004", "/to"),
        ({"to": "555-0100"}, "10016", "/to"),
        ({"from": "12"}, "10016", "/from"),
        ({"to": ["+15550002000", "+15550003000"]}, "10015", "/to"),
        ({"timeout_secs": 2}, "10015", "/timeout_secs"),
        ({"client_state": "not base64!"}, "10015", "/client_state"),
        ({"webhook_url": "ftp://x"}, "10003", "/webhook_url"),
        ({"stream_url": "http://127.0.0.1/ws"}, "10003", "/stream_url"),
        ({"stream_url": "ws://127.0.0.1/ws", "stream_track": "left"}, "10015", "/stream_track"),
    ],
)
async def test_422_for_invalid_dial_bodies(body: dict[str, Any], code: str, pointer: str) -> None:
    emu = emulator()
    async with running(emu) as app:
        response = await app.dial(**body)
        assert response.status_code == 422
        error = only_error(response)
        assert error["code"] == code
        assert error["source"] == {"pointer": pointer}
        assert emu.calls == {}


async def test_422_for_invalid_commands() -> None:
    emu = emulator(script=CalleeScript(answer_delay_ms=60_000))
    async with running(emu) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        ringing = await app.command(call_id, "speak", payload="Hi", voice="female")
        assert ringing.status_code == 422  # not answered yet
        outbound_answer = await app.command(call_id, "answer")
        assert outbound_answer.status_code == 422  # only an incoming parked call is answered
        await emu.remote_hangup(call_id)


async def test_422_for_missing_command_fields() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        await app.wait_for("call.answered")
        cases = [
            ("speak", {"voice": "female"}, "/payload"),
            ("speak", {"payload": "Hi"}, "/voice"),
            ("speak", {"payload": "x" * 3001, "voice": "female"}, "/payload"),
            ("send_dtmf", {"digits": "12x"}, "/digits"),
            ("streaming_start", {}, "/stream_url"),
            ("playback_start", {}, "/audio_url"),
        ]
        for action, body, pointer in cases:
            response = await app.command(call_id, action, **body)
            assert response.status_code == 422, (action, body)
            assert only_error(response)["source"] == {"pointer": pointer}


async def test_400_for_a_body_that_is_not_json() -> None:
    emu = emulator()
    async with running(emu) as app:
        assert app.api is not None
        response = await app.api.post(
            "/v2/calls", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert only_error(response)["code"] == "10015"


async def test_failed_webhooks_are_retried_with_the_attempt_number() -> None:
    emu = emulator()
    async with running(emu, fail_first=2) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        await app.wait_for("call.answered")
        initiated = [h for h in emu.webhooks if h.kind == "call.initiated"]
        assert [h.status_code for h in initiated] == [500, 500, 200]
        assert [h.params["meta"]["attempt"] for h in initiated] == [1, 2, 3]
        assert len({h.params["data"]["id"] for h in initiated}) == 1  # one event, three tries
        assert app.types(call_id) == ["call.initiated", "call.answered"]


async def test_unreachable_webhook_url_is_logged_not_fatal() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/webhook"
    emu = emulator()
    async with running(emu) as app:
        response = await app.dial(webhook_url=dead, connection_id=CONNECTION_ID)
        call_id = response.json()["data"]["call_control_id"]
        await emu.webhooks.wait_for(lambda h: h.kind == "call.answered", timeout=5)
        await app.command(call_id, "hangup")
        ended = await emu.wait_ended(call_id)
        assert ended.hangup_cause == "normal_clearing"
        attempts = [h for h in emu.webhooks if h.kind == "call.initiated"]
        assert len(attempts) == 3
        assert all(h.status_code is None and h.url == dead for h in attempts)
        assert app.events == []
