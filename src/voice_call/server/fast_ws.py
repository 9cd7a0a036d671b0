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

    def send_text_now(self, text: str) -> bool: ...


def text_frame(payload: bytes) -> bytes:
    """A server's (unmasked) final text frame."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return _HEAD_16(_FIN_TEXT, 126, size) + payload
    return _HEAD_64(_FIN_TEXT, 127, size) + payload


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
        self._pending = b""  # the start of a frame the direct lane is waiting to complete
        self._lane = False  # parsing frames ourselves (attached, and websockets is as expected)

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
        # The lane reads websockets' parser state to hand over at frame boundaries; with a
        # websockets whose internals differ, messages still reach the sink, through websockets.
        self._lane = hasattr(self.conn, "current_size") and hasattr(self.conn.reader, "buffer")
        for item in queued:
            inbox.put_nowait(item)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def detach(self) -> None:
        """Back to ASGI `receive` (the app stops reading: the socket is about to close)."""
        self._inbox.sink = None
        self._lane = False

    def send_text_now(self, text: str) -> bool:
        """Write a text frame now; False when it must take the ASGI path (which waits until the
        socket is writable, raises once it is gone, or compresses)."""
        if (
            self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
        ):
            return False
        self.transport.write(text_frame(text.encode()))
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
        conn = self.conn
        if self._pending:
            data, self._pending = self._pending + data, b""
        if (
            not self._lane
            or conn.reader.buffer  # websockets holds part of a frame: it goes on from there
            or conn.current_size is not None  # in the middle of a fragmented message
            or conn.state is not State.OPEN
        ):
            super().data_received(data)
            return
        self._direct(data)

    def _direct(self, buffer: bytes) -> None:
        """Deliver the whole simple data frames at the front of `buffer`; keep a partial one;
        hand the rest to websockets from the first frame that is not simple."""
        pos, end = 0, len(buffer)
        limit = self.config.ws_max_size
        inbox = self._inbox
        while pos < end:
            sink = inbox.sink
            if sink is None:  # detached while delivering
                break
            if end - pos < 2:
                self._pending = buffer[pos:]
                return
            first, second = buffer[pos], buffer[pos + 1]
            size, head = second & 0x7F, 6
            if size >= 126:
                head = 8 if size == 126 else 14
                if end - pos < head - 4:
                    self._pending = buffer[pos:]
                    return
                size = int.from_bytes(buffer[pos + 2 : pos + head - 4], "big")
            if (
                (first != _FIN_TEXT and first != _FIN_BINARY)
                or not second & _MASKED
                or size > limit
            ):
                break  # not ours to judge: websockets takes over at this frame boundary
            stop = pos + head + size
            if stop > end:
                self._pending = buffer[pos:]
                return
            body = apply_mask(buffer[pos + head : stop], buffer[pos + head - 4 : pos + head])
            pos = stop
            if self.close_sent:
                continue  # as uvicorn: after our close, data is dropped until the peer's close
            if first == _FIN_BINARY:
                sink.message(body)
                continue
            try:
                text = body.decode()
            except UnicodeDecodeError:
                self._pending = b""
                self.conn.fail(1007, "invalid UTF-8 in a text frame")
                self.handle_parser_exception()
                return
            sink.message(text)
        self._pending = b""
        if pos < end:
            super().data_received(buffer[pos:])
