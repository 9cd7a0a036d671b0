"""A small HTTP/1.1 load generator: keep-alive connections, pre-built requests, open loop.

httpx costs more CPU per request than the server under test, so the requests are built (and
signed) before the clock starts and sent as raw bytes over asyncio streams.

Open loop: request i is due at start + i / rate whatever happened before it, and its latency
is measured from when it was due, not from when a connection was free to send it — so a
server that falls behind shows it in the latency (no coordinated omission). With rate None
each connection sends its next request as soon as it has the answer to the last (closed loop,
the most the server gives over that many connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


def build_request(
    method: str, host: str, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpConnection:
    """One keep-alive connection: send a request, read one response (Content-Length only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this client")
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


@dataclass
class LoadResult:
    sent: int = 0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # connection errors: no answer at all

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile(self.latencies_s, p) * 1000


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


async def run_load(
    connections: Sequence[HttpConnection],
    requests: Sequence[bytes],
    rate: float | None,
) -> LoadResult:
    """Send every request once over `connections`, at `rate` per second (None: flat out)."""
    loop = asyncio.get_running_loop()
    result = LoadResult()
    next_index = 0
    start = loop.time()

    async def worker(conn: HttpConnection) -> None:
        nonlocal next_index
        while next_index < len(requests):
            index = next_index
            next_index += 1
            due = start + index / rate if rate else loop.time()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                status, _ = await conn.request(requests[index])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.failures += 1
                return  # this connection is gone; the others carry on
            result.latencies_s.append(loop.time() - due)
            result.statuses[status] = result.statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in connections))
    result.wall_s = time.perf_counter() - started
    result.sent = next_index
    return result
