"""The Twilio REST subset the emulator serves (docs/carriers.md §1.1), as an ASGI app.

`POST/GET/DELETE /2010-04-01/Accounts/{AccountSid}/Calls[/{CallSid}].json` with HTTP Basic auth
(Account SID + Auth Token), form-encoded bodies with repeated keys for lists, JSON answers and
Twilio's error shape `{"code", "message", "more_info", "status"}`. Validation happens here; what
a request does to a call is the backend's business (the emulator).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voice_call.sim.common import EmulatedCall

API_VERSION = "2010-04-01"
MAX_TIMEOUT_S = 600
DEFAULT_TIMEOUT_S = 60
DEFAULT_AMD_TIMEOUT_S = 30  # MachineDetectionTimeout
AMD_TIMEOUT_RANGE = (3, 59)
MAX_TWIML_CHARS = 4000
DEFAULT_TIME_LIMIT_S = 14400  # [M] 4 h, the documented default
CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
# Twilio's code for a StatusCallback that is not a URL ("invalid statusCallbackUrl … ErrorCode=
# 21609" in the example notification of shared/reference/openapi/twilio_api_v2010.json)
INVALID_STATUS_CALLBACK = 21609
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SEND_DIGITS = re.compile(r"[0-9#*w]{1,32}")
_CALLS = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls\.json$")
_SUBRESOURCES = (
    "notifications",
    "recordings",
    "payments",
    "events",
    "siprec",
    "streams",
    "user_defined_message_subscriptions",
    "user_defined_messages",
)
_CALL = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)\.json$")
_CALL_RECORDINGS = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)/Recordings\.json$"
)
_RECORDING_FILE = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Recordings/(?P<sid>RE[0-9a-f]+)\.wav$"
)

Form = dict[str, list[str]]


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def not_found(path: str) -> ApiError:
    return ApiError(404, 20404, f"The requested resource {path} was not found")


@dataclass(frozen=True)
class CreateCall:
    to: str
    from_: str
    url: str | None = None
    twiml: str | None = None
    method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    timeout: int = DEFAULT_TIMEOUT_S
    machine_detection: str | None = None
    # async AMD: the verdict is POSTed to amd_callback while the call runs its TwiML
    async_amd: bool = False
    amd_callback: str | None = None
    amd_callback_method: str = "POST"
    amd_timeout: int = DEFAULT_AMD_TIMEOUT_S
    time_limit: int = DEFAULT_TIME_LIMIT_S
    send_digits: str | None = None  # pressed once the call connects


@dataclass(frozen=True)
class UpdateCall:
    url: str | None = None
    twiml: str | None = None
    method: str = "POST"
    status: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"


class Backend(Protocol):
    """What the REST layer needs from the emulator: its credentials and the calls' operations."""

    account_sid: str
    auth_token: str

    def create_call(self, request: CreateCall) -> dict[str, Any]: ...
    def update_call(self, sid: str, request: UpdateCall) -> dict[str, Any]: ...
    def fetch_call(self, sid: str) -> dict[str, Any]: ...  # raises ApiError 404
    def delete_call(self, sid: str) -> None: ...
    def start_recording(self, sid: str, form: Form) -> dict[str, Any]: ...
    def recording_file(self, sid: str) -> bytes | None: ...


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment) if moment else None  # "Tue, 31 Aug 2010 20:36:28 +0000"


