"""The HTTP layer over a real socket: routing (404/405), health, and the webhook pipeline's
layers in order — header gate, in-flight limit, body cap/timeout, verification, replay, parse,
apply (src/voice_call/server/)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.stack import TEST_LIMITS, Rpc, server_config
from tests.support import wait_until
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.limits import WEBHOOK_MAX_BYTES
from voice_call.server.serve import RunningServer

HOOK = "/voice/webhook"


async def new_call(rpc: Rpc, runtime: Runtime, mode: str = "notify") -> str:
    reply = await rpc(
        "voicecall.initiate", {"to": "+15555550123", "message": "Hello there", "mode": mode}
    )
    call_id: str = reply["result"]["callId"]

    async def answered() -> bool:
        record = await runtime.store.get(call_id)
        return record is not None and record.answered_at is not None

    await wait_until(answered)
    await runtime.manager.settle()
    return call_id


async def snapshot(runtime: Runtime) -> tuple[int, list[str]]:
    return await runtime.store.last_seq(), [c.call_id for c in await runtime.manager.active()]


async def raw_request(server: RunningServer, head: bytes) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head)
    await writer.drain()
    return reader, writer


def stalled_head(length: int = 100) -> bytes:
    return (
        f"POST {HOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n{{"
    ).encode()


# ------------------------------------------------------------------------ routing and health


async def test_unknown_path_is_404_json(vc_http: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/"), ("POST", "/nope"), ("POST", HOOK + "/"), ("GET", "/rpc/x")):
        response = await vc_http.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": "not found"}


async def test_wrong_method_is_405_json(vc_http: httpx.AsyncClient) -> None:
    for method, path in (("GET", HOOK), ("GET", "/rpc"), ("POST", "/events"), ("PUT", "/healthz")):
        response = await vc_http.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.json() == {"error": "method not allowed"}
        assert "allow" in response.headers


async def test_healthz_reports_provider_and_active_calls(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime
) -> None:
    response = await vc_http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body == {"ok": True, "provider": "mock", "version": body["version"], "activeCalls": 0}
    await new_call(rpc, vc_runtime)
    assert (await vc_http.get("/healthz")).json()["activeCalls"] == 1
    assert vc_runtime.rpc_token not in response.text


# ------------------------------------------------------------------------ webhook: success


async def test_mock_event_applies_to_a_call_created_over_rpc(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    event = {"type": "call.ended", "callId": call_id, "reason": "hangup-user"}
    response = await vc_http.post(HOOK, json={"event": event})
    assert response.status_code == 200
    assert response.json() == {"results": ["applied"]}
    status = await rpc("voicecall.status", {"callId": call_id})
    assert status["result"]["call"]["state"] == "hangup-user"
    assert status["result"]["call"]["endReason"] == "hangup-user"


async def test_events_of_one_request_apply_in_order(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await new_call(rpc, vc_runtime, mode="conversation")
    events = [
        {"type": "call.dtmf", "callId": call_id, "digits": "12"},
        {"type": "call.ended", "callId": call_id},
        {"type": "call.dtmf", "callId": call_id, "digits": "3"},
        {"type": "call.ringing", "callId": "no-such-call"},
    ]
    response = await vc_http.post(HOOK, json={"events": events})
    assert response.status_code == 200
    assert response.json()["results"] == [
        "applied",
        "applied",
        "ignored: call already ended",
        "unknown-call",
    ]


async def test_replayed_webhook_gets_the_same_answer_and_changes_nothing(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    body = json.dumps({"event": {"type": "call.dtmf", "callId": call_id, "digits": "5"}})
    first = await vc_http.post(HOOK, content=body)
    assert first.status_code == 200
    before = await snapshot(vc_runtime)
    events_before = len(await vc_runtime.store.events(call_id=call_id))
    for _ in range(3):
        again = await vc_http.post(HOOK, content=body)
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert again.headers["content-type"] == first.headers["content-type"]
    assert await snapshot(vc_runtime) == before
    assert len(await vc_runtime.store.events(call_id=call_id)) == events_before


async def test_replay_while_the_first_delivery_is_in_flight_gets_an_empty_200(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    release = asyncio.Event()
    entered = asyncio.Event()
    real = vc_runtime.manager.handle_event

    async def slow(event: Any) -> str:
        entered.set()
        await release.wait()
        return await real(event)

    monkeypatch.setattr(vc_runtime.manager, "handle_event", slow)
    body = json.dumps({"event": {"type": "call.dtmf", "callId": call_id, "digits": "7"}})
    first = asyncio.create_task(vc_http.post(HOOK, content=body))
    async with asyncio.timeout(10):
        await entered.wait()  # the first delivery is being applied
    replay = await vc_http.post(HOOK, content=body)
    assert (replay.status_code, replay.content) == (200, b"")
    release.set()
    assert (await first).json() == {"results": ["applied"]}


async def test_store_failure_is_503_and_the_retry_is_processed(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    real = vc_runtime.manager.handle_event

    async def broken(event: Any) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(vc_runtime.manager, "handle_event", broken)
    body = json.dumps({"event": {"type": "call.ended", "callId": call_id}})
    failed = await vc_http.post(HOOK, content=body)
    assert failed.status_code == 503
    assert "retry" in failed.json()["error"]
    monkeypatch.setattr(vc_runtime.manager, "handle_event", real)
    retry = await vc_http.post(HOOK, content=body)  # not mistaken for a replay
    assert retry.json() == {"results": ["applied"]}
    assert (await vc_runtime.store.get(call_id)).state.value == "completed"  # type: ignore[union-attr]


# ------------------------------------------------------------------------ webhook: rejected


async def test_malformed_json_is_400_with_a_reason_and_changes_nothing(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    before = await snapshot(vc_runtime)
    cases = [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"event": {"type": "call.bogus", "callId": "x"}}', "events[0]"),
        (json.dumps({"event": {"type": "call.ended"}}).encode(), "callId or providerCallId"),
        (b'{"event": 1' + b"1" * 5000 + b"}", "not valid JSON"),
        (b"[" * 50_000, "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
    ]
    for body, reason in cases:
        response = await vc_http.post(HOOK, content=body)
        assert response.status_code == 400, body[:40]
        assert reason in response.json()["error"], response.text
    # a malformed body is not cached as a replay: fixing nothing, it is parsed (and refused) again
    assert (await vc_http.post(HOOK, content=b"{not json")).status_code == 400
    assert await snapshot(vc_runtime) == before
    assert (await vc_runtime.store.get(call_id)) is not None


async def test_body_over_the_cap_is_413_before_reading(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    before = await snapshot(vc_runtime)
    event = {"type": "call.ended", "callId": call_id, "error": "x"}
    body = json.dumps({"event": event, "pad": " " * (65 * 1024)}).encode()
    assert len(body) > WEBHOOK_MAX_BYTES
    response = await vc_http.post(HOOK, content=body)
    assert response.status_code == 413
    assert "larger than 65536 bytes" in response.json()["error"]
    assert await snapshot(vc_runtime) == before


async def test_chunked_body_over_the_cap_is_413_while_streaming(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    before = await snapshot(vc_runtime)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(70):
            yield b" " * 1024

    response = await vc_http.post(HOOK, content=chunks())
    assert response.status_code == 413
    assert await snapshot(vc_runtime) == before


async def test_content_length_that_lies_is_413(vc_runtime: Runtime) -> None:
    # uvicorn itself trusts Content-Length, so drive the app directly with a lying header.
    await vc_runtime.start()
    transport = httpx.ASGITransport(app=build_app(vc_runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        before = await snapshot(vc_runtime)
        body = b" " * (WEBHOOK_MAX_BYTES + 1)
        request = http.build_request("POST", HOOK, content=body)
        request.headers["content-length"] = "10"
        response = await http.send(request)
        assert response.status_code == 413
        request = http.build_request("POST", HOOK, content=b"{}")
        request.headers["content-length"] = "ten"
        assert (await http.send(request)).status_code == 400
        assert await snapshot(vc_runtime) == before


async def test_slow_body_is_408(vc_server: RunningServer, vc_runtime: Runtime) -> None:
    before = await snapshot(vc_runtime)
    reader, writer = await raw_request(vc_server, stalled_head())
    try:
        async with asyncio.timeout(TEST_LIMITS.body_timeout_s + 3):
            status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
    finally:
        writer.close()
    assert await snapshot(vc_runtime) == before


async def test_in_flight_limit_is_429_and_slots_come_back(
    vc_server: RunningServer, vc_http: httpx.AsyncClient
) -> None:
    stalled = [
        await raw_request(vc_server, stalled_head()) for _ in range(TEST_LIMITS.max_in_flight)
    ]
    try:
        codes = []
        for _ in range(20):  # the stalled requests reach the limiter within a few ms
            codes.append((await vc_http.post(HOOK, content=b"{}")).status_code)
            if codes[-1] == 429:
                break
            await asyncio.sleep(0.02)
        assert codes[-1] == 429, codes
        assert "too many" in (await vc_http.post(HOOK, content=b"{}")).json()["error"]
    finally:
        for _, writer in stalled:
            writer.close()

    async def admitted() -> bool:
        return (await vc_http.post(HOOK, content=b"{}")).status_code == 400

    await wait_until(admitted)


async def test_required_signature_headers_are_checked_before_the_body(
    vc_server: RunningServer,
    vc_http: httpx.AsyncClient,
    vc_runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups = (("x-sig-v3", "x-sig-v3-nonce"), ("x-sig-v2",))
    monkeypatch.setattr(vc_runtime.provider, "required_headers", groups, raising=False)
    # 401 with no body sent at all: the gate does not wait for it
    reader, writer = await raw_request(vc_server, stalled_head())
    try:
        async with asyncio.timeout(TEST_LIMITS.body_timeout_s / 2):
            assert (await reader.readline()).startswith(b"HTTP/1.1 401")
    finally:
        writer.close()
    assert (await vc_http.post(HOOK, content=b"{}", headers={"X-Sig-V3": "a"})).status_code == 401
    assert (await vc_http.post(HOOK, content=b"{}", headers={"X-Sig-V2": ""})).status_code == 401
    # any one complete group passes the gate (then the mock parser refuses "{}")
    assert (await vc_http.post(HOOK, content=b"{}", headers={"X-Sig-V2": "s"})).status_code == 400
    both = {"X-Sig-V3": "s", "X-Sig-V3-Nonce": "n"}
    assert (await vc_http.post(HOOK, content=b"{}", headers=both)).status_code == 400
    # skipSignatureVerification turns the gate off
    monkeypatch.setattr(vc_runtime.config, "skip_signature_verification", True)
    assert (await vc_http.post(HOOK, content=b"{}")).status_code == 400


async def test_failed_verification_is_401_with_the_reason(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voice_call.providers.base import Verification, WebhookRequest

    seen: list[WebhookRequest] = []

    def refuse(request: WebhookRequest) -> Verification:
        seen.append(request)
        return Verification(ok=False, reason="bad signature")

    monkeypatch.setattr(vc_runtime.provider, "verify_webhook", refuse)
    response = await vc_http.post(HOOK + "?a=1&b=%20", content=b"{}", headers={"X-Custom": "Yes"})
    assert response.status_code == 401
    assert response.json() == {"error": "bad signature"}
    request = seen[0]
    assert request.url == f"{vc_http.base_url}".rstrip("/") + HOOK + "?a=1&b=%20"
    assert request.headers["x-custom"] == "Yes"
    assert request.method == "POST" and request.body == b"{}" and request.remote == "127.0.0.1"
    # skipSignatureVerification: unsigned requests pass (and are still replay-keyed)
    monkeypatch.setattr(vc_runtime.config, "skip_signature_verification", True)
    assert (await vc_http.post(HOOK, content=b"{}")).status_code == 400


async def test_a_verifier_that_raises_fails_closed(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: Any) -> Any:
        raise ValueError("bad base64 in signature")

    monkeypatch.setattr(vc_runtime.provider, "verify_webhook", broken)
    response = await vc_http.post(HOOK, content=b"{}")
    assert response.status_code == 401
    assert response.json() == {"error": "signature could not be verified"}


async def test_a_parser_crash_frees_the_replay_key(
    vc_http: httpx.AsyncClient, rpc: Rpc, vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id = await new_call(rpc, vc_runtime)
    real = vc_runtime.provider.parse_webhook

    def crash(request: Any, request_key: Any = None) -> Any:
        raise KeyError("a provider bug")

    monkeypatch.setattr(vc_runtime.provider, "parse_webhook", crash)
    body = json.dumps({"event": {"type": "call.ended", "callId": call_id}})
    assert (await vc_http.post(HOOK, content=body)).status_code == 500
    monkeypatch.setattr(vc_runtime.provider, "parse_webhook", real)
    retry = await vc_http.post(HOOK, content=body)  # processed, not answered as a replay
    assert retry.json() == {"results": ["applied"]}


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_slots(
    tmp_path: Path,
) -> None:
    from voice_call.server.serve import start_background

    config = server_config(
        webhookSecurity={
            "trustForwardingHeaders": True,
            "trustedProxyIPs": ["127.0.0.1"],
            "maxInFlightPerClient": 2,
        }
    )
    runtime = Runtime(config, tmp_path / "home")
    server = await start_background(runtime, app=build_app(runtime, keepalive_s=0.2))

    def head(client: str) -> bytes:
        return stalled_head().replace(b"Host:", f"X-Forwarded-For: {client}\r\nHost:".encode())

    stalled = [await raw_request(server, head("203.0.113.1")) for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

            async def post(client: str) -> int:
                headers = {"X-Forwarded-For": client}
                return (await http.post(HOOK, content=b"{}", headers=headers)).status_code

            async def full() -> bool:
                return await post("203.0.113.1") == 429

            await wait_until(full)  # that client's two slots are held by the stalled bodies
            assert await post("203.0.113.2") == 400  # another carrier IP is admitted
    finally:
        for _, writer in stalled:
            writer.close()
        await server.stop()
        await runtime.stop()
