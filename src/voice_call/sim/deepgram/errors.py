"""Deepgram's error shape, `{"err_code", "err_msg", "request_id"}`, and `Token` auth.

[M] A refused request answers that JSON with its HTTP status; a refused WebSocket handshake
answers the same (no upgrade) and repeats the message in a `dg-error` header, which is what the
docs' troubleshooting page tells clients to read.
"""

from __future__ import annotations

import hmac
import uuid

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

INVALID_AUTH = "Invalid credentials."


def error_response(status: int, code: str, message: str) -> JSONResponse:
    body = {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status, headers={"dg-error": message})


def auth_failure(conn: HTTPConnection, api_key: str) -> JSONResponse | None:
    """401 unless `Authorization: Token <api_key>` (Bearer is for short-lived JWTs)."""
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "token" or not hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    ):
        return error_response(401, "INVALID_AUTH", INVALID_AUTH)
    return None


def bad_request(message: str) -> JSONResponse:
    return error_response(400, "Bad Request", message)
