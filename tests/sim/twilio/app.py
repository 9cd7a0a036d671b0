"""Shared pieces for the Twilio emulator tests (no tests here).

`TwimlApp` plays the application: a tiny Starlette app that answers each path with TwiML (a
string, or a function of the request's params) and records every request as it arrived,
checking its X-Twilio-Signature with the official SDK's RequestValidator against the URL it saw.
`sdk_client` points the official twilio SDK at an emulator through its `http_client` hook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from voice_call.sim.common import SentWebhook

ACCOUNT_SID = "AC" + "7c1d" * 8
AUTH_TOKEN = "emulator-auth-token-0123456789ab"
FAST = 0.02  # time_scale for lifecycle tests: a 5 s Gather timeout takes 100 ms

Answer = str | Callable[[dict[str, str]], str]


@dataclass
class Received:
    method: str
    path: str
    url: str  # as the app saw it
    params: dict[str, str]  # form (POST) or query (GET)
    headers: dict[str, str]
    signature_ok: bool


class _MultiDict(dict[str, str]):
    """What RequestValidator expects for forms with repeated keys (none in Twilio webhooks)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._pairs if k == key]


class TwimlApp:
    def __init__(self, routes: dict[str, Answer] | None = None) -> None:
        self.routes: dict[str, Answer] = dict(routes or {})
        self.received: list[Received] = []
        self.base = ""  # set once served
        self.validator = RequestValidator(AUTH_TOKEN)
        self.asgi = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])]
        )

    def url(self, path: str) -> str:
        return self.base + path

    async def _endpoint(self, request: Request) -> Response:
        body = (await request.body()).decode()
        pairs = parse_qsl(body if request.method == "POST" else "", keep_blank_values=True)
        params = _MultiDict(pairs) if request.method == "POST" else _MultiDict([])
        url = str(request.url)
        signature = request.headers.get("x-twilio-signature", "")
        ok = bool(self.validator.validate(url, params, signature))
        shown = dict(pairs) if request.method == "POST" else dict(request.query_params)
        self.received.append(
            Received(request.method, request.url.path, url, shown, dict(request.headers), ok)
        )
        answer = self.routes.get(request.url.path)
        if answer is None:
            # Status callbacks need no answer; any other unknown path is a broken app.
            return Response(status_code=204 if "status" in request.url.path else 404)
        text = answer(shown) if callable(answer) else answer
        return Response(text, media_type="text/xml")

    def paths(self) -> list[str]:
        return [r.path for r in self.received]


class EmulatorHttpClient(TwilioHttpClient):  # type: ignore[misc]  # untyped SDK
    """The SDK's own HTTP client, with https://api.twilio.com swapped for the emulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        if self.session is not None:
            self.session.trust_env = False  # never route loopback through a proxy

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        url = url.replace("https://api.twilio.com", self.base_url)
        return super().request(method, url, *args, **kwargs)


def sdk_client(emulator_url: str, token: str = AUTH_TOKEN) -> Client:
    return Client(ACCOUNT_SID, token, http_client=EmulatorHttpClient(emulator_url))


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The SDK is synchronous: run it off the loop that serves the emulator."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def signed_by_twilio(hook: SentWebhook) -> bool:
    """Validate a logged webhook the way the app would, with the official validator."""
    params = hook.params if hook.headers.get("Content-Type") else {}
    return bool(
        RequestValidator(AUTH_TOKEN).validate(hook.url, params, hook.headers["X-Twilio-Signature"])
    )


def status_hooks(hooks: list[SentWebhook]) -> list[SentWebhook]:
    return [h for h in hooks if h.kind == "status"]
