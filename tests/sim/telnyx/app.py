"""A tiny Telnyx Call Control application for the emulator tests (no tests of its own).

It records every webhook with its raw body, checks each signature twice (our verifier and
`cryptography` directly), and lets a test react to events by calling the REST API with httpx
exactly as the Telnyx API reference shows (Bearer key, JSON body).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voice_call.asgi_server import BackgroundServer
from voice_call.security.signatures import telnyx as sig
from voice_call.sim.telnyx import TelnyxEmulator

# X1 of docs/carriers.md §5.3: the fixed pair of telnyx-php tests/Services/WebhooksTest.php
# (the secret is seed ‖ public), the pair the docs advise giving the emulator.
TEST_PUBLIC_KEY = "+7E99DXiiQXvceNX4nHm3Lbm5mqPWad5RhDr2ufuCik="
TEST_SECRET_KEY = (
    "p68GNpDl9oAQohBiK0MEOFIjxnoFnz0uGGeJqxQ5PSb7sT30NeKJBe9x41ficebctubmao9Zp3lGEOva5+4KKQ=="
)
API_KEY = "KEY0123456789_test"
CONNECTION_ID = "1494404757140276705"
APP_NUMBER = "+15550001000"
CALLEE = "+15550002000"

Event = dict[str, Any]
Reaction = Callable[["TelnyxApp", Event], Awaitable[None]]
StreamHandler = Callable[[WebSocket], Awaitable[None]]


@dataclass
class TelnyxApp:
    public_key: str
    react: Reaction | None = None
    stream_handler: StreamHandler | None = None
    fail_first: int = 0  # answer the first N webhooks with 500
    events: list[Event] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    api: httpx.AsyncClient | None = None
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def starlette(self) -> Starlette:
        routes: list[Any] = [Route("/webhook", self._webhook, methods=["POST"])]
        if self.stream_handler is not None:
            routes.append(WebSocketRoute("/media", self.stream_handler))
        return Starlette(routes=routes)

    async def _webhook(self, request: Request) -> Response:
        body = await request.body()
        self._check_signature(request.headers, body)
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response("try again", status_code=500)
        event = json.loads(body)
        self.events.append(event)
        self._changed.set()
        if self.react is not None:
            await self.react(self, event["data"])
        return Response(status_code=200)

    def _check_signature(self, headers: Any, body: bytes) -> None:
        signature = headers.get("telnyx-signature-ed25519")
        timestamp = headers.get("telnyx-timestamp")
        ok, reason = sig.verify(self.public_key, signature, timestamp, body, now=time.time())
        if not ok:
            self.bad_signatures.append(reason)
        try:  # the oracle: the library primitive on timestamp|body, nothing of ours
            Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key)).verify(
                base64.b64decode(signature), timestamp.encode() + b"|" + body
            )
        except (InvalidSignature, TypeError, AttributeError, ValueError) as exc:
            self.bad_signatures.append(f"cryptography: {exc!r}")

    # -- REST, as the Telnyx API reference shows it ----------------------------------------------

    async def dial(self, **body: Any) -> httpx.Response:
        payload = {
            "connection_id": CONNECTION_ID,
            "to": CALLEE,
            "from": APP_NUMBER,
            "webhook_url": f"{self.url}/webhook",
            **body,
        }
        assert self.api is not None
        return await self.api.post("/v2/calls", json=payload)

    async def command(self, call_id: str, action: str, **body: Any) -> httpx.Response:
        assert self.api is not None
        return await self.api.post(f"/v2/calls/{call_id}/actions/{action}", json=body)

    # -- what happened ---------------------------------------------------------------------------

    def types(self, call_id: str | None = None) -> list[str]:
        return [e["data"]["event_type"] for e in self.of(call_id)]

    def of(self, call_id: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if call_id is None or e["data"]["payload"].get("call_control_id") == call_id
        ]

    def payload(self, event_type: str, index: int = 0) -> dict[str, Any]:
        hits = [e for e in self.events if e["data"]["event_type"] == event_type]
        return dict(hits[index]["data"]["payload"])

    async def wait_for(self, event_type: str, timeout: float = 5.0, count: int = 1) -> Event:
        async def seen() -> Event:
            while True:
                hits = [e for e in self.events if e["data"]["event_type"] == event_type]
                if len(hits) >= count:
                    return hits[count - 1]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(seen(), timeout)


@asynccontextmanager
async def running(
    emu: TelnyxEmulator,
    react: Reaction | None = None,
    stream_handler: StreamHandler | None = None,
    fail_first: int = 0,
) -> AsyncIterator[TelnyxApp]:
    """The app on one loopback port, the emulator on another, an httpx client between them."""
    app = TelnyxApp(emu.public_key, react, stream_handler, fail_first)
    async with BackgroundServer(app.starlette()) as server:
        app.url = server.url
        emu.webhook_url = emu.webhook_url or f"{server.url}/webhook"
        async with emu:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=emu.url, headers=headers) as api:
                app.api = api
                yield app
    assert app.bad_signatures == []


async def never(app: TelnyxApp, data: Event) -> None:
    return None
