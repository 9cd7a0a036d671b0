"""JSON-RPC 2.0 over POST /rpc, guarded by the bearer token.

Every method but `voicecall.events` is the command layer's (`commands.METHODS`, and the
`continue.start` / `.result` pair over the Runtime's `ContinueTurns`), run through
`Runtime.dispatch` (at the call's owner when several instances share Redis), so RPC reports
exactly what the CLI, the agent tool and MCP report. JSON-RPC-level errors are HTTP 200; the
VoiceCallError code travels in `error.data.code` so clients can rebuild the same exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from voice_call.commands import METHODS, TURN_METHODS, describe_validation_error
from voice_call.errors import InvalidInput, VoiceCallError
from voice_call.runtime import Runtime
from voice_call.server.auth import UNAUTHORIZED, authorized
from voice_call.server.event_log import PAGE
from voice_call.server.limits import BodyRejected, Limits, read_body
from voice_call.server.responses import json_error, json_response

log = logging.getLogger("voice_call.server.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# VoiceCallError.code → JSON-RPC error code (implementation-defined server errors).
ERROR_CODES = {
    "invalid_request": INVALID_PARAMS,
    "not_found": -32001,
    "conflict": -32002,
    "unavailable": -32003,
    "timeout": -32004,
}
MAX_BATCH = 100
MAX_SEQ = 2**63 - 1
EVENTS_METHOD = "voicecall.events"
ALL_METHODS = (*METHODS, *TURN_METHODS, EVENTS_METHOD)

Reply = dict[str, Any]


class EventsParams(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    since: StrictInt = Field(default=0, ge=0, le=MAX_SEQ)  # SQLite integers are 64-bit
    limit: StrictInt = Field(default=100, ge=1, le=PAGE)
    call_id: str | None = Field(default=None, alias="callId", min_length=1, max_length=128)


def error_reply(request_id: Any, code: int, message: str, data_code: str) -> Reply:
    error = {"code": code, "message": message, "data": {"code": data_code}}
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def valid_id(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def decode(body: bytes) -> Any:
    """Parse the body as I-JSON: also refuse strings that cannot be stored as UTF-8."""
    payload = json.loads(body)
    json.dumps(payload, ensure_ascii=False).encode("utf-8")  # lone surrogates raise here
    return payload


class RpcRoute:
    def __init__(self, runtime: Runtime, limits: Limits) -> None:
        self.runtime = runtime
        self.limits = limits

    async def handle(self, request: Request) -> Response:
        if not authorized(request, self.runtime.rpc_token):
            return json_error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        try:
            body = await read_body(request, self.limits.rpc_max_bytes, self.limits.body_timeout_s)
        except BodyRejected as exc:
            return json_error(exc.status_code, exc.message)
        try:
            payload = decode(body)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return json_response(
                error_reply(None, PARSE_ERROR, f"parse error: {reason}", "invalid_request")
            )
        if isinstance(payload, list):
            return await self._batch(payload)
        reply = await self.answer(payload)
        return json_response(reply) if reply is not None else Response(status_code=204)

    async def _batch(self, items: list[Any]) -> Response:
        if not items or len(items) > MAX_BATCH:
            why = "empty" if not items else f"larger than {MAX_BATCH} requests"
            reply = error_reply(None, INVALID_REQUEST, f"batch is {why}", "invalid_request")
            return json_response(reply)
        replies = await asyncio.gather(*(self.answer(item) for item in items))
        kept = [r for r in replies if r is not None]
        return json_response(kept) if kept else Response(status_code=204)

    async def answer(self, item: Any) -> Reply | None:
        """One request's reply; None for a well-formed notification (no `id`)."""
        if not isinstance(item, dict):
            return error_reply(
                None, INVALID_REQUEST, "a request must be an object", "invalid_request"
            )
        request_id = item.get("id")
        if not valid_id(request_id):
            return error_reply(
                None, INVALID_REQUEST, "id must be a string, a number or null", "invalid_request"
            )
        problem = _request_problem(item)
        if problem is not None:
            return error_reply(request_id, INVALID_REQUEST, problem, "invalid_request")
        method: str = item["method"]
        if method not in ALL_METHODS:
            message = f"method not found: {method!r}; expected one of {', '.join(ALL_METHODS)}"
            reply = error_reply(request_id, METHOD_NOT_FOUND, message, "not_found")
        else:
            reply = await self._call(request_id, method, item.get("params"))
        return reply if "id" in item else None

    async def _call(self, request_id: Any, method: str, params: Any) -> Reply:
        try:
            if method == EVENTS_METHOD:
                result = await self._events(params)
            else:
                result = await self.runtime.dispatch(method, params)
        except VoiceCallError as exc:
            code = ERROR_CODES.get(exc.code, ERROR_CODES["unavailable"])
            return error_reply(request_id, code, exc.message, exc.code)
        except Exception:
            log.exception("RPC %s failed unexpectedly", method)
            return error_reply(request_id, INTERNAL_ERROR, "internal error", "unavailable")
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def _events(self, params: Any) -> dict[str, Any]:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidInput("params must be an object")
        try:
            p = EventsParams.model_validate(params)
        except ValidationError as exc:
            raise InvalidInput(describe_validation_error(exc)) from None
        events = await self.runtime.store.events(
            since_seq=p.since, call_id=p.call_id, limit=p.limit
        )
        next_since = events[-1].seq if events else p.since
        return {"events": [e.wire() for e in events], "nextSince": next_since}


def _request_problem(item: dict[str, Any]) -> str | None:
    if item.get("jsonrpc") != "2.0":
        return 'jsonrpc must be "2.0"'
    if not isinstance(item.get("method"), str):
        return "method must be a string"
    if "params" in item and not isinstance(item["params"], dict | list):
        return "params must be an object or an array"
    return None
