"""Shared pieces for the Plivo emulator tests (and one test that the SDK client stays pinned).

- `SdkClient`: the official plivo SDK client, pointed at the emulator.
- `FakeApp`: a tiny Plivo application: records every request, checks its signature with the
  SDK's own validators, and answers with the XML the test scripted for each path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import plivo
from plivo.utils import validate_signature
from plivo.utils.signature_v3 import validate_v3_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voice_call.asgi_server import BackgroundServer
from voice_call.sim.plivo import PlivoEmulator

AUTH_ID = "MAEMULATOR0000000001"  # the SDK insists on MA/SA + 18 characters
AUTH_TOKEN = "emulator-auth-token"
SCALE = 0.05


class SdkClient(plivo.RestClient):  # type: ignore[misc]
    """The SDK re-points `base_uri` at api.plivo.com before every voice request; pin it here."""

    def __init__(self, emulator_url: str, auth_id: str = AUTH_ID, token: str = AUTH_TOKEN):
        self._emulator_base = f"{emulator_url}/v1/Account"
        super().__init__(auth_id, token)

    @property
    def base_uri(self) -> str:
        return self._emulator_base

    @base_uri.setter
    def base_uri(self, _value: str) -> None:
        pass


@dataclass
class Received:
    path: str
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    signature_ok: bool


Reply = str | Callable[[Received], str]
StreamHandler = Callable[[WebSocket], Awaitable[None]]


@dataclass
class FakeApp:
    token: str = AUTH_TOKEN
    replies: dict[str, Reply] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to send first
    stream: StreamHandler | None = None
    version: str = "v3"
    received: list[Received] = field(default_factory=list)
    base: str = ""  # set once served: "http://127.0.0.1:PORT"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def ws_url(self, path: str = "/stream") -> str:
        return f"{self.base.replace('http', 'ws', 1)}{path}"

    def of(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def check(self, request: Request, params: dict[str, str]) -> bool:
        headers = request.headers
        url = str(request.url)
        if self.version == "v2":
            nonce = headers.get("x-plivo-signature-v2-nonce", "")
            signature = headers.get("x-plivo-signature-v2", "")
            return bool(validate_signature(url, nonce, signature, self.token))
        nonce = headers.get("x-plivo-signature-v3-nonce", "")
        signature = headers.get("x-plivo-signature-v3", "")
        body = {} if request.method == "GET" else dict(params)  # GET: the params are in the URL
        return bool(validate_v3_signature(request.method, url, nonce, self.token, signature, body))

    async def handle(self, request: Request) -> Response:
        if request.method == "POST":  # parsed by hand: python-multipart is not a dependency
            body = (await request.body()).decode("utf-8")
            params = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        else:
            params = dict(request.query_params)
        path = request.url.path
        hit = Received(
            path,
            request.method,
            str(request.url),
            params,
            dict(request.headers),
            self.check(request, params),
        )
        self.received.append(hit)
        queued = self.failures.get(path)
        if queued:
            return Response(status_code=queued.pop(0))
        reply = self.replies.get(path, "<Response/>")
        body = reply(hit) if callable(reply) else reply
        return Response(body, media_type="application/xml")

    async def ws(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self.stream is not None:
            await self.stream(websocket)

    def asgi(self) -> Starlette:
        return Starlette(
            routes=[
                WebSocketRoute("/stream", self.ws),
                Route("/{path:path}", self.handle, methods=["GET", "POST"]),
            ]
        )


@contextlib.asynccontextmanager
async def running(
    app: FakeApp, answer_path: str | None = None, **options: Any
) -> AsyncIterator[PlivoEmulator]:
    """Serve `app`, then an emulator (time_scale SCALE unless given) whose inbound app is it."""
    async with BackgroundServer(app.asgi()) as server:
        app.base = server.url
        options.setdefault("time_scale", SCALE)
        if answer_path is not None:
            options["answer_url"] = app.url(answer_path)
            options.setdefault("hangup_url", app.url("/hangup"))
        async with PlivoEmulator(AUTH_ID, AUTH_TOKEN, **options) as emu:
            yield emu


async def sdk_call(emu: PlivoEmulator, app: FakeApp, **fields: Any) -> str:
    """Place an outbound call through the official SDK (it is synchronous: run it in a thread).

    Defaults: answer_url /answer, hangup_url /hangup, ring_url /ring on the fake app."""
    fields.setdefault("answer_url", app.url("/answer"))
    fields.setdefault("hangup_url", app.url("/hangup"))
    fields.setdefault("ring_url", app.url("/ring"))
    client = SdkClient(emu.url)
    fields.setdefault("from_", "14155550100")
    fields.setdefault("to_", "14155550199")
    response = await asyncio.to_thread(client.calls.create, **fields)
    return str(response.request_uuid)


def kinds(emu: PlivoEmulator) -> list[str]:
    return [hook.kind for hook in emu.webhooks]
