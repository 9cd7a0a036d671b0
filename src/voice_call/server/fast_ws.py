"""uvicorn's sans-I/O WebSocket protocol with a direct lane for the media streams' frames.

Through plain ASGI every inbound message costs websockets' generator-based frame parser, a
message dict, an `asyncio.Queue` put and get, a task wake-up, and a pause plus a resume of the
socket's reads (two `epoll_ctl` calls); every outbound one costs two coroutine layers and
websockets' frame serialiser. At 500 streams that is 50,000 messages a second on one core, and
it was three quarters of the cost.

An app that finds `scope["extensions"][DIRECT]["channel"]` (a `DirectChannel`) may `attach` a
`FrameSink` once the handshake is done: from then on every data message is handed to
`sink.message` synchronously from `data_received`, and the end of the connection to
`sink.disconnected`; reads are never paused (the sink does not wait for anything), and
`send_text_now` writes a text frame straight to the transport. What the direct lane does not
understand goes to websockets as before, at a frame boundary: control frames (ping, pong, close),
fragmented messages, reserved bits (compression), oversized or unmasked frames, everything before
`attach`. Frame rules as in RFC 6455 §5; the semantics an ASGI app sees do not change.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Protocol

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

DIRECT = "voice_call.direct"

_FIN_TEXT, _FIN_BINARY = 0x81, 0x82  # FIN set, no reserved bits: a whole, uncompressed message
_MASKED = 0x80
_HEAD_16 = struct.Struct("!BBH").pack
_HEAD_64 = struct.Struct("!BBQ").pack


class FrameSink(Protocol):
    def message(self, data: str | bytes) -> None:
        """One whole data message (text as str); runs inside the protocol's `data_received`."""

    def disconnected(self, code: int) -> None:
        """The connection ended (with the code uvicorn puts in `websocket.disconnect`)."""


class DirectChannel(Protocol):
    def attach(self, sink: FrameSink) -> None: ...

    def detach(self) -> None: ...

    def send_text_now(self, text: str | bytes, *more: str | bytes) -> bool: ...


def text_frame(payload: bytes) -> bytes:
    """A server's (unmasked) final text frame."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return _HEAD_16(_FIN_TEXT, 126, size) + payload
    return _HEAD_64(_FIN_TEXT, 127, size) + payload


def _utf8(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


class _Inbox(asyncio.Queue[ASGIReceiveEvent]):
    """uvicorn's receive queue; while a sink is attached, messages go to the sink instead."""

    sink: FrameSink | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        sink = self.sink
        if sink is None:
            super().put_nowait(item)
        elif item["type"] == "websocket.disconnect":
            sink.disconnected(int(item.get("code", 1005)))
        elif item["type"] == "websocket.receive":
            text = item.get("text")
            sink.message(text if text is not None else item.get("bytes") or b"")


class FastWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbox = _Inbox()
        self.queue = self._inbox  # uvicorn's puts now pass through the inbox
        self._pending = b""  # the start of a frame not yet whole
        self._lane = False  # delivering frames ourselves (attached, websockets as expected)
        self._tracking = False  # walking frame boundaries (from the handshake on)
        self._given_up = False  # the connection failed: websockets reads the rest
        self._ws_left = 0  # bytes of the current frame that are websockets' to read

    async def run_asgi(self) -> None:
        self.scope["extensions"][DIRECT] = {"channel": self}
        await super().run_asgi()

    # ------------------------------------------------------------------ DirectChannel

    def attach(self, sink: FrameSink) -> None:
        """Hand every later message to `sink` (and the ones already queued, in order)."""
        inbox = self._inbox
        queued = []
        while not inbox.empty():
            queued.append(inbox.get_nowait())
        inbox.sink = sink
        # The lane asks websockets whether a fragmented message is open; with a websockets
        # whose internals differ, messages still reach the sink, through websockets.
        self._lane = hasattr(self.conn, "current_size")
        for item in queued:
            inbox.put_nowait(item)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def detach(self) -> None:
        """Back to ASGI `receive` (the app stops reading: the socket is about to close)."""
        self._inbox.sink = None
        self._lane = False

    def send_text_now(self, text: str | bytes, *more: str | bytes) -> bool:
        """Write a text frame now, and one for each of `more` in the same write (str, or UTF-8
        bytes); False when it must take the ASGI path (which waits until the socket is
        writable, raises once it is gone, or compresses)."""
        if (
            self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
        ):
            return False
        data = text_frame(text if isinstance(text, bytes) else text.encode())
        if more:
            data = b"".join([data, *(text_frame(_utf8(m)) for m in more)])
        self.transport.write(data)
        return True

    # ------------------------------------------------------------------ inbound

    def send_receive_event_to_app(self) -> None:
        # A message websockets assembled (a fragmented one, say): uvicorn queues it, which an
        # attached sink receives at once, and pauses reading until the app's next `receive`,
        # which an attached app never calls.
        super().send_receive_event_to_app()
        if self.read_paused and self._inbox.sink is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if not self._tracking and not self._given_up and self.conn.state is State.OPEN:
            # The first bytes after the handshake start at a frame boundary, unless the client
            # sent frames before our 101 (websockets holds them): then it never gets the lane.
            reader = getattr(self.conn, "reader", None)
            self._tracking = not getattr(reader, "buffer", b"")
            self._given_up = not self._tracking
        if not self._tracking:
            super().data_received(data)  # the handshake, or a connection the lane gave up on
            return
        self._walk(self._pending + data if self._pending else data)

    def _to_websockets(self, data: bytes) -> bool:
        """Feed `data` (whole or part of the frame websockets is reading) to websockets;
        False when that ended the connection (the rest then goes to websockets too)."""
        super().data_received(data)
        if self.conn.state is State.OPEN:
            return True
        self._tracking, self._given_up = False, True
        return False

    def _walk(self, buffer: bytes) -> None:
        """Split `buffer` at frame boundaries, in order: each whole simple data frame (final,
        masked, no reserved bits, within the size cap, not inside a fragmented message) goes
        straight to the attached sink; every other frame's bytes go to websockets, which
        answers pings, reassembles fragments and fails broken frames. Bytes are counted, so
        even a frame websockets reads piecemeal never puts the lane off its boundaries."""
        self._pending = b""
        pos, end = 0, len(buffer)
        limit = self.config.ws_max_size
        while pos < end:
            if self._ws_left:  # the rest of a frame websockets is reading
                take = min(self._ws_left, end - pos)
                self._ws_left -= take
                pos += take
                if not self._to_websockets(buffer[pos - take : pos]):
                    if pos < end:
                        super().data_received(buffer[pos:])
                    return
                continue
            if end - pos < 2:
                self._pending = buffer[pos:]
                return
            first, second = buffer[pos], buffer[pos + 1]
            size, head = second & 0x7F, (6 if second & _MASKED else 2)
            if size >= 126:
                head += 2 if size == 126 else 8
                if end - pos < head:
                    self._pending = buffer[pos:]
                    return
                size = int.from_bytes(
                    buffer[pos + 2 : pos + head - (4 if second & _MASKED else 0)], "big"
                )
            sink = self._inbox.sink
            simple = (
                sink is not None
                and self._lane
                and first in (_FIN_TEXT, _FIN_BINARY)
                and second & _MASKED
                and size <= limit
                and self.conn.current_size is None  # not inside a fragmented message
            )
            if not simple:
                self._ws_left = head + size  # this whole frame is websockets' to read
                continue
            stop = pos + head + size
            if stop > end:
                self._pending = buffer[pos:]
                return
            body = apply_mask(buffer[pos + head : stop], buffer[pos + head - 4 : pos + head])
            pos = stop
            if self.close_sent:
                continue  # as uvicorn: after our close, data is dropped until the peer's close
            assert sink is not None
            if first == _FIN_BINARY:
                sink.message(body)
                continue
            try:
                text = body.decode()
            except UnicodeDecodeError:
                self.conn.fail(1007, "invalid UTF-8 in a text frame")
                self.handle_parser_exception()
                self._tracking, self._given_up = False, True
                return
            sink.message(text)
