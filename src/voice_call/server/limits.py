"""Limits applied before a request is trusted: body size cap, body read timeout, in-flight cap.

A body is refused by its declared Content-Length before a byte is read (413), then counted while
it streams in, since the declared length may lie or be absent (chunked). The whole read runs
under one deadline, so a client trickling bytes cannot hold a slot for long (408).

The in-flight cap is counted per instance (in this process's memory, on purpose: a shared
counter would cost a Redis round trip per request, and a counter left by an instance that died
would never come back). Behind a load balancer over N instances (or `serve --workers N`) a
client therefore gets up to N × the cap in flight in all; each instance stays protected.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Receive

from voice_call.security.public_url import ForwardingTrust, client_ip

WEBHOOK_MAX_BYTES = 64 * 1024
RPC_MAX_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 5.0
MAX_IN_FLIGHT = 8
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Limits:
    webhook_max_bytes: int = WEBHOOK_MAX_BYTES
    rpc_max_bytes: int = RPC_MAX_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S
    max_in_flight: int = MAX_IN_FLIGHT  # concurrent webhook requests per client host


class BodyRejected(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """A Starlette request's body (the RPC and console routes), under `receive_body`'s limits."""
    declared = request.headers.get("content-length")
    return await receive_body(request.receive, declared, max_bytes, timeout_s)


async def receive_body(
    receive: Receive, declared: str | None, max_bytes: int, timeout_s: float
) -> bytes:
    """The body from ASGI `http.request` messages: refused by its `declared` Content-Length
    first, then counted as it arrives (400 if the client goes away before its end)."""
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared.strip()):
            raise BodyRejected(400, "Content-Length must be a non-negative integer")
        if int(declared) > max_bytes:
            raise BodyRejected(413, f"body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "http.request":
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > max_bytes:
                        raise BodyRejected(413, f"body larger than {max_bytes} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
                elif kind == "http.disconnect":
                    raise BodyRejected(400, "client went away before sending the whole body")
    except TimeoutError:
        raise BodyRejected(408, f"body not received within {timeout_s:g} s") from None
    return b"".join(chunks)


def client_key(
    remote: str | None, headers: Mapping[str, str], trust: ForwardingTrust | None = None
) -> str:
    """The per-client limit's key: the peer, or the client a trusted proxy forwarded for (so
    one proxy does not share a single slot count among every carrier request behind it).
    A shared key when the peer address is unknown (e.g. a unix socket): still bounded.
    `headers` has lower-case names."""
    if trust is None:
        return remote or "unknown"
    return client_ip(trust, remote, headers)


class InFlightLimiter:
    """At most `limit` requests in progress per key; the rest are refused, not queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def slot(self, key: str) -> Slot:
        """`with limiter.slot(key) as admitted:` holds a place while admitted."""
        return Slot(self._counts, key, self.limit)

    def in_flight(self, key: str) -> int:
        return self._counts.get(key, 0)


class Slot:
    """One request's place under the limit (a class, not a generator context manager: this is
    on every webhook's path)."""

    __slots__ = ("_counts", "_key", "_limit", "admitted")

    def __init__(self, counts: dict[str, int], key: str, limit: int) -> None:
        self._counts = counts
        self._key = key
        self._limit = limit
        self.admitted = False

    def __enter__(self) -> bool:
        """Taken here, not when made, so a slot never entered holds nothing."""
        held = self._counts.get(self._key, 0)
        self.admitted = held < self._limit
        if self.admitted:
            self._counts[self._key] = held + 1
        return self.admitted

    def __exit__(self, *_: object) -> None:
        if self.admitted:
            self.admitted = False
            left = self._counts[self._key] - 1
            if left:
                self._counts[self._key] = left
            else:
                del self._counts[self._key]
