"""The Runtime: built once from config, it owns the store, provider, manager and event bus.

No module-level state: everything a running service holds hangs off one Runtime, started and
stopped once. `start()` and `stop()` are idempotent, so a second start in the same process is
harmless (the seed's EADDRINUSE class of bugs came from building a second server).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from voice_call.agent.responder import build_responder
from voice_call.clock import Clock, RealClock, Timer
from voice_call.config import Config
from voice_call.manager.bus import EventBus
from voice_call.manager.manager import CallManager
from voice_call.providers.registry import build_provider
from voice_call.security.replay import ReplayCache
from voice_call.security.rpc_token import ensure_rpc_token
from voice_call.store.factory import build_store

log = logging.getLogger("voice_call.runtime")
RETENTION_INTERVAL_S = 3600.0


class Runtime:
    def __init__(self, config: Config, home: Path, *, clock: Clock | None = None) -> None:
        self.config = config
        self.home = home
        self.clock = clock or RealClock()
        self.bus = EventBus()
        self.store = build_store(config, home)
        self.provider = build_provider(config, self.clock, home)
        self.replay = ReplayCache()
        self.manager = CallManager(
            config,
            self.store,
            self.provider,
            clock=self.clock,
            bus=self.bus,
            responder=build_responder(config.responder.provider),
            webhook_url=self.webhook_url(),
        )
        self.provider.attach(self.manager.handle_event)
        self.provider.set_webhook_url(self.webhook_url())
        self.rpc_token = ""
        self.restored: dict[str, int] = {}
        self._state = "new"
        self._lock = asyncio.Lock()
        self._retention_timer: Timer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def local_webhook_url(self, port: int | None = None) -> str:
        serve = self.config.serve
        return f"http://{serve.bind}:{port or serve.port}{serve.path}"

    def webhook_url(self, port: int | None = None) -> str:
        """What carriers are told to call: publicUrl when set, else the local URL."""
        return self.config.public_url or self.local_webhook_url(port)

    def bound(self, port: int) -> None:
        """The server listens on `port` (which differs from the config when that asked for 0)."""
        self.manager.webhook_url = self.webhook_url(port)
        self.provider.set_webhook_url(self.manager.webhook_url)

    def drain(self) -> None:
        """Shutdown has begun: answer waiting `continue` turns now rather than at the deadline."""
        self.manager.drain()

    @property
    def running(self) -> bool:
        return self._state == "running"

    async def start(self) -> None:
        async with self._lock:
            if self._state == "running":
                return
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.rpc_token = ensure_rpc_token(self.home)
            await self.store.open()
            self.restored = await self.manager.start()
            self._state = "running"
            self._arm_retention()

    def _arm_retention(self, delay: float = 0.0) -> None:
        """Prune ended calls older than store.retentionDays now, then hourly (0 keeps all)."""
        days = self.config.store.retention_days
        if days <= 0 or self._state != "running":
            return

        async def prune() -> None:
            removed = await self.store.prune(self.clock.now() - days * 86_400)
            if removed:
                log.info("pruned %d call(s) ended more than %d day(s) ago", removed, days)
            self._arm_retention(RETENTION_INTERVAL_S)

        def fire() -> None:
            if self._state == "running":
                task = asyncio.ensure_future(prune())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        self._retention_timer = self.clock.call_later(delay, fire)

    async def stop(self) -> None:
        async with self._lock:
            if self._state != "running":
                return
            self._state = "stopped"
            if self._retention_timer is not None:
                self._retention_timer.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.manager.stop()
            self.bus.close()
            await self.provider.close()
            await self.store.close()
