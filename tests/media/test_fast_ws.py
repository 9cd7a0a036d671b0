"""The direct lane of `fast_ws` under a real uvicorn, against a raw-socket WebSocket client.

The client writes frames byte by byte where it matters, so the lane's frame reassembly is
exercised at every split; control frames, fragments and broken frames must still get
websockets' treatment (pong, reassembly, close codes) and keep their order with the messages
the lane delivers itself. The media route must behave the same with and without the lane.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.media.stack import media_server
from tests.support import wait_until
from voice_call.asgi_server import BackgroundServer
from voice_call.models import CallState, EventType
from voice_call.server import serve
from voice_call.server.fast_ws import DIRECT, DirectChannel, FastWebSocketProtocol

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, mask: bytes = b""
) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = mask or os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass
class Capture:
    """An ASGI app: accept, read the first message through ASGI, then attach a sink that
    records every message, echoes text back with `send_text_now`, and records the close."""

    messages: list[str | bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    code: int | None = None
    hold_before_attach: int = 0  # wait until this many messages are queued, then attach
    channel: DirectChannel | None = None

    def message(self, data: str | bytes) -> None:
        self.messages.append(data)
        if isinstance(data, str) and self.channel is not None:
            assert self.channel.send_text_now("echo:" + data)

    def disconnected(self, code: int) -> None:
        self.code = code
        self.closed.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        channel = scope["extensions"][DIRECT]["channel"]
        first = await receive()
        self.messages.append(first.get("text") or first.get("bytes"))
        await wait_until(lambda: channel.queue.qsize() >= self.hold_before_attach)
        self.channel = channel
        channel.attach(self)
        await self.closed.wait()
        channel.detach()


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, data: bytes, *, bytewise: bool = False) -> None:
        if not bytewise:
            self.writer.write(data)
            await self.writer.drain()
            return
        for index in range(len(data)):
            self.writer.write(data[index : index + 1])
            await self.writer.drain()
            await asyncio.sleep(0.0005)  # one read on the server per byte, mostly

    async def read(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, unfragmented): opcode and payload."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    async def close_code(self) -> int:
        """Frames until the server's close frame; its code."""
        while True:
            opcode, payload = await asyncio.wait_for(self.read(), 5)
            if opcode == CLOSE:
                return int(struct.unpack("!H", payload[:2])[0])

    def abort(self) -> None:
        self.writer.transport.abort()


class Counting(FastWebSocketProtocol):
    """Counts the messages websockets assembled (not the direct lane)."""

    assembled = 0

    def send_receive_event_to_app(self) -> None:
        self.assembled += 1
        super().send_receive_event_to_app()


@contextlib.asynccontextmanager
async def served(app: Capture) -> AsyncIterator[int]:
    async with BackgroundServer(app, lifespan="off", ws=Counting) as server:
        yield server.port


async def test_messages_split_anywhere_arrive_whole_in_order_and_text_echoes() -> None:
    sizes = [0, 1, 125, 126, 300, 65535, 65536, 70000]
    payloads: list[str | bytes] = ["first"]
    for size in sizes:
        payloads += ["é" * (size // 2) + "x" * (size % 2), os.urandom(size)]
    app = Capture()
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"first"))
        await wait_until(lambda: app.channel is not None)
        for payload in payloads[1:]:
            wire = (
                frame(TEXT, payload.encode())
                if isinstance(payload, str)
                else frame(BINARY, payload)
            )
            await client.send(wire, bytewise=len(wire) < 1000)  # big ones: TCP splits them
        echoes = [await asyncio.wait_for(client.read(), 5) for p in payloads[1:] if type(p) is str]
        await client.send(frame(CLOSE, struct.pack("!H", 1000)))
        await asyncio.wait_for(app.closed.wait(), 5)
    assert app.messages == payloads
    assert isinstance(app.channel, Counting) and app.channel.assembled == 1  # only "first"
    assert echoes == [(TEXT, b"echo:" + p.encode()) for p in payloads[1:] if isinstance(p, str)]
    assert app.code == 1000


async def test_control_frames_and_fragments_keep_their_order_through_websockets() -> None:
    app = Capture()
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"hello"))
        await wait_until(lambda: app.channel is not None)
        wire = (
            frame(TEXT, b"a")
            + frame(TEXT, b"frag", fin=False)
            + frame(PING, b"p1")
            + frame(CONT, b"men", fin=False)
            + frame(CONT, b"ted")
            + frame(TEXT, b"b")
            + frame(PING, b"p2")
            + frame(BINARY, b"c")
        )
        await client.send(wire, bytewise=True)
        got = [await asyncio.wait_for(client.read(), 5) for _ in range(5)]
        await client.send(frame(TEXT, b"d"))  # the lane takes over again after the fragments
        got.append(await asyncio.wait_for(client.read(), 5))
    assert app.messages == ["hello", "a", "fragmented", "b", b"c", "d"]
    assert isinstance(app.channel, Counting) and app.channel.assembled == 2  # hello, fragmented
    assert got == [
        (TEXT, b"echo:a"),
        (PONG, b"p1"),
        (TEXT, b"echo:fragmented"),
        (TEXT, b"echo:b"),
        (PONG, b"p2"),
        (TEXT, b"echo:d"),
    ]


