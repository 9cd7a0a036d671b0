"""The console's controls and history over HTTP: the command layer's results and errors."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from tests.server.console.stack import GREETING, logged_in
from tests.server.stack import Rpc
from tests.support import wait_until
from voice_call.models import CallState
from voice_call.runtime import Runtime


@pytest.fixture
async def console(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> httpx.AsyncClient:
    csrf = await logged_in(vc_http, vc_runtime)
    vc_http.headers["X-CSRF-Token"] = csrf
    return vc_http


@pytest.mark.parametrize(
    ("name", "params", "method", "status"),
    [
        ("initiate", {"to": "12345", "message": "hi"}, "voicecall.initiate", 400),
        ("initiate", {"message": "hi", "extra": 1}, "voicecall.initiate", 400),
        ("speak", {"callId": "nope", "message": "hi"}, "voicecall.speak", 404),
        ("dtmf", {"callId": "nope", "digits": "x"}, "voicecall.dtmf", 400),
        ("end", {"callId": "nope"}, "voicecall.end", 404),
        ("end", [], "voicecall.end", 400),
    ],
)
async def test_control_errors_are_the_rpc_errors(
    console: httpx.AsyncClient,
    rpc: Rpc,
    name: str,
    params: object,
    method: str,
    status: int,
) -> None:
    response = await console.post(f"/console/api/commands/{name}", json=params)
    expected = (await rpc(method, params))["error"]
    assert response.status_code == status
    assert response.json() == {"error": expected["message"], "code": expected["data"]["code"]}


@pytest.mark.parametrize(
    ("name", "body", "status", "reason"),
    [
        ("transfer", b"{}", 404, "unknown control"),
        ("end", b"{not json", 400, "JSON object"),
        ("end", b"x" * 2_000_000, 413, ""),
    ],
)
async def test_bad_control_requests_are_4xx_with_a_reason(
    console: httpx.AsyncClient, name: str, body: bytes, status: int, reason: str
) -> None:
    response = await console.post(f"/console/api/commands/{name}", content=body)
    assert response.status_code == status
    assert reason in response.json()["error"]


async def test_place_speak_dtmf_end_and_find_it_in_history(
    console: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    placed = await console.post(
        "/console/api/commands/initiate", json={"message": GREETING, "mode": "conversation"}
    )
    assert placed.status_code == 200 and placed.json()["initiated"] is True
    call_id = placed.json()["callId"]

    async def live() -> bool:
        record = await vc_runtime.store.get(call_id)
        return record is not None and record.state.live

    await wait_until(live, 20, what="the call to be answered")
    listed = (await console.get("/console/api/calls")).json()
    assert [c["callId"] for c in listed["calls"]] == [call_id]
    for name, params in [("speak", {"message": "One moment."}), ("dtmf", {"digits": "12#"})]:
        response = await console.post(
            f"/console/api/commands/{name}", json={"callId": call_id, **params}
        )
        assert response.json() == {"success": True}, response.text
    ended = await console.post("/console/api/commands/end", json={"callId": call_id})
    assert ended.json() == {"success": True}
    record = (await console.get(f"/console/api/calls/{call_id}")).json()["call"]
    assert record["state"] == record["endReason"] == CallState.HANGUP_BOT
    assert "One moment." in [line["text"] for line in record["transcript"]]

    async def found(query: str) -> list[str]:
        response = await console.get(f"/console/api/history?{query}")
        assert response.status_code == 200, response.text
        return [c["callId"] for c in response.json()["calls"]]

    today = dt.datetime.fromtimestamp(record["startedAt"], dt.UTC).date().isoformat()
    assert await found("number=%2B1555555") == [call_id]
    assert await found(f"since={today}&until={today}&state=hangup-bot") == [call_id]
    assert await found("number=999") == []
    assert await found("state=busy") == []
    assert await found("until=2000-01-01") == []
