"""uvicorn's httptools protocol with the limits a request head must keep, and a connection cap.

Before a request reaches the app nothing bounds it in uvicorn: httptools buffers a header line
however long, accepts any number of header fields, and a socket that trickles (or sends nothing)
stays open for ever, holding a file descriptor. Here, per connection:

- the head (request line and header fields) may be at most `max_head_bytes` and `max_headers`
  fields, else 431; bytes are counted as they are fed to the parser, so at most the cap of one
  head is ever buffered, whatever the client offers;
- the head must arrive whole within `head_timeout_s`, counted from the connection opening or
  the previous response; else 408 (part of a head came) or a plain close (nothing came);
- beyond `max_connections` open connections (HTTP and WebSocket, uvicorn's own count) a new
  one gets 503 and is closed at once, before its request is read.

A refusal is logged once at first, then as one line of counts per interval: never a traceback
nor a line per socket, which a flood would turn into a flood of logs. The httptools parser stays
(it saves ~80-100 µs per webhook over h11); the cost here is a counter and a timer per head.

A response goes out in one socket write where uvicorn would make two: it writes the status line
and headers on `http.response.start` and the body on `http.response.body`, and on an idle socket
each write is a `send()` syscall and a TCP segment of its own. `JoinedWrites` holds a response's
first write (its head) and sends it with the next one; what is held never outlives the event-loop
step that wrote it, so a stream's head still leaves at once. The bytes on the wire are the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger("voice_call.server")

MAX_HEAD_BYTES = 64 * 1024  # nginx allows 32 KiB of headers by default; carriers send ~2 KiB
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 1000
REFUSAL_LOG_INTERVAL_S = 60.0
# After a 431 or 408 the client may still be sending: up to this long and this much of what
# it sends is read and dropped (never buffered), so it reads our answer, not a connection reset.
LINGER_S = 1.0
LINGER_BYTES = 256 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout_s: float = HEAD_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_head_bytes: int = MAX_HEAD_BYTES
    max_headers: int = MAX_HEADERS


def connection_cap(configured: int) -> int:
    """`configured`, or half the open-files limit when that is lower: the other half stays for
    the calls' outbound sockets (carrier API, speech services), the store and the logs, so idle
    sockets cannot make `accept` or anything else fail for want of a descriptor."""
    if resource is None:  # pragma: no cover
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or configured <= soft // 2:
        return configured
    allowed = max(1, soft // 2)
    log.warning(
        "serve.maxConnections %d lowered to %d: half the open-files limit (%d) — raise "
        "`ulimit -n` to allow more",
        configured,
        allowed,
        soft,
    )
    return allowed


class RefusalLog:
    """The first refusal is logged at once; later ones are counted by reason and logged as one
    line per interval while they go on."""

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._counts: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    def note(self, reason: str, peer: str) -> None:
        if self._report is not None:
            self._counts[reason] += 1
            return
        log.warning(
            "refused a connection from %s: %s (further refusals are counted and logged every %g s)",
            peer,
            reason,
            self.interval_s,
        )
        self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._report = loop.call_later(self.interval_s, self._flush)

    def _flush(self) -> None:
        self._report = None
        if not self._counts:
            return
        summary = "; ".join(f"{count} × {reason}" for reason, count in self._counts.items())
        log.warning(
            "refused %d connections in the last %g s: %s",
            self._counts.total(),
            self.interval_s,
            summary,
        )
        self._counts.clear()
        self._schedule()


class JoinedWrites(asyncio.Transport):
    """The connection's transport as its request cycles see it: the first write of each response
    (its head, or a `100 Continue` before it) is held and joined with the next write, so a small
    response costs one `send()`, not two. WebSocket upgrades keep the real transport.

    Nothing held outlives the loop step that wrote it: if no write follows in that step (a
    stream's head, a `100 Continue` the client waits for), `call_soon` sends it alone, before
    any later I/O callback or timer runs. A held write goes out before anything else reaches the
    socket through here (a write, `write_eof`, `close`); the protocol flushes it before it
    writes or closes by itself, and when a response ends (a HEAD's head has no body to join).
    Everything else is the real transport's, unchanged."""

    __slots__ = ("_held", "_hold_next", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._hold_next = True  # armed by the protocol at each response's start

    def hold_next_write(self) -> None:
        self._hold_next = True

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def discard(self) -> None:
        """The peer is gone: nothing held is owed to anyone."""
        self._held = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._hold_next and data:
            self._hold_next = False
            self._held = bytes(data)  # a copy only if mutable: the caller may reuse its buffer
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None  # as the transport's own buffer: dropped
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = len(self._held) if self._held is not None else 0
        return self._transport.get_write_buffer_size() + held

    # The rest is the real transport's.

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class _TooManyHeaders(Exception):
    pass


class LimitedHttpProtocol(HttpToolsProtocol):
    """Configured per server by `limited_http_protocol` (uvicorn builds one per connection)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    refusals: ClassVar[RefusalLog] = RefusalLog()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitted = False  # counted among uvicorn's connections
        self._refused = False  # answered and closing: input is dropped
        self._dropped = 0  # bytes dropped since
        self._head_bytes = 0  # of the head being received; -1 from its end to the message's
        self._heads = 0  # heads received whole on this connection
        self._head_timer: asyncio.TimerHandle | None = None
        self._writes: JoinedWrites | None = None  # what the request cycles write to

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self._refused = True
            transport.write(_response(503, "too many open connections, try again shortly"))
            transport.close()
            self._note(f"at the cap of {self.limits.max_connections} open connections")
            return
        self._admitted = True
        super().connection_made(transport)
        self._writes = JoinedWrites(transport, self.loop)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._writes is not None:
            self._writes.discard()
        if self._admitted:
            super().connection_lost(exc)

    # ------------------------------------------------------------------ the head

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a refusal: read and dropped, up to a point
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        if self._head_bytes < 0:  # a body's bytes: the app's limits apply (server/limits.py)
            self._feed(data)
            return
        room = self.limits.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # Over the cap unless the head ends within it: feed no more than the cap.
        heads = self._heads
        self._feed(data[:room])
        if self._refused or self.transport.is_closing():
            return
        if self._heads == heads:
            self._refuse(431, f"request head larger than {self.limits.max_head_bytes} bytes")
            return
        # The head ended in time; the rest is a body or the next request, or, after a
        # WebSocket upgrade, the new protocol's first bytes.
        cast(asyncio.Protocol, self.transport.get_protocol()).data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        # uvicorn's `data_received`, but a parse error is refused through `_refuse`: counted
        # in the refusal log, not a warning line per socket.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                self._refuse(431, f"more than {self.limits.max_headers} header fields")
            else:
                self._refuse(400, "invalid HTTP request", linger=False)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._flush_writes()  # the WebSocket protocol writes to the real transport
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._head_bytes = -1  # a body follows, not counted here
        self._cancel_head_timer()
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous and self._writes is not None:
            # uvicorn made this request's cycle with the real transport (none for a WebSocket
            # upgrade, which keeps the real one): its response goes through ours instead.
            self.cycle.transport = self._writes

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0  # the next head starts here

    def on_response_complete(self) -> None:
        if self._writes is not None:
            self._writes.flush()  # a HEAD response's head: no body write came to join it
            self._writes.hold_next_write()  # the next response's head
        pipelined = bool(self.pipeline)  # the next request is already here: no head to wait for
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_head_timer()

    # ------------------------------------------------------------------ the head's clock

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if self._head_bytes > 0:
            self._refuse(408, f"no whole request head within {self.limits.head_timeout_s:g} s")
            return
        if not self._heads:  # a socket that never sent a byte
            self._note(f"silent for {self.limits.head_timeout_s:g} s")
        self.transport.close()  # an idle keep-alive connection: nothing to answer

    # ------------------------------------------------------------------ refusing

    def _flush_writes(self) -> None:
        """Before the protocol writes or closes by itself: a held response head goes first."""
        if self._writes is not None:
            self._writes.flush()

    def _refuse(self, status: int, reason: str, *, linger: bool = True) -> None:
        self._refused = True
        self._cancel_head_timer()
        self._note(reason)
        self._flush_writes()
        transport = self.transport
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()  # a response is still being written: no room for ours
            return
        transport.write(_response(status, reason))
        if not linger or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()  # our answer, then our end closed; theirs is read and dropped
        self.loop.call_later(LINGER_S, transport.close)

    def _note(self, reason: str) -> None:
        peer = self.client[0] if self.client else "an unknown peer"
        if self.client is None and self.transport is not None:
            address = self.transport.get_extra_info("peername")
            peer = str(address[0]) if isinstance(address, tuple) else peer
        self.refusals.note(reason, peer)


def _response(status: int, message: str) -> bytes:
    body = message.encode("ascii", "replace") + b"\n"
    return b"".join(
        (
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )


def limited_http_protocol(limits: ConnectionLimits) -> type[LimitedHttpProtocol]:
    """uvicorn's `http=` for one server: these limits, and a refusal log of its own."""

    class Limited(LimitedHttpProtocol):
        pass

    Limited.limits = limits
    Limited.refusals = RefusalLog()
    return Limited
