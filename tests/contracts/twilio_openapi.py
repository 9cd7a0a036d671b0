"""Twilio's own OpenAPI description of API 2010-04-01, as a validator for recorded REST exchanges.

`openapi-core` (a maintained OpenAPI 3 validator) checks each request against its operation —
path and query parameters, the form body's types, enums, formats and required fields — and
each 2xx response against the operation's response schema. Two checks are added because the
description leaves objects open (no `additionalProperties: false`), so a misspelt form field or
an invented response field would otherwise pass: every form field and query parameter must be
one the operation names, and every response field one the schema names.

`Recorder` wraps an ASGI app (the emulator's) and keeps each exchange it served, in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared/reference/openapi/twilio_api_v2010.json"
TWILIO_HOST = (
    "https://api.twilio.com"  # the description's server: requests are judged as if sent there
)

ERROR_FIELDS = {"code", "message", "more_info", "status"}


@dataclass
class Exchange:
    """One REST request as the emulator received it, and the response it sent."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode(), keep_blank_values=True)


class Recorder:
    """ASGI middleware: every HTTP exchange under `prefix` is appended to `exchanges`."""

    def __init__(self, app: ASGIApp, exchanges: list[Exchange], prefix: str = "/2010-04-01/"):
        self.app, self.exchanges, self.prefix = app, exchanges, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        exchange = Exchange(
            scope["method"], scope["path"], scope["query_string"].decode(), headers, b""
        )
        self.exchanges.append(exchange)

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.body += message.get("body", b"")
            return message

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.response_headers = {
                    k.decode().lower(): v.decode() for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                exchange.response_body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive_body, send_recorded)


@dataclass
class _Request:
    """openapi-core's Request protocol over a recorded exchange."""

    exchange: Exchange
    host_url: str = TWILIO_HOST

    def __post_init__(self) -> None:
        query = parse_qsl(self.exchange.query, keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query), header=Headers(self.exchange.headers)
        )

    @property
    def method(self) -> str:
        return self.exchange.method.lower()

    @property
    def path(self) -> str:
        return self.exchange.path

    @property
    def body(self) -> bytes | None:
        return self.exchange.body or None

    @property
    def content_type(self) -> str:
        return self.exchange.headers.get("content-type", "").lower()


@dataclass
class _Response:
    exchange: Exchange

    @property
    def status_code(self) -> int:
        return self.exchange.status

    @property
    def content_type(self) -> str:
        return self.exchange.response_headers.get("content-type", "").lower()

    @property
    def headers(self) -> Headers:
        return Headers(self.exchange.response_headers)

    @property
    def data(self) -> bytes | None:
        return self.exchange.response_body or None


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


@cache
def _openapi() -> OpenAPI:
    # The description itself is Twilio's: validating it too would only slow every run.
    return OpenAPI.from_dict(_spec(), config=Config(spec_validator_cls=None))


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _spec()["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _operation(exchange: Exchange) -> dict[str, Any]:
    """The description's operation for this method and concrete path."""
    parts = exchange.path.split("/")
    for pattern, item in _spec()["paths"].items():
        names = pattern.split("/")
        if len(names) == len(parts) and all(
            n == p
            or (n.startswith("{") and n.endswith("}") and p and "." not in p)
            or (n.startswith("{") and n.endswith("}.json") and p.endswith(".json"))
            for n, p in zip(names, parts, strict=True)
        ):
            operation = item.get(exchange.method.lower())
            if operation is not None:
                return dict(operation)
    raise AssertionError(f"{exchange.method} {exchange.path} is no operation of Twilio's API")


def request_problems(exchange: Exchange) -> list[str]:
    """Why this request does not conform to Twilio's description (empty: it does)."""
    problems = [repr(_cause(e)) for e in _openapi().unmarshal_request(_Request(exchange)).errors]
    operation = _operation(exchange)
    query_names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    for name, _ in parse_qsl(exchange.query, keep_blank_values=True):
        if name not in query_names:
            problems.append(f"query parameter {name!r} is not one Twilio defines")
    if exchange.body:
        content = operation.get("requestBody", {}).get("content", {})
        schema = _resolve(content.get("application/x-www-form-urlencoded", {}).get("schema", {}))
        known = set(schema.get("properties", {}))
        for name, _ in exchange.form():
            if name not in known:
                problems.append(f"form field {name!r} is not one Twilio defines")
    return problems


def response_problems(exchange: Exchange) -> list[str]:
    """Why this response does not conform to Twilio's description (empty: it does).

    The description defines success responses only; an error must have Twilio's error body."""
    if exchange.status >= 400:
        body = json.loads(exchange.response_body or b"{}")
        if set(body) != ERROR_FIELDS or not isinstance(body.get("code"), int):
            return [f"error body {body!r} is not Twilio's {{code, message, more_info, status}}"]
        return []
    result = _openapi().unmarshal_response(_Request(exchange), _Response(exchange))
    problems = [repr(_cause(e)) for e in result.errors]
    if exchange.response_body and 200 <= exchange.status < 300:
        response = _operation(exchange)["responses"][str(exchange.status)]
        schema = _resolve(response["content"]["application/json"]["schema"])
        known = set(schema.get("properties", {}))
        body = json.loads(exchange.response_body)
        problems += [
            f"response field {k!r} is not one Twilio defines" for k in body if k not in known
        ]
    return problems


def _cause(error: Exception) -> object:
    """openapi-core wraps the jsonschema errors that say what exactly is wrong."""
    cause = error.__cause__
    return getattr(cause, "schema_errors", None) or cause or error