def call_resource(
    account_sid: str,
    call: EmulatedCall,
    *,
    created: datetime,
    updated: datetime,
    start_time: datetime | None,
    end_time: datetime | None,
    duration: int | None,
) -> dict[str, Any]:
    """The Call JSON Twilio returns: exactly the fields of `api.v2010.account.call` in Twilio's
    OpenAPI description (tests/contracts holds it to them)."""
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{call.id}.json"
    base = uri.removesuffix(".json")
    return {
        "account_sid": account_sid,
        "answered_by": call.extra.get("answered_by"),
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": _rfc2822(created),
        "date_updated": _rfc2822(updated),
        "direction": "inbound" if call.direction == "inbound" else "outbound-api",
        "duration": None if duration is None else str(duration),
        "end_time": _rfc2822(end_time),
        "forwarded_from": None,
        "from": call.from_number,
        "from_formatted": call.from_number,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.id,
        "start_time": _rfc2822(start_time),
        "status": call.status,
        "subresource_uris": {
            name: f"{base}/{''.join(part.title() for part in name.split('_'))}.json"
            for name in _SUBRESOURCES
        },
        "to": call.to_number,
        "to_formatted": call.to_number,
        "trunk_sid": None,
        "uri": uri,
    }


def _one(form: Form, name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def _method(form: Form, name: str) -> str:
    value = (_one(form, name) or "POST").upper()
    if value not in ("GET", "POST"):
        raise ApiError(400, 21200, f"{name} must be GET or POST, not {value}")
    return value


def _url(form: Form, name: str, code: int = 21205) -> str | None:
    value = _one(form, name)
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, code, f"{name} is not a valid URL: {value}")
    return value


def _seconds(form: Form, name: str, default: int) -> int:
    try:
        return int(_one(form, name) or default)
    except ValueError as exc:
        raise ApiError(400, 21200, f"{name} must be an integer number of seconds") from exc  # [M]


def _valid_party(number: str) -> bool:
    # E.164 numbers, or Twilio Client / SIP addresses.
    return bool(_E164.match(number)) or number.startswith(("client:", "sip:"))


