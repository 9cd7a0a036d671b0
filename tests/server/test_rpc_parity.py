"""The plugin's newer RPC methods over a real loopback server: `voicecall.start` (an alias of
`initiate`) and the continue that holds no request open (`continue.start` + `continue.result`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.server.stack import Rpc, server_config
from tests.server.test_rpc import TO, error_of, live_call
from tests.support import StolenTime, wait_until
from voice_call.runtime import Runtime

SILENT = server_config(mock={"silent": True}, responder={"provider": "none"})
SCRIPTED = server_config(
    mock={"replies": ["Hello?", "Tuesday is fine."], "replyDelayMs": 300},
    responder={"provider": "none"},
)


async def test_start_is_initiate(rpc: Rpc, vc_runtime: Runtime) -> None:
    reply = await rpc("voicecall.start", {"to": TO, "message": "Hi", "mode": "notify"})
    assert set(reply["result"]) == {"callId", "initiated"} and reply["result"]["initiated"]
    record = await vc_runtime.store.get(reply["result"]["callId"])
    assert record is not None and record.mode.value == "notify" and record.to_number == TO
    bad = await rpc("voicecall.start", {"to": "555-1234", "message": "hi"})
    assert error_of(bad) == (-32602, "invalid_request") and "E.164" in bad["error"]["message"]
    unknown = await rpc("voicecall.nope", {})
    for name in ("voicecall.start", "voicecall.continue.start", "voicecall.continue.result"):
        assert name in unknown["error"]["message"]


@pytest.mark.parametrize("vc_config", [SCRIPTED])
async def test_continue_start_answers_at_once_and_result_gives_the_reply(
    rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await live_call(rpc, vc_runtime)
    await wait_until(lambda: _heard(vc_runtime, call_id, "Hello?"))

    with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
        began = time.monotonic()
        started = await rpc("voicecall.continue.start", {"callId": call_id, "message": "Tue?"})
        took_s = time.monotonic() - began
    # the callee answers 300 ms after listening starts: an answer before that did not wait
    assert took_s < 0.3 + stolen.ms / 1000, (took_s, stolen.ms)
    handle = started["result"]
    assert handle["callId"] == call_id and handle["status"] == "pending"
    assert handle["operationId"] == handle["turnId"]
    assert handle["pollTimeoutMs"] == vc_runtime.config.transcript_timeout_ms + 38_000

    pending = (await rpc("voicecall.continue.result", {"turnId": handle["turnId"]}))["result"]
    assert pending["done"] is False and pending["status"] == "pending"
    again = await rpc("voicecall.continue.start", {"callId": call_id, "message": "Tue?"})
    assert error_of(again) == (-32002, "conflict") and "Already waiting" in str(again)

    params = {"callId": call_id, "turnId": handle["turnId"], "timeoutMs": 5000}
    done = (await rpc("voicecall.continue.result", params))["result"]
    assert done == {
        "callId": call_id,
        "turnId": handle["turnId"],
        "done": True,
        "status": "completed",
        "transcript": "Tuesday is fine.",
    }
    # fetched again (a lost reply): the same answer, by the plugin's name for the handle too
    by_operation = {"operationId": handle["operationId"]}
    assert (await rpc("voicecall.continue.result", by_operation))["result"] == done
    record = await vc_runtime.store.get(call_id)
    assert record is not None and record.latency[-1].kind.value == "continue"
    assert [e.text for e in record.transcript][-2:] == ["Tue?", "Tuesday is fine."]


@pytest.mark.parametrize("vc_config", [SILENT])
async def test_a_waiting_turn_fails_when_the_call_ends_and_is_then_dropped(
    rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await live_call(rpc, vc_runtime)
    handle = (await rpc("voicecall.continue.start", {"callId": call_id, "message": "Hi?"}))[
        "result"
    ]
    waiting = asyncio.create_task(
        rpc("voicecall.continue.result", {"turnId": handle["turnId"], "timeoutMs": 10_000})
    )
    await wait_until(lambda: _state(vc_runtime, call_id, "listening"))
    assert not waiting.done()
    assert (await rpc("voicecall.end", {"callId": call_id}))["result"] == {"success": True}
    failed = (await waiting)["result"]
    assert failed["done"] is True and failed["status"] == "failed"
    assert failed["errorCode"] == "conflict" and "Call ended" in failed["error"]
    # fetched once after its call ended: gone, and nothing of it is kept
    gone = await rpc("voicecall.continue.result", {"turnId": handle["turnId"]})
    assert error_of(gone) == (-32001, "not_found") and "continue.start" in str(gone)


@pytest.mark.parametrize("vc_config", [SILENT])
async def test_continue_start_refuses_what_continue_refuses(rpc: Rpc, vc_runtime: Runtime) -> None:
    unknown = await rpc("voicecall.continue.start", {"callId": "no-such-call", "message": "hi"})
    assert error_of(unknown) == (-32001, "not_found") and "no-such-call" in str(unknown)
    call_id = await live_call(rpc, vc_runtime)
    await rpc("voicecall.end", {"callId": call_id})
    ended = await rpc("voicecall.continue.start", {"callId": call_id, "message": "hi"})
    assert error_of(ended) == (-32002, "conflict") and "not active" in str(ended)
    for method, params in (
        ("voicecall.continue.start", {"callId": call_id}),
        ("voicecall.continue.start", {"callId": call_id, "message": "hi", "extra": 1}),
        ("voicecall.continue.result", {}),
        ("voicecall.continue.result", {"turnId": "a", "timeoutMs": -1}),
        ("voicecall.continue.result", {"turnId": "a", "timeoutMs": 60_001}),
        ("voicecall.continue.result", {"turnId": "a", "timeoutMs": "5"}),
        ("voicecall.continue.result", {"turnId": "a", "operationId": "b"}),
    ):
        reply = await rpc(method, params)
        assert error_of(reply) == (-32602, "invalid_request"), (method, params)
    nothing = await rpc("voicecall.continue.result", {"turnId": "never-started"})
    assert error_of(nothing) == (-32001, "not_found")


async def _heard(runtime: Runtime, call_id: str, text: str) -> bool:
    record = await runtime.store.get(call_id)
    return record is not None and any(e.text == text for e in record.transcript)


async def _state(runtime: Runtime, call_id: str, state: str) -> bool:
    record = await runtime.store.get(call_id)
    return record is not None and record.state.value == state
