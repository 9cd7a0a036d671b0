"""This process's membership in the cluster: a key with a short TTL that a heartbeat renews.

`P:inst:{id}` exists exactly as long as the instance runs (plus at most the TTL after it died),
so "is the owner of this call alive?" is one EXISTS. A new id for every process start means a
restarted instance never inherits the calls of its previous life by accident: they are orphans
that any instance (itself included) adopts through Ownership.claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("voice_call.cluster.instance")

INSTANCE_TTL_S = 5.0
HEARTBEAT_S = 1.0


class Instance:
    """One running process. `start()` registers it and starts the heartbeat; `stop()` ends it
    and deletes the key, so others see it gone at once instead of after the TTL."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl_s: float = INSTANCE_TTL_S,
        beat_s: float = HEARTBEAT_S,
    ) -> None:
        if beat_s >= ttl_s:
            raise ValueError(f"heartbeat ({beat_s} s) must be shorter than the TTL ({ttl_s} s)")
        self.id = uuid.uuid4().hex[:12]
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._beat_s = beat_s
        self._renewed_at = -float("inf")  # monotonic time of the last SET that succeeded
        self.lapses = 0  # how often the key expired between two renewals (a stalled loop)
        self._value = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        )
        self._beat: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def key(self, instance_id: str) -> str:
        return f"{self._prefix}:inst:{instance_id}"

    async def start(self) -> None:
        """Register (a Redis error here propagates: an instance that cannot register must not
        serve) and start the heartbeat. Idempotent."""
        if self._beat is not None:
            return
        await self._set_key()
        self._beat = asyncio.create_task(self._heartbeat(), name=f"cluster-heartbeat-{self.id}")

    async def stop(self) -> None:
        """Stop the heartbeat and delete the key (best effort: a Redis that is down lets the key
        expire by itself). Idempotent."""
        beat, self._beat = self._beat, None
        if beat is None:
            return
        # The beat finishes a SET it has sent before the DEL goes out: cancelled mid-command,
        # its SET could reach Redis (on another pooled connection) after the DEL and bring
        # the key back for a whole TTL, so a stopped instance would look alive.
        self._stopping.set()
        await asyncio.wait({beat}, timeout=self._ttl_ms / 1000)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        self._stopping.clear()
        try:
            await self._redis.delete(self.key(self.id))
        except (RedisError, OSError) as exc:
            log.warning("instance %s: could not delete its key at stop: %s", self.id, exc)

    async def _set_key(self) -> None:
        sent = time.monotonic()  # the key lives at least ttl from here
        await self._redis.set(self.key(self.id), self._value, px=self._ttl_ms)
        if sent - self._renewed_at > self._ttl_ms / 1000 and self._renewed_at > -float("inf"):
            self.lapses += 1  # the key expired meanwhile: others may have taken our calls
        self._renewed_at = sent

    def fresh(self) -> bool:
        """Our key surely still exists (renewed within half its lifetime): no other instance
        can have taken our calls since, so a call we own may be served without asking Redis."""
        return time.monotonic() - self._renewed_at < self._ttl_ms / 2000

    async def alive(self, instance_id: str) -> bool:
        return bool(await self._redis.exists(self.key(instance_id)))

    async def live_instances(self) -> list[str]:
        """Ids of every instance whose key exists now (this one included while it runs)."""
        head = self.key("")
        pattern = _glob_escape(head) + "*"
        return sorted([key[len(head) :] async for key in self._redis.scan_iter(match=pattern)])

    async def _heartbeat(self) -> None:
        """Renew the key every beat. SET (not PEXPIRE) so a key lost with a Redis restart comes
        back on the next beat. A failed beat is logged and retried: a Redis hiccup shorter than
        the TTL must not make this instance look dead, and a longer one must not kill the loop."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._beat_s)
                return  # stop() asked, between two beats
            try:
                await self._set_key()
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("instance %s: heartbeat failed, retrying: %s", self.id, exc)
                failing = True
                continue
            if failing:
                log.info("instance %s: heartbeat works again", self.id)
                failing = False


def _glob_escape(text: str) -> str:
    """SCAN MATCH treats *?[]\\ as glob syntax; a prefix is plain text."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
