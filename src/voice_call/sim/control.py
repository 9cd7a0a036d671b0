"""The emulator's own control endpoint: a test or `voicecall sim … call-in` drives it from outside.

Every carrier emulator answers two extra paths on its loopback port, beside the carrier's API:

- `GET /_sim/calls`: the ledger — every call the emulator has seen, newest last, with its
  status, how it ended, what the simulated person heard and said and the keys it was sent;
- `POST /_sim/calls` with a JSON body `{"from": "+1…", "to": "+1…"}`: a person rings the app
  now, exactly as the carrier would (the app's webhook, signed as the carrier signs).

Bodies must be JSON (`application/json`): a web page cannot send that cross-origin without a
preflight this endpoint never answers, so a browser tab cannot place calls through it. Bad input
gets a 4xx with the reason, never a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from voice_call.sim.common import EmulatedCall

PREFIX = "/_sim/"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class Controllable(Protocol):
    """What the control endpoint needs: the calls so far, and a way to ring the app."""

    calls: dict[str, EmulatedCall]

    async def place_inbound(self, from_number: str, to_number: str) -> EmulatedCall: ...


def call_view(call: EmulatedCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "direction": call.direction,
        "from": call.from_number,
        "to": call.to_number,
        "status": call.status,
        "ended": call.ended.is_set(),
        "hangupCause": call.hangup_cause,
        "heard": list(call.callee.heard),
        "said": list(call.callee.said),
        "digits": list(call.callee.digits),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def control_app(emulator: Controllable) -> Starlette:
    async def ledger(_: Request) -> Response:
        return JSONResponse({"calls": [call_view(c) for c in emulator.calls.values()]})

    async def call_in(request: Request) -> Response:
        if "application/json" not in request.headers.get("content-type", ""):
            return _error(415, "send the call as JSON (Content-Type: application/json)")
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, 'the body must be a JSON object: {"from": "+1…", "to": "+1…"}')
        numbers = {key: body.get(key) for key in ("from", "to")}
        for key, value in numbers.items():
            if not isinstance(value, str) or not _E164.match(value):
                return _error(400, f"{key} must be an E.164 number such as +15550001111")
        try:
            call = await emulator.place_inbound(str(numbers["from"]), str(numbers["to"]))
        except ValueError:  # the emulator was given no inbound (webhook) URL
            return _error(
                409,
                "this emulator has no inbound URL to ring: start it with --inbound-url "
                "set to your webhook (e.g. http://127.0.0.1:3399/voice/webhook)",
            )
        return JSONResponse({"call": call_view(call)}, status_code=201)

    return Starlette(
        routes=[
            Route(f"{PREFIX}calls", ledger, methods=["GET"]),
            Route(f"{PREFIX}calls", call_in, methods=["POST"]),
        ]
    )


def with_control(carrier_app: ASGIApp, emulator: Controllable) -> ASGIApp:
    """The carrier's app, with `/_sim/…` answered by the control endpoint instead."""
    control = control_app(emulator)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        target = control if path.startswith(PREFIX) else carrier_app
        await target(scope, receive, send)

    return app
