"""The console's JSON API: the calls it shows, the event stream, history and the controls.

Reads need a session; writes need a session, its CSRF token and a same-origin request
(`guard.refuse_write`). Controls go through the command layer (`Runtime.dispatch`) with the
RPC method names, so a bad number or an ended call is refused with the CLI's and RPC's words;
the error's code picks the HTTP status. Minting a login link needs the RPC bearer token:
that is how `voicecall console` (another process) gets one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from voice_call.errors import VoiceCallError
from voice_call.models import CallRecord
from voice_call.runtime import Runtime
from voice_call.server.auth import UNAUTHORIZED, authorized
from voice_call.server.console.guard import LOGIN_REQUIRED, refuse_write, secured, session_of
from voice_call.server.console.history import (
    SCAN_LIMIT,
    BadHistoryQuery,
    parse_history_query,
    search,
)
from voice_call.server.console.sessions import LINK_TTL_S, ConsoleSessions
from voice_call.server.events import EventsRoute
from voice_call.server.limits import BodyRejected, Limits, read_body
from voice_call.server.responses import json_error, json_response
from voice_call.server.rpc import decode

# The controls the console offers: its path name → the command layer's method.
COMMANDS = {
    "initiate": "voicecall.initiate",
    "speak": "voicecall.speak",
    "continue": "voicecall.continue",
    "dtmf": "voicecall.dtmf",
    "end": "voicecall.end",
}
STATUS_OF = {"invalid_request": 400, "not_found": 404, "conflict": 409, "timeout": 504}
LOGIN_PATH = "/console/login"


def row(record: CallRecord) -> dict[str, Any]:
    """A calls-table row: the status summary and the last turn's voice-to-voice."""
    figures = [t.voice_to_voice_ms for t in record.latency if t.voice_to_voice_ms is not None]
    return {**record.summary(), "lastVoiceToVoiceMs": figures[-1] if figures else None}


class ConsoleApi:
    def __init__(
        self, runtime: Runtime, sessions: ConsoleSessions, events: EventsRoute, limits: Limits
    ) -> None:
        self.runtime = runtime
        self.sessions = sessions
        self.events = events
        self.limits = limits

    def _reader_refused(self, request: Request) -> Response | None:
        if session_of(request, self.sessions) is None:
            return secured(json_error(401, LOGIN_REQUIRED))
        return None

    async def calls(self, request: Request) -> Response:
        if (refused := self._reader_refused(request)) is not None:
            return refused
        store = self.runtime.store
        seq = await store.last_seq()  # before the list: the stream from here misses nothing
        active = await store.list_active()
        return secured(json_response({"seq": seq, "calls": [row(r) for r in active]}))

    async def call(self, request: Request) -> Response:
        if (refused := self._reader_refused(request)) is not None:
            return refused
        call_id = request.path_params["call_id"]
        record = await self.runtime.store.get(call_id) if len(call_id) <= 128 else None
        if record is None:
            return secured(json_error(404, f"no call with id {call_id!r}"))
        return secured(json_response({"call": record.wire(), "row": row(record)}))

    async def history(self, request: Request) -> Response:
        if (refused := self._reader_refused(request)) is not None:
            return refused
        try:
            query = parse_history_query(request.query_params)
        except BadHistoryQuery as exc:
            return secured(json_error(400, str(exc)))
        found = search(await self.runtime.store.list_recent(SCAN_LIMIT), query)
        return secured(json_response({"calls": [row(r) for r in found]}))

    async def stream(self, request: Request) -> Response:
        if (refused := self._reader_refused(request)) is not None:
            return refused
        return secured(self.events.respond(request))

    async def command(self, request: Request) -> Response:
        refused = refuse_write(request, session_of(request, self.sessions))
        if refused is not None:
            return refused
        method = COMMANDS.get(request.path_params["name"])
        if method is None:
            known = ", ".join(COMMANDS)
            return secured(json_error(404, f"unknown control; expected one of {known}"))
        try:
            params = await self._params(request)
            result = await self.runtime.dispatch(method, params)
        except VoiceCallError as exc:
            status = STATUS_OF.get(exc.code, 503)
            return secured(json_response({"error": exc.message, "code": exc.code}, status))
        except _BadBody as exc:
            return secured(json_error(exc.status, exc.message))
        return secured(json_response(result))

    async def _params(self, request: Request) -> Any:
        try:
            body = await read_body(request, self.limits.rpc_max_bytes, self.limits.body_timeout_s)
        except BodyRejected as exc:
            raise _BadBody(exc.status_code, exc.message) from None
        try:
            return decode(body) if body.strip() else {}
        except (ValueError, RecursionError):
            raise _BadBody(400, "the body must be a JSON object of the control's params") from None

    async def login_link(self, request: Request) -> Response:
        """A one-time login link for `voicecall console`; the caller proves the RPC token."""
        if not authorized(request, self.runtime.rpc_token):
            return secured(json_error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"}))
        code = self.sessions.mint_link_code()
        return secured(
            json_response({"path": f"{LOGIN_PATH}?code={code}", "expiresInS": LINK_TTL_S})
        )


class _BadBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
