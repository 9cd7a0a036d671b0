"""The Call Control v2 REST subset: Bearer auth, `{"data": …}` bodies, Telnyx error shapes.

POST /v2/calls                                    Dial
GET  /v2/calls/{call_control_id}                  Retrieve call status
POST /v2/calls/{call_control_id}/actions/{name}   answer, reject, hangup, speak,
     gather_using_speak, playback_start, send_dtmf, transcription_start/stop,
     streaming_start/stop
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voice_call.sim.telnyx import errors
from voice_call.sim.telnyx.call import TelnyxCall
from voice_call.sim.telnyx.commands import ACTIONS

Body = dict[str, Any]


class Backend(Protocol):
    api_key: str

    def dial(self, body: Body) -> Body: ...

    def find(self, call_control_id: str) -> TelnyxCall | None: ...

    def recording_file(self, recording_id: str) -> bytes | None: ...


def build_rest_app(backend: Backend) -> Starlette:
    def guarded(
        handler: Callable[[Request], Awaitable[Body]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                _authorize(request, backend.api_key)
                return JSONResponse({"data": await handler(request)})
            except errors.TelnyxErrorReply as exc:
                return exc.response()

        return endpoint

    async def dial(request: Request) -> Body:
        return backend.dial(await _json(request))

    async def retrieve(request: Request) -> Body:
        return _find(backend, request).resource()

    async def action(request: Request) -> Body:
        call = _find(backend, request)
        name = request.path_params["action"]
        handler = ACTIONS.get(name)
        if handler is None:
            raise errors.not_found(f"The emulator does not implement the '{name}' command.")
        body = await _json(request)
        command_id = body.get("command_id")
        if isinstance(command_id, str) and command_id in call.command_ids:
            return {"result": "ok"}  # same command_id on this call: done already, do nothing
        if call.is_ended:
            raise errors.call_ended()
        handler(call, body)
        if isinstance(command_id, str):
            call.command_ids.add(command_id)
        call.call.extra["commands"].append({"action": name, "body": body})
        return {"result": "ok"}

    async def unknown(request: Request) -> Response:
        try:
            _authorize(request, backend.api_key)
        except errors.TelnyxErrorReply as exc:
            return exc.response()
        return errors.not_found().response()

    async def recording(request: Request) -> Response:
        """A `recording_urls` file: pre-signed in real life, so no credentials are asked."""
        audio = backend.recording_file(request.path_params["recording_id"])
        if audio is None:
            return errors.not_found().response()
        return Response(audio, media_type="audio/wav")

    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/v2/calls", guarded(dial), methods=["POST"]),
            Route("/v2/calls/{call_id}", guarded(retrieve), methods=["GET"]),
            Route("/v2/calls/{call_id}/actions/{action}", guarded(action), methods=["POST"]),
            Route("/sim/recordings/{recording_id}.wav", recording, methods=["GET"]),
            Route("/{path:path}", unknown, methods=any_method),
        ]
    )


def _authorize(request: Request, api_key: str) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() != api_key:
        raise errors.unauthorized()


def _find(backend: Backend, request: Request) -> TelnyxCall:
    call = backend.find(request.path_params["call_id"])
    if call is None:
        raise errors.not_found("Call not found: no call has this call_control_id.")
    return call


async def _json(request: Request) -> Body:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.TelnyxErrorReply(
            400, "10015", "Bad Request", "The request body is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise errors.TelnyxErrorReply(
            400, "10015", "Bad Request", "The body must be a JSON object."
        )
    return body
