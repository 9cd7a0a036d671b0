"""The webhook replay cache in Redis, shared by every instance: a carrier's retry that reaches
another instance than the first delivery did is still a replay, answered as the first was.

`P:replay:<request key>` holds "" while the first delivery is processed (a short lease, so a
reservation of an instance that died mid-request expires and the retry is processed), then the
answer as JSON for the full TTL. Each operation is one round trip: reserve is `SET NX GET PX`
(reserved, or the value already there), complete is `SET PX`, release is `DEL`.
A Redis that cannot be reached is an Unavailable: the webhook answers 503 and applies nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from voice_call.errors import Unavailable
from voice_call.security.replay import CachedResponse

REPLAY_TTL_S = 600.0  # as the in-memory cache: a replay is recognised for ten minutes
PENDING_TTL_S = 30.0  # longer than any webhook takes to apply; then the retry is processed
_PENDING = ""


class RedisReplayCache:
    """A ReplayStore (security/replay.py) every instance of the deployment shares."""

    retry_while_pending = True

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl_s: float = REPLAY_TTL_S,
        pending_s: float = PENDING_TTL_S,
    ) -> None:
        self._redis = redis
        self._p = f"{prefix}:replay:"
        self._ttl_ms = round(ttl_s * 1000)
        self._pending_ms = round(min(pending_s, ttl_s) * 1000)

    async def reserve(self, key: str) -> tuple[bool, CachedResponse | None]:
        """(True, cached-or-None) when `key` was seen within the TTL; else reserve it."""
        with _answering():
            old: Any = await self._redis.set(
                self._p + key, _PENDING, nx=True, get=True, px=self._pending_ms
            )
        if old is None:
            return False, None
        return True, None if old == _PENDING else _decoded(old)

    async def complete(self, key: str, response: CachedResponse) -> None:
        row = {"s": response.status_code, "b": response.body, "t": response.content_type}
        with _answering():
            await self._redis.set(self._p + key, json.dumps(row), px=self._ttl_ms)

    async def release(self, key: str) -> None:
        with _answering():
            await self._redis.delete(self._p + key)


def _decoded(raw: str | bytes) -> CachedResponse:
    row = json.loads(raw)
    return CachedResponse(int(row["s"]), str(row["b"]), str(row["t"]))


@contextmanager
def _answering() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"the Redis replay cache failed: {exc}") from None
