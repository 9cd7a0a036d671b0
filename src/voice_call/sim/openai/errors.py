"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, and Bearer auth."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


class InvalidRequest(Exception):
    """A request the real API would answer with 400 invalid_request_error."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def error_body(
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(status: int, message: str, **fields: Any) -> JSONResponse:
    return JSONResponse(error_body(message, **fields), status_code=status)


def bad_request(exc: InvalidRequest) -> JSONResponse:
    return error_response(400, exc.message, param=exc.param, code=exc.code)


def mask(key: str) -> str:
    """Keys are echoed masked, as OpenAI does, so logs never hold a full secret."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "*" * len(key)


def presented_key(conn: HTTPConnection) -> str | None:
    """The key from `Authorization: Bearer`, or from the browser WebSocket subprotocol."""
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in conn.headers.get("sec-websocket-protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith("openai-insecure-api-key."):
            return proto.removeprefix("openai-insecure-api-key.")
    return None


def auth_error(conn: HTTPConnection, api_key: str) -> dict[str, Any] | None:
    """None when the right key was presented, else OpenAI's error body for the 401."""
    key = presented_key(conn)
    if key is None:
        return error_body(NO_KEY)
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        message = (
            f"Incorrect API key provided: {mask(key)}. "
            "You can find your API key at https://platform.openai.com/account/api-keys."
        )
        return error_body(message, code="invalid_api_key")
    return None


def auth_failure(conn: HTTPConnection, api_key: str) -> JSONResponse | None:
    """None when the right key was presented, else OpenAI's 401."""
    body = auth_error(conn, api_key)
    return None if body is None else JSONResponse(body, status_code=401)


def type_name(value: Any) -> str:
    """JSON type names, as OpenAI's 'expected X, but got Y' messages use them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number" if isinstance(value, float) else "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_value(param: str, value: Any, supported: list[str]) -> InvalidRequest:
    allowed = ", ".join(f"'{s}'" for s in supported)
    return InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {allowed}.",
        param=param,
        code="invalid_value",
    )


NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)