def parse_create(form: Form) -> CreateCall:
    to, from_ = _one(form, "To"), _one(form, "From")
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not from_:
        raise ApiError(400, 21213, "No 'From' number is specified")
    if not _valid_party(to):
        raise ApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not _valid_party(from_):
        raise ApiError(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
    url, twiml = _url(form, "Url"), _one(form, "Twiml")
    if _one(form, "ApplicationSid"):
        raise ApiError(400, 21218, "ApplicationSid is not supported by the emulator; use Url")
    if url is None and not twiml:
        raise ApiError(400, 21205, "Url parameter is required.")  # [M] exact wording
    if twiml and len(twiml) > MAX_TWIML_CHARS:
        raise ApiError(400, 21200, f"Twiml is longer than {MAX_TWIML_CHARS} characters")  # [M]
    events = frozenset(e for value in form.get("StatusCallbackEvent", []) for e in value.split())
    if events - CALL_EVENTS:
        bad = ", ".join(sorted(events - CALL_EVENTS))
        raise ApiError(400, 21200, f"Invalid StatusCallbackEvent: {bad}")  # [M] code
    machine = _one(form, "MachineDetection")
    if machine not in (None, "", "Enable", "DetectMessageEnd"):
        raise ApiError(400, 21200, f"Invalid MachineDetection: {machine}")  # [M] code
    async_amd = (_one(form, "AsyncAmd") or "false").lower()
    if async_amd not in ("true", "false"):
        raise ApiError(400, 21200, f"Invalid AsyncAmd: {async_amd}")  # [M] code
    amd_timeout = _seconds(form, "MachineDetectionTimeout", DEFAULT_AMD_TIMEOUT_S)
    if not AMD_TIMEOUT_RANGE[0] <= amd_timeout <= AMD_TIMEOUT_RANGE[1]:
        raise ApiError(400, 21200, f"Invalid MachineDetectionTimeout: {amd_timeout}")  # [M]
    timeout = _seconds(form, "Timeout", DEFAULT_TIMEOUT_S)
    time_limit = _seconds(form, "TimeLimit", DEFAULT_TIME_LIMIT_S)
    send_digits = _one(form, "SendDigits") or None
    if send_digits is not None and not _SEND_DIGITS.fullmatch(send_digits):
        # [M] code: the docs allow 0-9, #, * and w (a half-second pause), at most 32
        raise ApiError(400, 21200, f"Invalid SendDigits: {send_digits}")
    return CreateCall(
        to=to,
        from_=from_,
        url=url,
        twiml=twiml if url is None else None,
        method=_method(form, "Method"),
        fallback_url=_url(form, "FallbackUrl"),
        fallback_method=_method(form, "FallbackMethod"),
        status_callback=_url(form, "StatusCallback", INVALID_STATUS_CALLBACK),
        status_callback_method=_method(form, "StatusCallbackMethod"),
        status_callback_events=events or frozenset({"completed"}),  # Twilio's default
        timeout=max(1, min(timeout, MAX_TIMEOUT_S)),
        machine_detection=machine or None,
        async_amd=async_amd == "true" and bool(machine),
        amd_callback=_url(form, "AsyncAmdStatusCallback"),
        amd_callback_method=_method(form, "AsyncAmdStatusCallbackMethod"),
        amd_timeout=amd_timeout,
        time_limit=max(1, min(time_limit, DEFAULT_TIME_LIMIT_S)),
        send_digits=send_digits,
    )


def parse_update(form: Form) -> UpdateCall:
    status = _one(form, "Status")
    if status is not None and status not in ("completed", "canceled"):
        raise ApiError(400, 21200, f"Status must be completed or canceled, not {status}")  # [M]
    twiml = _one(form, "Twiml")
    if twiml and len(twiml) > MAX_TWIML_CHARS:
        raise ApiError(400, 21200, f"Twiml is longer than {MAX_TWIML_CHARS} characters")  # [M]
    return UpdateCall(
        url=_url(form, "Url"),
        twiml=twiml or None,
        method=_method(form, "Method"),
        status=status,
        status_callback=_url(form, "StatusCallback", INVALID_STATUS_CALLBACK),
        status_callback_method=_method(form, "StatusCallbackMethod"),
    )


def _authenticate(request: Request, backend: Backend) -> None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise ApiError(401, 20003, "Authentication Error - No credentials provided")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(401, 20003, "Authentication Error - invalid credentials") from exc
    user_ok = hmac.compare_digest(user.encode(), backend.account_sid.encode())
    password_ok = hmac.compare_digest(password.encode(), backend.auth_token.encode())
    if not (user_ok and password_ok):
        raise ApiError(
            401,
            20003,
            "Authenticate",
            detail="Your AccountSid or AuthToken was incorrect.",
        )


async def _form(request: Request) -> Form:
    form: Form = {}
    body = (await request.body()).decode("utf-8", errors="replace")
    for key, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(key, []).append(value)
    return form


async def _dispatch(request: Request, backend: Backend) -> Response:
    _authenticate(request, backend)
    path, method = request.url.path, request.method
    calls, call = _CALLS.match(path), _CALL.match(path)
    recordings, recording = _CALL_RECORDINGS.match(path), _RECORDING_FILE.match(path)
    match = calls or call or recordings or recording
    # [M] another account's resources, even with valid credentials, are simply not there.
    if match is None or match["account"] != backend.account_sid:
        raise not_found(path)
    if calls and method == "POST":
        return JSONResponse(backend.create_call(parse_create(await _form(request))), 201)
    if recordings and method == "POST":
        form = await _form(request)
        return JSONResponse(backend.start_recording(recordings["sid"], form), 201)
    if recording and method == "GET":
        audio = backend.recording_file(recording["sid"])
        if audio is None:
            raise not_found(path)
        return Response(audio, media_type="audio/x-wav")
    if call and method == "GET":
        return JSONResponse(backend.fetch_call(call["sid"]))
    if call and method == "POST":
        return JSONResponse(backend.update_call(call["sid"], parse_update(await _form(request))))
    if call and method == "DELETE":
        backend.delete_call(call["sid"])
        return Response(status_code=204)
    raise ApiError(405, 20004, "Method not allowed")


def build_rest_app(backend: Backend) -> Starlette:
    async def endpoint(request: Request) -> Response:
        try:
            return await _dispatch(request, backend)
        except ApiError as exc:
            return exc.response()

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])
