"""Several mock-provider Runtimes on one Redis, in the test's event loop: a cluster in one process.

Each member is a whole Runtime (its own cluster id, manager, timers, bus), optionally served on
its own loopback port (`serve=True`: webhooks and JSON-RPC over real HTTP). They share one state
folder, as instances deployed with one secret and one carrier would: one RPC token, one mock
carrier ledger (the carrier's memory of every call, whoever dialed it).

`Member.kill()` plays a kill -9 without leaving the process: the heartbeat stops and the channel
goes deaf, but no key is deleted (the instance key lives out its TTL, the owner keys stay), the
manager's timers and tasks die, and the mock carrier's later events for its calls go where the
load balancer would send them (another member).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.server.stack import TEST_LIMITS, server_config
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.cluster import Cluster
from voice_call.cluster.router import ClusterRouter
from voice_call.models import CallEvent, CallRecord, Mode
from voice_call.providers.mock import MockProvider
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.serve import RunningServer, start_background
from voice_call.store.base import LoggedEvent

SECRET = "a-shared-secret-of-32-characters"


@dataclass
class Member:
    name: str
    runtime: Runtime
    server: RunningServer | None = None
    http: httpx.AsyncClient | None = None
    killed: bool = False

    @property
    def cluster(self) -> Cluster:
        assert self.runtime.cluster is not None
        return self.runtime.cluster

    @property
    def router(self) -> ClusterRouter:
        assert self.runtime.router is not None
        return self.runtime.router

    @property
    def id(self) -> str:
        return self.cluster.id

    @property
    def mock(self) -> MockProvider:
        assert isinstance(self.runtime.provider, MockProvider)
        return self.runtime.provider

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON-RPC over this member's HTTP server: the whole reply."""
        assert self.http is not None, "start the stack with serve=True"
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            request["params"] = params
        headers = {"Authorization": f"Bearer {self.runtime.rpc_token}"}
        response = await self.http.post("/rpc", json=request, headers=headers)
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        return reply

    async def webhook(self, event: dict[str, Any]) -> httpx.Response:
        """A mock-carrier webhook (normalised events) posted to this member."""
        assert self.http is not None, "start the stack with serve=True"
        return await self.http.post("/voice/webhook", json={"event": event})

    async def new_call(self, mode: Mode = Mode.CONVERSATION) -> str:
        """A call placed here, once the mock carrier answered it."""
        call = await self.runtime.manager.initiate(
            to="+15555550123", message="Hello there", mode=mode
        )
        await self.wait_record(call.call_id, lambda r: r.answered_at is not None)
        return call.call_id

    async def record(self, call_id: str) -> CallRecord:
        found = await self.runtime.store.get(call_id)
        assert found is not None, call_id
        return found

    async def wait_record(
        self, call_id: str, check: Any, timeout: float = 10.0, what: str = ""
    ) -> CallRecord:
        async def ok() -> bool:
            record = await self.runtime.store.get(call_id)
            return record is not None and bool(check(record))

        await wait_until(ok, timeout, what=what or f"call {call_id}")
        return await self.record(call_id)

    async def events(self, call_id: str) -> list[LoggedEvent]:
        return await self.runtime.store.events(call_id=call_id, limit=1000)

    async def kill(self, carrier_to: Member | None = None) -> None:
        """Die as kill -9 would, seen from the others (see the module's docstring)."""
        runtime, cluster = self.runtime, self.cluster
        self.killed = True
        sink = carrier_to.runtime.handle_event if carrier_to is not None else _nowhere
        runtime.provider.attach(sink)
        beat, cluster.instance._beat = cluster.instance._beat, None  # stop() deletes no key now
        if beat is not None:
            beat.cancel()
        await cluster.channel.stop()  # deaf at once: requests to it find nobody
        # Its timers, tasks and sweep die with it; the store and the keys stay as they are.
        if self.server is not None:
            await self.server.stop()
        else:
            await runtime.stop()


async def _nowhere(event: CallEvent) -> str:
    return "lost"


def cluster_config(redis: RedisServer, prefix: str, **overrides: Any) -> Any:
    store = {"backend": "redis", "url": redis.url, "prefix": prefix}
    overrides = {"toNumber": "+15555550123", **overrides}
    return server_config(store=store, streaming={"tokenSecret": SECRET}, **overrides)


@asynccontextmanager
async def cluster_stack(
    root: Path, redis: RedisServer, count: int = 2, *, serve: bool = False, **overrides: Any
) -> AsyncIterator[list[Member]]:
    """`count` members (a, b, c, ...) on one fresh key prefix, started; stopped at the end."""
    config = cluster_config(redis, RedisServer.prefix(), **overrides)
    async with AsyncExitStack() as stack:
        members = []
        for index in range(count):
            runtime = Runtime(config, root / "state")
            stack.push_async_callback(runtime.stop)
            member = Member("abcdefgh"[index], runtime)
            if serve:
                app = build_app(runtime, limits=TEST_LIMITS)
                member.server = await start_background(runtime, app=app)
                stack.push_async_callback(_stop_server, member)
                member.http = httpx.AsyncClient(base_url=member.server.url, timeout=30)
                stack.push_async_callback(member.http.aclose)
            else:
                await runtime.start()
            members.append(member)
        yield members


async def _stop_server(member: Member) -> None:
    if member.server is not None and not member.killed:
        await member.server.stop()
