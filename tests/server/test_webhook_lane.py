"""The carrier webhook's direct lane (server/app.py `App`): a POST to the webhook path skips
Starlette's middleware and router, and what goes over the wire stays what that stack answered —
the router's 405 for other methods, its 404 for other spellings of the path, the outermost
middleware's 500 for an exception, the first of repeated headers, a body in several messages,
a client that goes away mid-body."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.server.stack import TEST_LIMITS
from tests.server.test_webhook import HOOK, raw_request, snapshot
from tests.support import wait_until
from voice_call.providers.base import Verification, WebhookRequest
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.serve import RunningServer

Message = dict[str, Any]
UNKNOWN_CALL = json.dumps({"event": {"type": "call.ringing", "callId": "no-such-call"}}).encode()


async def read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, list[str]], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case names, every value), body."""
    async with asyncio.timeout(10):
        status = int((await reader.readline()).split()[1])
        headers: dict[str, list[str]] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        body = await reader.readexactly(int(headers.get("content-length", ["0"])[0]))
    return status, headers, body


async def exchange(server: RunningServer, head: str, body: bytes = b"") -> Any:
    """Send a raw request; its response, and the connection (the caller closes it)."""
    reader, writer = await raw_request(server, head.encode("latin-1") + b"\r\n\r\n" + body)
    return (*await read_response(reader), reader, writer)


def post_head(path: str = HOOK, *extra: str, length: int = 0) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}", *extra]
    return "\r\n".join(lines)


