"""Several `voicecall serve` processes on one Redis: membership (Instance), who owns each call
and holds each media stream (Ownership), and request/reply between instances (Channel).

Cluster mode is on whenever the call store is Redis; with SQLite there is no Cluster at all.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from voice_call.cluster.channel import Channel
from voice_call.cluster.instance import Instance
from voice_call.cluster.ownership import Ownership
from voice_call.errors import Unavailable
from voice_call.store.redis import CONNECT_TIMEOUT_S, where

COMMAND_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64  # per instance, its channel's subscription included


class Cluster:
    """This instance's view of the cluster: `await start()` before use, `stop()` at shutdown."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self._url = url
        # Blocking pool: a burst of forwarded requests waits for a connection instead of
        # failing with "Too many connections". No automatic retries: a retried PUBLISH or
        # claim could act twice.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=CONNECT_TIMEOUT_S,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,  # a hung Redis fails a beat, not hangs it
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self.redis: Redis = Redis.from_pool(pool)
        self.instance = Instance(self.redis, prefix)
        self.ownership = Ownership(self.redis, prefix, self.instance)
        self.channel = Channel(self.redis, prefix, self.instance.id, self.instance.alive)

    @property
    def id(self) -> str:
        return self.instance.id

    async def start(self) -> None:
        """Register this instance, then listen on its channel. An unreachable Redis is an
        Unavailable naming where (without credentials)."""
        try:
            await self.instance.start()
            await self.channel.start()
        except (RedisError, OSError, TimeoutError) as exc:
            await self.stop()
            raise Unavailable(
                f"cannot join the cluster on the Redis at {where(self._url)}: {exc} — start Redis"
                " there or fix store.url"
            ) from None

    async def stop(self) -> None:
        """Stop serving requests, leave (delete the instance key), close the client."""
        await self.channel.stop()
        await self.instance.stop()
        await self.redis.aclose()
