"""HTTP plumbing the fake AI services (OpenAI, ElevenLabs) share.

A request log, JSON body parsing that never raises, paced streaming (time to first byte, then a
delay per chunk, both multiplied by `time_scale`), and the deterministic speech signal both
text-to-speech fakes return.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from voice_call.audio.g711 import SAMPLE_RATE, ulaw_to_pcm16
from voice_call.sim.voice import synthetic_speech

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class LoggedRequest:
    """One request a fake received, and the status it answered with."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # the parsed JSON body; None when it was absent or not JSON
    status: int | None = None
    at: float = field(default_factory=time.time)


def logged(log: list[LoggedRequest], handler: Handler) -> Handler:
    """Wrap a route handler so every request lands in `log` before it is answered."""

    async def wrapper(request: Request) -> Response:
        ok, body = parse_json(await request.body())  # Starlette caches the body for the handler
        entry = LoggedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers=dict(request.headers),
            body=body if ok else None,
        )
        log.append(entry)
        response = await handler(request)
        entry.status = response.status_code
        return response

    return wrapper


def parse_json(raw: bytes) -> tuple[bool, Any]:
    """(True, value) for a JSON document, (False, None) for anything else."""
    try:
        return True, json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False, None


def is_int(value: Any) -> bool:
    """JSON integers only: Python's bool is an int, JSON's true is not."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def pause(ms: float, time_scale: float) -> None:
    await asyncio.sleep(max(0.0, ms * time_scale / 1000))


async def paced(
    chunks: Sequence[bytes], first_ms: float, per_ms: float, time_scale: float
) -> AsyncIterator[bytes]:
    """Yield `chunks` the way a synthesiser streams: a first-byte wait, then one per interval."""
    await pause(first_ms, time_scale)
    for index, chunk in enumerate(chunks):
        if index:
            await pause(per_ms, time_scale)
        yield chunk


def split(data: bytes, size: int) -> list[bytes]:
    size = max(1, size)
    return [data[i : i + size] for i in range(0, len(data), size)]


def speech_pcm16(text: str, rate: int, speed: float = 1.0) -> bytes:
    """16-bit little-endian mono PCM at `rate` for `text`: the callee's synthetic voice resampled.

    Deterministic (no espeak), and its length grows with the text (90 ms per character, 45 ms
    per space, divided by `speed`), so tests can predict how many bytes arrive.
    """
    source = ulaw_to_pcm16(synthetic_speech(text)).astype(np.float64)
    count = max(1, round(len(source) * rate / SAMPLE_RATE / speed))
    positions = np.linspace(0, len(source) - 1, count)
    resampled = np.interp(positions, np.arange(len(source)), source)
    return bytes(resampled.astype("<i2").tobytes())
