"""Our webhook path's own cost, without sockets: `python -m bench.webhook_path [WEBHOOKS]`.

The `webhooks` benchmark measures the whole server (kernel, uvicorn, ours) on a core shared with
nothing; on this two-core machine its µs per webhook moves with whatever else runs. This drives
only what the ASGI app does with a request, in one process: the app `build_app` makes for the
Twilio provider on a real SQLite file, N signed status callbacks (each a distinct verified
request, as `webhooks` sends them) handed to it as ASGI messages, 8 at a time as over 8
keep-alive connections. Every answer must be a 200 and every event must be in the store.
It prints CPU µs per webhook.

For counts that no neighbour disturbs, run it under `valgrind --tool=callgrind` at two lengths
and divide the difference in instructions by the difference in webhooks (start-up cancels out).
`VOICECALL_BENCH_CALLS=100` calls (default), `VOICECALL_BENCH_CONCURRENCY=8`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.twilio_bench import server_config, signed_headers, status_callback, webhook_url
from voice_call.config import parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.runtime import Runtime
from voice_call.server.app import build_app

PORT = 18_080  # named in the signed URL only: nothing listens
Message = dict[str, Any]


def _scope(url: str, headers: dict[str, str], body: bytes, client: int) -> dict[str, Any]:
    path, _, query = url.split("://", 1)[1].partition("/")[2].partition("?")
    raw = [(b"host", f"127.0.0.1:{PORT}".encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/" + path,
        "raw_path": ("/" + path).encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40_000 + client),
        "server": ("127.0.0.1", PORT),
        "state": {},
    }


def requests(
    calls: Sequence[tuple[str, str]], count: int, first: int = 0
) -> list[tuple[dict[str, Any], bytes]]:
    """`count` signed ringing callbacks, round-robin over (call_id, sid), as ASGI scopes;
    SequenceNumbers from `first` on, so each is a distinct request."""
    out = []
    for i in range(first, first + count):
        call_id, sid = calls[i % len(calls)]
        url = f"{webhook_url(PORT)}?callId={call_id}&type=status"
        signature, body = status_callback(url, sid, "ringing", i)
        out.append((_scope(url, signed_headers(signature), body, i % 8), body))
    return out


async def _one(app: Any, scope: dict[str, Any], body: bytes) -> int:
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client says nothing more
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def drive(app: Any, batch: list[tuple[dict[str, Any], bytes]], concurrency: int) -> None:
    for start in range(0, len(batch), concurrency):
        chunk = batch[start : start + concurrency]
        statuses = await asyncio.gather(*(_one(app, s, b) for s, b in chunk))
        if any(status != 200 for status in statuses):
            raise AssertionError(f"a webhook was not answered 200: {statuses}")


async def _calls(runtime: Runtime, count: int) -> list[tuple[str, str]]:
    calls = []
    for i in range(count):
        record = CallRecord(
            provider="twilio",
            provider_call_id=f"CA{i:032x}",
            direction=Direction.OUTBOUND,
            mode=Mode.CONVERSATION,
            **{"from": "+15550001000", "to": f"+1555{i:07d}"},
            started_at=time.time(),
        )
        await runtime.store.save(record)
        calls.append((record.call_id, record.provider_call_id or ""))
    return calls


async def measure(count: int) -> dict[str, float]:
    calls_n = int(os.environ.get("VOICECALL_BENCH_CALLS", "100"))
    concurrency = int(os.environ.get("VOICECALL_BENCH_CONCURRENCY", "8"))
    with tempfile.TemporaryDirectory(prefix="voicecall-bench-") as tmp:
        home = Path(tmp)
        config = server_config("http://127.0.0.1:9", PORT, maxConcurrentCalls=calls_n)
        runtime = Runtime(parse_config(config), home)
        await runtime.start()
        try:
            app = build_app(runtime)
            calls = await _calls(runtime, calls_n)
            await drive(app, requests(calls, 200), concurrency)  # warm-up
            batch = requests(calls, count, first=200)
            cpu = time.process_time()
            await drive(app, batch, concurrency)
            used = time.process_time() - cpu
        finally:
            await runtime.stop()
        with sqlite3.connect(home / "calls.db") as db:
            query = "SELECT COUNT(*) FROM events WHERE type = 'call.ringing'"
            stored = db.execute(query).fetchone()
        if stored[0] != count + 200:
            raise AssertionError(f"{stored[0]} ringing events stored, {count + 200} answered 200")
    return {"webhooks": count, "us_per_webhook": used / count * 1e6}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    result = asyncio.run(measure(count))
    print(f"{result['webhooks']:.0f} webhooks: {result['us_per_webhook']:.1f} µs CPU each")


if __name__ == "__main__":
    main()
