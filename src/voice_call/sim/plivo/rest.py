"""The Plivo Voice API subset the emulator serves (docs/carriers.md §3.1).

Every path ends in `/` and, as on the real API, a path without it is not found (no redirect).
Bodies may be JSON (what the official SDK sends) or form-encoded [M]. Errors are
`{"api_id": …, "error": "…"}` [M for the exact texts] with 400, 401, 404 or 405.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voice_call.sim.plivo.call import DialOptions, PlivoLeg, Target, cdr_time, session_time

METHODS = ("GET", "POST")
# Keys a DTMF request may carry: `w` waits 0.5 s, `W` 1 s (as in `send_digits` on a dial).
DTMF_KEYS = frozenset("0123456789*#ABCDabcdwW")
Handler = Callable[[Request], Awaitable[Response]]


class InvalidCall(Exception):
    pass


class Backend(Protocol):
    """What the REST layer needs from the emulator: its credentials and the calls' operations."""

    auth_id: str
    auth_token: str

    def find(self, call_uuid: str) -> PlivoLeg | None: ...
    def dial(
        self, from_number: str, to_number: str, answer: Target, options: DialOptions | None = None
    ) -> PlivoLeg: ...
    def hangup(self, call_uuid: str) -> bool: ...  # False: no such live call
    def cancel(self, request_uuid: str) -> bool: ...  # False: not queued or ringing
    def transfer(self, call_uuid: str, target: Target) -> bool: ...  # False: not answered
    def send_digits(self, call_uuid: str, digits: str) -> bool: ...  # False: no live call
    # False: no live, answered call; the recording's id otherwise
    def start_recording(self, call_uuid: str, callback: Target | None) -> str | None: ...
    def recording_file(self, recording_id: str) -> bytes | None: ...


def api_id() -> str:
    return str(uuid.uuid4())


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"api_id": api_id(), "error": message}, status_code=status)


