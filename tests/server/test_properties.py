"""Property tests: whatever arrives at the webhook or /rpc, the answer is never a 5xx and a
rejected request changes nothing (src/voice_call/server/). The app is driven in-process through
httpx.ASGITransport for speed; the runtime is started by hand (the transport runs no lifespan).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.stack import server_config
from tests.support import wait_until
from voice_call.models import E164, EventType, Mode
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.rpc import ALL_METHODS

# Nothing a property sends may be logged at ERROR or with a traceback.
pytestmark = pytest.mark.usefixtures("no_logged_tracebacks")

HOOK = "/voice/webhook"
PROPERTY = settings(
    max_examples=int(os.environ.get("VC_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
not_a_number = st.text(max_size=20).filter(lambda s: not E164.match(s.strip()))
call_ids = st.sampled_from(["ghost", "", "x" * 200]) | st.text(max_size=12)

mock_event = st.fixed_dictionaries(
    {"type": st.sampled_from([t.value for t in EventType]) | st.text(max_size=12)},
    optional={
        "callId": call_ids,
        "providerCallId": call_ids,
        "transcript": st.text(max_size=30),
        "isFinal": json_values,
        "reason": st.sampled_from(["completed", "ringing", "busy"]) | st.text(max_size=8),
        "timestamp": json_values,
        "digits": json_values,
        "extra": json_values,
    },
)
webhook_payloads = st.one_of(
    st.builds(lambda e: {"event": e}, mock_event),
    st.builds(lambda es: {"events": es}, st.lists(mock_event, max_size=4)),
    json_values,
)

rpc_params = (
    st.fixed_dictionaries(
        {},
        optional={
            "to": not_a_number,
            "message": st.text(max_size=30),
            "callId": call_ids,
            "mode": st.sampled_from(["notify", "conversation", "x"]),
            "digits": st.text(max_size=8),
            "since": json_values,
            "limit": json_values,
            "full": json_values,
            "sid": json_values,
        },
    )
    | json_values
)
rpc_request = st.fixed_dictionaries(
    {"method": st.sampled_from(ALL_METHODS) | st.text(max_size=20)},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values,
        "id": json_values,
        "params": rpc_params,
    },
)
rpc_payloads = st.one_of(rpc_request, st.lists(rpc_request, max_size=5), json_values)


@pytest.fixture
async def asgi(vc_home: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, str]]:
    config = server_config(responder={"provider": "none"}, mock={"silent": True})
    runtime = Runtime(config, vc_home)
    await runtime.start()
    try:
        # One live call, so "changes nothing" covers the active-call list too.
        record = await runtime.manager.initiate(
            to="+15555550123", message="Hi", mode=Mode.CONVERSATION
        )

        async def settled() -> bool:
            current = await runtime.store.get(record.call_id)
            return current is not None and current.state.value == "listening"

        await wait_until(settled)
        await runtime.manager.settle()
        transport = httpx.ASGITransport(app=build_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http, runtime, record.call_id
    finally:
        await runtime.stop()


async def state(runtime: Runtime) -> tuple[int, list[tuple[str, str]]]:
    active = await runtime.manager.active()
    return await runtime.store.last_seq(), [(c.call_id, c.state.value) for c in active]


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()  # NaN/Infinity stay in: Python's parser accepts them


@PROPERTY
@given(body=st.binary(max_size=2048) | webhook_payloads.map(body_of))
async def test_webhook_never_5xx_and_a_rejection_changes_nothing(
    asgi: tuple[httpx.AsyncClient, Runtime, str], body: bytes
) -> None:
    http, runtime, _ = asgi
    before = await state(runtime)
    response = await http.post(HOOK, content=body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)
        assert await state(runtime) == before
    else:  # accepted: only inbound-looking events may have created a (rejected) inbound call
        assert all(isinstance(r, str) for r in response.json()["results"])


@PROPERTY
@given(body=st.binary(max_size=2048) | rpc_payloads.map(body_of))
async def test_rpc_never_5xx_and_changes_nothing(
    asgi: tuple[httpx.AsyncClient, Runtime, str], body: bytes
) -> None:
    http, runtime, _ = asgi
    before = await state(runtime)
    response = await http.post(
        "/rpc", content=body, headers={"Authorization": f"Bearer {runtime.rpc_token}"}
    )
    assert response.status_code in (200, 204), response.text
    if response.status_code == 200:
        replies = response.json()
        for reply in replies if isinstance(replies, list) else [replies]:
            assert reply["jsonrpc"] == "2.0" and ("result" in reply) != ("error" in reply)
            if "error" in reply:
                assert isinstance(reply["error"]["code"], int)
                assert isinstance(reply["error"]["message"], str)
                assert reply["error"]["code"] != -32603, reply  # no internal errors
    # no number in these requests is valid and no call id exists: nothing may change
    assert await state(runtime) == before


@PROPERTY
@given(body=st.binary(max_size=512), token=st.text(max_size=40))
async def test_rpc_without_the_token_is_401_and_changes_nothing(
    asgi: tuple[httpx.AsyncClient, Runtime, str], body: bytes, token: str
) -> None:
    http, runtime, _ = asgi
    before = await state(runtime)
    headers = {"Authorization": f"Bearer {token.encode('ascii', 'ignore').decode()}"}
    response = await http.post("/rpc", content=body, headers=headers)
    assert response.status_code == 401
    assert await state(runtime) == before