@pytest.fixture
def seen(vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[WebhookRequest]:
    """The requests the provider is asked to verify (then verified as the mock does)."""
    requests: list[WebhookRequest] = []
    verify = vc_runtime.provider.verify_webhook

    def spy(request: WebhookRequest) -> Verification:
        requests.append(request)
        return verify(request)

    monkeypatch.setattr(vc_runtime.provider, "verify_webhook", spy)
    return requests


@pytest.fixture
async def app(vc_runtime: Runtime) -> Starlette:
    """The app, driven without a server (to choose how the body arrives)."""
    await vc_runtime.start()
    return build_app(vc_runtime, limits=TEST_LIMITS)


async def call_app(app: Starlette, messages: list[Message]) -> tuple[int, bytes, list[Message]]:
    """Hand the app one POST to the webhook path whose body arrives as `messages`; the
    answer's status and body, and every message it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": HOOK,
        "raw_path": HOOK.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:9")],
        "client": ("127.0.0.1", 40_000),
        "server": ("127.0.0.1", 9),
    }
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async with asyncio.timeout(10):
        await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    return sent[0]["status"], sent[1]["body"], sent


def chunk(body: bytes, more: bool = True) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


@contextmanager
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs at ERROR (its logger does not propagate to the root's handlers)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------------------------ what the router answered


async def test_other_methods_on_the_webhook_path_get_the_routers_405(
    vc_http: httpx.AsyncClient,
) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        for host in ({}, {"Host": "attacker.example"}):  # the Host guard exempts the path
            response = await vc_http.request(method, HOOK, headers=host)
            assert response.status_code == 405, (method, host)
            assert response.headers["allow"] == "POST"
            assert response.headers["content-type"] == "application/json"
            if method != "HEAD":
                assert response.json() == {"error": "method not allowed"}


async def test_other_spellings_of_the_webhook_path_are_404(vc_server: RunningServer) -> None:
    for path in (HOOK + "/", "/voice//webhook", "/Voice/Webhook", HOOK + "/x", HOOK + "%2F"):
        status, headers, body, _, writer = await exchange(vc_server, post_head(path))
        writer.close()
        assert status == 404, path
        assert headers["content-type"] == ["application/json"]
        assert json.loads(body) == {"error": "not found"}


async def test_the_webhook_path_with_a_query_or_escaped_letters_is_the_webhook(
    vc_server: RunningServer, seen: list[WebhookRequest]
) -> None:
    for path in (HOOK + "?type=status", "/voice/%77ebhook"):
        head = post_head(path, length=len(UNKNOWN_CALL))
        status, _, body, _, writer = await exchange(vc_server, head, UNKNOWN_CALL)
        writer.close()
        assert (status, json.loads(body)) == (200, {"results": ["unknown-call"]}), path
        assert seen[-1].url.endswith(path)  # as received: the signature is over this


# --------------------------------------------------------------- what the middleware answered


async def test_an_exception_is_the_plain_500_logged_and_the_connection_closed(
    vc_server: RunningServer, vc_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(request: Any, request_key: Any = None) -> Any:
        raise KeyError("a provider bug")

    monkeypatch.setattr(vc_runtime.provider, "parse_webhook", crash)
    with server_errors() as logged:
        head = post_head(length=len(UNKNOWN_CALL))
        status, headers, body, reader, writer = await exchange(vc_server, head, UNKNOWN_CALL)
        try:
            assert (status, body) == (500, b"Internal Server Error")
            assert headers["content-type"] == ["text/plain; charset=utf-8"]
            async with asyncio.timeout(10):
                assert await reader.read() == b""  # the server closes after an exception
        finally:
            writer.close()
    assert [r.exc_info[0] for r in logged if r.exc_info] == [KeyError]


# ------------------------------------------------------------------------ how a request is read


async def test_the_first_of_repeated_headers_is_the_one_verified(
    vc_server: RunningServer, seen: list[WebhookRequest]
) -> None:
    extra = ("X-Custom: first", "x-custom: second", "X-CUSTOM: third")
    head = post_head(HOOK, *extra, length=len(UNKNOWN_CALL))
    status, _, _, _, writer = await exchange(vc_server, head, UNKNOWN_CALL)
    writer.close()
    assert status == 200
    assert seen[-1].headers["x-custom"] == "first"
    assert seen[-1].headers["host"] == "127.0.0.1"
    assert seen[-1].url == "http://127.0.0.1" + HOOK


async def test_a_body_in_several_messages_is_verified_whole(
    app: Starlette, seen: list[WebhookRequest]
) -> None:
    parts = [UNKNOWN_CALL[:5], b"", UNKNOWN_CALL[5:20], UNKNOWN_CALL[20:]]
    messages = [chunk(part) for part in parts[:-1]] + [chunk(parts[-1], more=False)]
    status, body, sent = await call_app(app, messages)
    assert (status, json.loads(body)) == (200, {"results": ["unknown-call"]})
    assert seen[-1].body == UNKNOWN_CALL
    assert (b"content-type", b"application/json") in sent[0]["headers"]


async def test_a_body_over_the_cap_in_several_messages_is_413(
    app: Starlette, vc_runtime: Runtime
) -> None:
    before = await snapshot(vc_runtime)
    messages = [chunk(b" " * 1024) for _ in range(70)] + [chunk(b"", more=False)]
    status, body, _ = await call_app(app, messages)
    assert (status, json.loads(body)) == (413, {"error": "body larger than 65536 bytes"})
    assert await snapshot(vc_runtime) == before


async def test_a_client_gone_mid_body_is_400_and_changes_nothing(
    app: Starlette, vc_runtime: Runtime, seen: list[WebhookRequest]
) -> None:
    before = await snapshot(vc_runtime)
    messages = [chunk(UNKNOWN_CALL[:10]), {"type": "http.disconnect"}]
    status, body, _ = await call_app(app, messages)
    assert status == 400
    assert json.loads(body) == {"error": "client went away before sending the whole body"}
    assert seen == [] and await snapshot(vc_runtime) == before


async def test_a_client_that_hangs_up_mid_body_gives_its_slot_back(
    vc_server: RunningServer, vc_http: httpx.AsyncClient, seen: list[WebhookRequest]
) -> None:
    for _ in range(TEST_LIMITS.max_in_flight + 1):  # each would hold a slot if it leaked
        _, writer = await raw_request(vc_server, (post_head(length=100) + "\r\n\r\n{").encode())
        writer.close()
        await writer.wait_closed()

    async def admitted() -> bool:  # a leaked slot would make this 429 for good
        response = await vc_http.post(HOOK, content=UNKNOWN_CALL)
        return response.status_code == 200

    await wait_until(admitted)
    assert {r.body for r in seen} == {UNKNOWN_CALL}  # no partial body was ever verified