async def read_fields(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    if "json" in request.headers.get("content-type", "") or raw.lstrip().startswith(b"{"):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidCall("invalid JSON body") from exc
        if not isinstance(data, dict):
            raise InvalidCall("the body must be a JSON object")
        return data
    return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


def text_field(fields: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise InvalidCall(f"{name} is a required parameter")
        return None
    return str(value)


def number_field(
    fields: dict[str, Any], name: str, default: float | None, low: float, high: float
) -> float | None:
    value = fields.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidCall(f"{name} must be a number") from exc
    if not low <= number <= high:
        raise InvalidCall(f"{name} must be between {low:g} and {high:g}")
    return number


def target_field(fields: dict[str, Any], name: str, required: bool = False) -> Target | None:
    url = text_field(fields, name, required)
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise InvalidCall(f"{name} must be an http or https URL")
    prefix = name.removesuffix("_url")
    method = (text_field(fields, f"{prefix}_method") or "POST").upper()
    if method not in METHODS:
        raise InvalidCall(f"{prefix}_method must be GET or POST")
    return Target(url, method)


def live_view(leg: PlivoLeg) -> dict[str, Any]:
    call = leg.call
    return {
        "api_id": api_id(),
        "call_status": call.status,
        "call_uuid": call.id,
        "caller_name": "",
        "direction": call.direction,
        "from": call.from_number,
        "request_uuid": leg.request_uuid,
        "session_start": session_time(leg.initiated_at),
        "to": call.to_number,
    }


def cdr_view(leg: PlivoLeg, auth_id: str) -> dict[str, Any]:
    call, how = leg.call, leg.ended
    hangup = leg.hangup_params()
    return {
        "answer_time": cdr_time(leg.carrier_time(call.answered_at)),
        "api_id": api_id(),
        "bill_duration": int(hangup["BillDuration"]),
        "billed_duration": int(hangup["BillDuration"]),
        "call_direction": call.direction,
        "call_duration": int(hangup["Duration"]),
        "call_uuid": call.id,
        "end_time": cdr_time(leg.carrier_time(call.ended_at)),
        "from_number": call.from_number,
        "hangup_cause_code": how.code if how else None,
        "hangup_cause_name": how.name if how else None,
        "hangup_source": how.source if how else None,
        "initiation_time": cdr_time(leg.initiated_at),
        "parent_call_uuid": None,
        "resource_uri": f"/v1/Account/{auth_id}/Call/{call.id}/",
        "to_number": call.to_number,
        "total_amount": hangup["TotalCost"],
        "total_rate": hangup["BillRate"],
    }


def build_rest_app(backend: Backend) -> Starlette:
    def authorized(request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        good_user = hmac.compare_digest(user.encode(), backend.auth_id.encode())
        good_password = hmac.compare_digest(password.encode(), backend.auth_token.encode())
        path_ok = request.path_params.get("auth_id") == backend.auth_id
        return good_user and good_password and path_ok

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return error(401, "authentication failed")
            try:
                return await handler(request)
            except InvalidCall as exc:
                return error(400, str(exc))

        return endpoint

    async def calls(request: Request) -> Response:
        return await create_call(await read_fields(request))

    async def call(request: Request) -> Response:
        call_uuid = request.path_params["call_uuid"]
        if request.method == "GET":
            return get_call(backend.find(call_uuid), request.query_params.get("status"))
        if request.method == "DELETE":
            return (
                Response(status_code=204) if backend.hangup(call_uuid) else error(404, "not found")
            )
        return transfer(call_uuid, await read_fields(request))

    async def cancel_request(request: Request) -> Response:
        if backend.cancel(request.path_params["request_uuid"]):
            return Response(status_code=204)
        return error(404, "request not found or no longer cancellable")

    async def create_call(fields: dict[str, Any]) -> Response:
        from_number = text_field(fields, "from", required=True)
        to = text_field(fields, "to", required=True)
        answer = target_field(fields, "answer_url", required=True)
        assert from_number is not None and to is not None and answer is not None
        destinations = [d for d in to.split("<") if d]
        if from_number in destinations:
            raise InvalidCall("src and destination cannot overlap")
        machine_detection = (text_field(fields, "machine_detection") or "").lower() or None
        options = DialOptions(
            hangup=target_field(fields, "hangup_url"),
            ring=target_field(fields, "ring_url"),
            fallback=target_field(fields, "fallback_url"),
            ring_timeout=number_field(fields, "ring_timeout", 120.0, 0, 86400) or 0.0,
            time_limit=number_field(fields, "time_limit", 14400.0, 1, 86400) or 14400.0,
            hangup_on_ring=number_field(fields, "hangup_on_ring", None, 0, 86400),
            machine_detection=machine_detection,
            machine_detection_time_ms=int(
                number_field(fields, "machine_detection_time", 5000, 2000, 10000) or 5000
            ),
            machine_detection_target=target_field(fields, "machine_detection_url"),
            send_digits=text_field(fields, "send_digits") or None,
        )
        if options.send_digits is not None and not set(options.send_digits) <= DTMF_KEYS:
            raise InvalidCall("send_digits may hold only 0-9, *, #, A-D, w and W")
        if machine_detection not in (None, "true", "hangup"):
            raise InvalidCall("machine_detection must be true or hangup")
        legs = [backend.dial(from_number, d, answer, options) for d in destinations]
        request_uuids = [leg.request_uuid for leg in legs]
        body = {
            "api_id": api_id(),
            "message": "call fired",
            # [M] several destinations ("a<b") give a list, one id per call
            "request_uuid": request_uuids[0] if len(request_uuids) == 1 else request_uuids,
        }
        return JSONResponse(body, status_code=201)

    def get_call(leg: PlivoLeg | None, status: str | None) -> Response:
        if status == "live":
            if leg is None or leg.call.ended_at is not None:
                return error(404, "not found")
            return JSONResponse(live_view(leg))
        if leg is None or leg.call.ended_at is None:
            return error(404, "not found")  # [M] a CDR exists only once the call has ended
        return JSONResponse(cdr_view(leg, backend.auth_id))

    def transfer(call_uuid: str, fields: dict[str, Any]) -> Response:
        legs = text_field(fields, "legs", required=True)
        if legs not in ("aleg", "bleg", "both"):
            raise InvalidCall("legs must be aleg, bleg or both")
        if legs != "aleg":
            raise InvalidCall("this call has no B leg to transfer")  # no bridging emulated
        target = target_field(fields, "aleg_url", required=True)
        assert target is not None
        if not backend.transfer(call_uuid, target):
            return error(404, "not found")
        # [M] the docs' spelling; the SDK's fixture says "call transfered"
        return JSONResponse({"api_id": api_id(), "message": "call transferred"}, status_code=202)

    async def send_digits(request: Request) -> Response:
        """`POST Call/{uuid}/DTMF/` (digits, leg=aleg|bleg): 202 "digits sent"."""
        fields = await read_fields(request)
        digits = text_field(fields, "digits", required=True)
        assert digits is not None
        if not set(digits) <= DTMF_KEYS:
            raise InvalidCall("digits may hold only 0-9, *, #, A-D, w and W")
        leg = text_field(fields, "leg") or "aleg"
        if leg not in ("aleg", "bleg"):
            raise InvalidCall("leg must be aleg or bleg")
        if leg == "bleg":
            raise InvalidCall("this call has no B leg to send digits to")  # no bridging emulated
        if text_field(fields, "callback_url"):  # refused rather than accepted and never called
            raise InvalidCall("callback_url is not emulated on DTMF: leave it out")
        if not backend.send_digits(request.path_params["call_uuid"], digits):
            return error(404, "not found")
        return JSONResponse({"api_id": api_id(), "message": "digits sent"}, status_code=202)

    async def record(request: Request) -> Response:
        """`POST Call/{uuid}/Record/`: record until the call ends; callback_url then gets the
        file's record_url (a WAV: other file_format values are refused, not faked)."""
        fields = await read_fields(request)
        file_format = (text_field(fields, "file_format") or "mp3").lower()
        if file_format not in ("mp3", "wav"):
            raise InvalidCall("file_format must be mp3 or wav")
        if file_format != "wav":
            raise InvalidCall("the emulator records WAV only: send file_format=wav")
        recording_id = backend.start_recording(
            request.path_params["call_uuid"], target_field(fields, "callback_url")
        )
        if recording_id is None:
            return error(404, "not found")
        base = str(request.base_url).rstrip("/")
        body = {
            "api_id": api_id(),
            "message": "call recording started",
            "recording_id": recording_id,
            "url": f"{base}/v1/Account/{backend.auth_id}/Recording/{recording_id}.wav",
        }
        return JSONResponse(body, status_code=202)

    async def recording(request: Request) -> Response:
        audio = backend.recording_file(request.path_params["recording_id"])
        if audio is None:
            return error(404, "not found")
        return Response(audio, media_type="audio/wav")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return error(status, "not found" if status == 404 else "method not allowed")

    base = "/v1/Account/{auth_id}"
    app = Starlette(
        routes=[
            Route(f"{base}/Call/", guarded(calls), methods=["POST"]),
            Route(f"{base}/Call/{{call_uuid}}/", guarded(call), methods=["GET", "POST", "DELETE"]),
            Route(f"{base}/Call/{{call_uuid}}/DTMF/", guarded(send_digits), methods=["POST"]),
            Route(f"{base}/Call/{{call_uuid}}/Record/", guarded(record), methods=["POST"]),
            Route(f"{base}/Recording/{{recording_id}}.wav", guarded(recording), methods=["GET"]),
            Route(f"{base}/Request/{{request_uuid}}/", guarded(cancel_request), methods=["DELETE"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.router.redirect_slashes = False
    return app
