"""A loopback round-robin load balancer for the cluster tests, as a real one in front of N
`voicecall serve` processes behaves.

It works at the TCP level, one backend per client connection, so it carries HTTP and WebSocket
upgrades alike. A client that keeps its connection alive (the carrier emulators' httpx client
does) would pin every webhook to one backend; real balancers route each request, so this one
marks every plain HTTP request `Connection: close`: the backend closes after its answer and the
client's next request opens a new connection, routed to the next backend. An upgrade request
(a media stream) keeps its connection to the backend it got, for as long as the socket lives.

Passive health check: a backend that refuses the connection (a killed process) is skipped and
the next one tried, as nginx's `proxy_next_upstream error` does; a backend that dies after
accepting a request leaves the client with a closed connection, which it must retry itself.
`mark(port, up=False)` takes a backend out by hand; `picks`/`refusals` count what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

HEAD_LIMIT = 64 * 1024
CHUNK = 64 * 1024
BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 23\r\n"
    b"connection: close\r\n\r\nno backend is reachable"
)


@dataclass
class Backend:
    host: str
    port: int
    up: bool = True  # marked by hand; a refused connection only skips it once


def is_upgrade(head: bytes) -> bool:
    """The request asks to switch protocols (a WebSocket handshake)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip():
            return True
    return False


def closing(head: bytes) -> bytes:
    """The request head with `Connection: close` instead of whatever it had."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower() != b"connection"]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


class Balancer:
    """`async with Balancer([port, ...]) as lb:` → `lb.url` spreads requests over the ports."""

    def __init__(self, ports: Sequence[int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.backends = [Backend(host, port) for port in ports]
        self.picks: Counter[int] = Counter()  # connections handed to each backend port
        self.refusals: Counter[int] = Counter()  # connections each backend refused
        self.upgrades: dict[str, int] = {}  # WebSocket request target → backend port
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def mark(self, port: int, *, up: bool) -> None:
        next(b for b in self.backends if b.port == port).up = up

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0, limit=HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Balancer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next backend in turn that accepts a connection; None when none does."""
        start = next(self._turn)
        for offset in range(len(self.backends)):
            backend = self.backends[(start + offset) % len(self.backends)]
            if not backend.up:
                continue
            try:
                opened = await asyncio.open_connection(backend.host, backend.port)
            except OSError:
                self.refusals[backend.port] += 1
                continue
            self.picks[backend.port] += 1
            return backend, *opened
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._proxy(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client or backend went away mid-request: nothing to answer
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # closed before a request: a probe or an idle pooled connection
        opened = await self._connect()
        if opened is None:
            writer.write(BAD_GATEWAY)
            await writer.drain()
            return
        backend, up_reader, up_writer = opened
        upgrade = is_upgrade(head)
        if upgrade:
            target = head.split(b" ", 2)[1].decode("latin-1")
            self.upgrades[target] = backend.port
        try:
            up_writer.write(head if upgrade else closing(head))
            await up_writer.drain()
            upstream = asyncio.create_task(_pipe(reader, up_writer, eof=True))
            try:
                await _pipe(up_reader, writer)  # the answer, until the backend closes
            finally:
                upstream.cancel()
                await asyncio.gather(upstream, return_exceptions=True)
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


async def _pipe(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, eof: bool = False
) -> None:
    """Copy bytes until `source` ends (or either side fails); `eof`: then half-close `sink`."""
    with contextlib.suppress(OSError):
        while chunk := await source.read(CHUNK):
            sink.write(chunk)
            await sink.drain()
        if eof and sink.can_write_eof():
            sink.write_eof()