async def test_a_control_frame_read_piecemeal_by_websockets_never_looks_like_a_new_frame() -> None:
    # websockets consumes a frame's header, then waits for its mask with an empty buffer: a
    # mask that begins like a text frame's header (0x81, masked) must still be read as a mask.
    app = Capture()
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"hello"))
        await wait_until(lambda: app.channel is not None)
        ping = frame(PING, b"ping!", mask=b"\x81\x85\x00\x00")
        for part in (ping[:2], ping[2:4], ping[4:] + frame(TEXT, b"after")):
            await client.send(part)
            await asyncio.sleep(0.05)  # one read each on the server
        got = [await asyncio.wait_for(client.read(), 5) for _ in range(2)]
    assert got == [(PONG, b"ping!"), (TEXT, b"echo:after")]
    assert app.messages == ["hello", "after"]


async def test_messages_queued_before_attach_come_first() -> None:
    app = Capture(hold_before_attach=2)
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"1") + frame(TEXT, b"2") + frame(TEXT, b"3"))
        await wait_until(lambda: app.channel is not None)
        await client.send(frame(TEXT, b"4"))
        await wait_until(lambda: len(app.messages) == 4)
    assert app.messages == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (frame(TEXT, b"\xff\xfe"), 1007),  # not UTF-8
        (frame(TEXT, b"unmasked", masked=False), 1002),  # a client must mask
        (bytes([0x81, 0xFF]) + struct.pack("!Q", 16 * 1024 * 1024 + 1) + b"mask", 1009),
        (bytes([0xC1, 0x80]) + b"mask", 1002),  # compressed, but deflate was not agreed
    ],
    ids=["bad-utf8", "unmasked", "too-big", "rsv1"],
)
async def test_broken_frames_close_with_websockets_codes(wire: bytes, code: int) -> None:
    app = Capture()
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"hello"))
        await wait_until(lambda: app.channel is not None)
        await client.send(frame(TEXT, b"ok") + wire)
        assert await client.close_code() == code
        await asyncio.wait_for(app.closed.wait(), 5)
    assert app.messages == ["hello", "ok"]
    assert app.code == code


async def test_several_texts_sent_at_once_are_one_write_of_separate_frames() -> None:
    app = Capture()
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"hello"))
        await wait_until(lambda: app.channel is not None)
        channel = app.channel
        assert isinstance(channel, FastWebSocketProtocol)
        writes: list[bytes] = []
        write = channel.transport.write

        def counted(data: bytes | bytearray | memoryview) -> None:
            writes.append(bytes(data))
            write(data)

        channel.transport.write = counted  # type: ignore[method-assign]
        assert channel.send_text_now(b'{"event":"media"}', '{"event":"mark"}', "é" * 200)
        assert len(writes) == 1
        got = [await asyncio.wait_for(client.read(), 5) for _ in range(3)]
    assert got == [
        (TEXT, b'{"event":"media"}'),
        (TEXT, b'{"event":"mark"}'),
        (TEXT, ("é" * 200).encode()),
    ]


async def test_a_dropped_connection_reaches_the_sink_and_sending_stops() -> None:
    app = Capture()
    async with served(app) as port:
        client = await RawClient.connect(port)
        await client.send(frame(TEXT, b"hello"))
        await wait_until(lambda: app.channel is not None)
        channel = app.channel
        assert channel is not None
        client.abort()
        await asyncio.wait_for(app.closed.wait(), 5)
        assert not channel.send_text_now("too late")
    assert app.code == 1005  # uvicorn's code for a connection lost after the handshake


@pytest.mark.parametrize("lane", ["direct", "asgi"])
async def test_the_media_route_is_the_same_on_both_lanes(
    tmp_path: Path, lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if lane == "asgi":
        monkeypatch.setattr(serve, "WS_PROTOCOL", "websockets-sansio")
    async with media_server(tmp_path, "twilio") as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        await client.send_json({"event": "dtmf", "dtmf": {"digit": "7"}})
        for junk in ("{", '{"event": "media", "media": {"payload": "***"}}'):
            await client.send_text(junk)
        await wait_until(lambda: any(e.type is EventType.DTMF for e in media.sent))
        assert session.inbound_frames > 0 and not client.closed.is_set()
        result = await asyncio.wait_for(session.speak("Hello there."), 15)
        assert result.heard_text == "Hello there."  # the marks came back in
        await client.stop()
        ended = await media.ended(record.call_id)
        assert ended.end_reason is CallState.HANGUP_USER  # stop: the carrier ended it

        other = media.client(await media.new_call())
        await other.open()
        await other.send_text(json.dumps({"event": "media", "media": {"payload": "A" * 65600}}))
        await asyncio.wait_for(other.closed.wait(), 5)
        await other.close()
        # far bigger: refused by the server's message cap before it is buffered whole
        huge = media.client(await media.new_call())
        await huge.open()
        await huge.send_text("x" * 1_000_000)
        await asyncio.wait_for(huge.closed.wait(), 5)
        await huge.close()
    assert (other.close_code, other.close_reason) == (1009, "frame larger than 65536 bytes")
    assert huge.close_code == 1009
