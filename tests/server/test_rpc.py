"""JSON-RPC 2.0 at POST /rpc over a real socket (src/voice_call/server/rpc.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.server.stack import Rpc, server_config
from tests.support import wait_until
from voice_call.runtime import Runtime

TO = "+15555550123"


def auth(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.rpc_token}"}


async def post(http: httpx.AsyncClient, runtime: Runtime, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post("/rpc", content=content, headers=auth(runtime))


def error_of(reply: dict[str, Any]) -> tuple[int, str]:
    return reply["error"]["code"], reply["error"]["data"]["code"]


async def live_call(rpc: Rpc, runtime: Runtime, mode: str = "conversation") -> str:
    reply = await rpc("voicecall.initiate", {"to": TO, "message": "Hi", "mode": mode})
    call_id: str = reply["result"]["callId"]

    async def live() -> bool:
        record = await runtime.store.get(call_id)
        return record is not None and record.state.live and "initialMessage" not in record.metadata

    await wait_until(live)
    return call_id


# ------------------------------------------------------------------------ auth


async def test_missing_or_wrong_token_is_401_before_the_body(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "voicecall.status"}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {vc_runtime.rpc_token}"},
        {"Authorization": "Bearer"},
        {"Authorization": vc_runtime.rpc_token},
    ):
        response = await vc_http.post("/rpc", json=request, headers=headers)
        assert response.status_code == 401, headers
        assert "bearer token" in response.json()["error"]
        assert response.headers["www-authenticate"] == "Bearer"
    ok = await vc_http.post(
        "/rpc", json=request, headers={"authorization": f"bearer {vc_runtime.rpc_token}"}
    )
    assert ok.status_code == 200 and "result" in ok.json()


# ------------------------------------------------------------------------ protocol errors


async def test_parse_error(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    for body in (b"{", b"", b"\xff", b"[" * 100_000, b'{"a": "\\ud800"}', b"1" * 5000):
        response = await post(vc_http, vc_runtime, body)
        assert response.status_code == 200
        reply = response.json()
        assert reply["id"] is None and reply["jsonrpc"] == "2.0"
        assert error_of(reply) == (-32700, "invalid_request"), body[:20]
        assert reply["error"]["message"].startswith("parse error")


async def test_invalid_request(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    cases: list[tuple[Any, Any]] = [
        (1, None),
        ("x", None),
        ({"id": 1, "method": "voicecall.status"}, 1),  # no jsonrpc
        ({"jsonrpc": "1.0", "id": 2, "method": "voicecall.status"}, 2),
        ({"jsonrpc": "2.0", "id": 3}, 3),  # no method
        ({"jsonrpc": "2.0", "id": 4, "method": 7}, 4),
        ({"jsonrpc": "2.0", "id": 5, "method": "voicecall.status", "params": "x"}, 5),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "voicecall.status"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "voicecall.status"}, None),
        ([], None),
    ]
    for body, expected_id in cases:
        reply = (await post(vc_http, vc_runtime, body)).json()
        assert reply["id"] == expected_id, body
        assert error_of(reply) == (-32600, "invalid_request"), body


async def test_unknown_method_is_32601(rpc: Rpc) -> None:
    reply = await rpc("voicecall.nope", {})
    assert error_of(reply) == (-32601, "not_found")
    assert "voicecall.initiate" in reply["error"]["message"]


async def test_invalid_params_is_32602_with_a_clear_message(rpc: Rpc) -> None:
    reply = await rpc("voicecall.initiate", {"to": "555-1234", "message": "hi"})
    assert error_of(reply) == (-32602, "invalid_request")
    assert "E.164" in reply["error"]["message"] and "555-1234" in reply["error"]["message"]
    for method, params in (
        ("voicecall.initiate", {"to": TO}),
        ("voicecall.initiate", [TO]),
        ("voicecall.speak", {"callId": "x"}),
        ("voicecall.status", {"callId": "x", "bogus": 1}),
        ("voicecall.events", {"since": -1}),
        ("voicecall.events", {"limit": "5"}),
    ):
        reply = await rpc(method, params)
        assert error_of(reply) == (-32602, "invalid_request"), (method, params)


async def test_unknown_call_is_32001(rpc: Rpc) -> None:
    for method, extra in (
        ("voicecall.speak", {"message": "hi"}),
        ("voicecall.continue", {"message": "hi"}),
        ("voicecall.dtmf", {"digits": "1"}),
        ("voicecall.end", {}),
    ):
        reply = await rpc(method, {"callId": "no-such-call", **extra})
        assert error_of(reply) == (-32001, "not_found"), method
        assert "no-such-call" in reply["error"]["message"]


@pytest.mark.parametrize("vc_config", [server_config(mock={"silent": True})])
async def test_second_continue_while_one_waits_is_32002(rpc: Rpc, vc_runtime: Runtime) -> None:
    call_id = await live_call(rpc, vc_runtime)
    first = asyncio.create_task(rpc("voicecall.continue", {"callId": call_id, "message": "Q1?"}))

    async def waiting() -> bool:
        record = await vc_runtime.store.get(call_id)
        return record is not None and record.state.value == "listening" and not first.done()

    await wait_until(waiting)
    await asyncio.sleep(0.05)
    second = await rpc("voicecall.continue", {"callId": call_id, "message": "Q2?"})
    assert error_of(second) == (-32002, "conflict")
    assert "Already waiting" in second["error"]["message"]
    assert (await rpc("voicecall.end", {"callId": call_id}))["result"] == {"success": True}
    ended = await first
    assert error_of(ended) == (-32002, "conflict")  # the waiting turn fails when the call ends


async def test_unavailable_is_32003(rpc: Rpc) -> None:
    replies = [await rpc("voicecall.initiate", {"to": TO, "message": "hi"}) for _ in range(21)]
    assert all("result" in r for r in replies[:20])
    assert error_of(replies[20]) == (-32003, "unavailable")
    assert "maxConcurrentCalls" in replies[20]["error"]["message"]


# ------------------------------------------------------------------------ result shapes


# No bot: with one, its exchange with the callee can use up the callee's lines before
# `continue` asks for one (it did on a loaded machine), and `continue` then waits for nothing.
@pytest.mark.parametrize("vc_config", [server_config(responder={"provider": "none"})])
async def test_each_method_result_shape(rpc: Rpc, vc_runtime: Runtime) -> None:
    initiated = await rpc("voicecall.initiate", {"to": TO, "message": "Hi", "mode": "conversation"})
    assert set(initiated["result"]) == {"callId", "initiated"}
    assert initiated["result"]["initiated"] is True
    call_id = initiated["result"]["callId"]
    await live_call(rpc, vc_runtime)  # a second call, to list two

    listed = (await rpc("voicecall.status"))["result"]
    assert listed["found"] is True and len(listed["calls"]) == 2
    assert {c["callId"] for c in listed["calls"]} >= {call_id}
    one = (await rpc("voicecall.status", {"callId": call_id}))["result"]
    assert one["found"] is True and one["call"]["callId"] == call_id
    assert "transcript" not in one["call"]
    full = (await rpc("voicecall.status", {"callId": call_id, "full": True}))["result"]
    assert "transcript" in full["call"]
    assert (await rpc("voicecall.status", {"callId": "nope"}))["result"] == {"found": False}

    async def greeted() -> bool:
        record = await vc_runtime.store.get(call_id)
        return record is not None and "initialMessage" not in record.metadata

    await wait_until(greeted)
    await vc_runtime.manager.settle()
    reply = await rpc("voicecall.continue", {"callId": call_id, "message": "How are you?"})
    assert reply["result"]["success"] is True and isinstance(reply["result"]["transcript"], str)
    assert (await rpc("voicecall.speak", {"callId": call_id, "message": "OK"}))["result"] == {
        "success": True
    }
    assert (await rpc("voicecall.dtmf", {"callId": call_id, "digits": "1#"}))["result"] == {
        "success": True
    }
    assert (await rpc("voicecall.end", {"callId": call_id}))["result"] == {"success": True}

    events = (await rpc("voicecall.events", {"callId": call_id, "limit": 3}))["result"]
    assert len(events["events"]) == 3 and events["events"][0]["type"] == "call.created"
    assert events["nextSince"] == events["events"][-1]["seq"]
    rest = await rpc("voicecall.events", {"callId": call_id, "since": events["nextSince"]})
    kinds = [e["type"] for e in rest["result"]["events"]]
    # the end is logged; a carrier event still on its way then is only logged as ignored
    assert "call.ended" in kinds
    assert set(kinds[kinds.index("call.ended") + 1 :]) <= {"call.ignored"}, kinds
    empty = (await rpc("voicecall.events", {"since": 10**9}))["result"]
    assert empty == {"events": [], "nextSince": 10**9}


# ------------------------------------------------------------------------ batches, notifications


async def test_batch_mixes_results_errors_and_notifications(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "voicecall.status"},
        {"jsonrpc": "2.0", "method": "voicecall.status"},  # notification: no entry
        {"jsonrpc": "2.0", "id": 2, "method": "voicecall.nope"},
        {"jsonrpc": "2.0", "id": 3.5, "method": "voicecall.end", "params": {"callId": "x"}},
        {"jsonrpc": "2.0", "id": None, "method": "voicecall.status"},
        "junk",
    ]
    response = await post(vc_http, vc_runtime, batch)
    assert response.status_code == 200
    replies = response.json()
    assert [r["id"] for r in replies] == ["a", 2, 3.5, None, None]
    assert replies[0]["result"] == {"found": True, "calls": []}
    assert error_of(replies[1])[0] == -32601
    assert error_of(replies[2]) == (-32001, "not_found")
    assert replies[3]["result"]["found"] is True
    assert error_of(replies[4])[0] == -32600


async def test_notifications_get_no_reply(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    one = {"jsonrpc": "2.0", "method": "voicecall.status"}
    response = await post(vc_http, vc_runtime, one)
    assert (response.status_code, response.content) == (204, b"")
    bad = {"jsonrpc": "2.0", "method": "voicecall.nope"}  # even a failing notification
    response = await post(vc_http, vc_runtime, [one, bad])
    assert (response.status_code, response.content) == (204, b"")


async def test_oversized_batch_and_body(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": "voicecall.status"} for i in range(101)]
    reply = (await post(vc_http, vc_runtime, batch)).json()
    assert (
        error_of(reply) == (-32600, "invalid_request")
        and "larger than 100" in reply["error"]["message"]
    )
    big = {"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "pad": "x" * (1024 * 1024)}
    assert (await post(vc_http, vc_runtime, big)).status_code == 413
