"""The Runtime: built once from config, it owns the store, provider, manager and event bus.

No module-level state: everything a running service holds hangs off one Runtime, started and
stopped once. `start()` and `stop()` are idempotent, so a second start in the same process is
harmless (the seed's EADDRINUSE class of bugs came from building a second server).

The webhook URL carriers are told to call is resolved by `tunnel.resolve` (publicUrl > tunnel >
legacy tailscale.mode > the local URL). A tunnel opens once the server's port is bound: in
`start()` when the port is already known (serve binds before it starts the Runtime), else as
soon as `bound(port)` names it, with the next `start()` (the app's lifespan) waiting for it.
A real carrier given a URL it cannot reach (loopback, private, …) refuses to start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_call.agent.responders.factory import build_responder
from voice_call.clock import Clock, RealClock, Timer
from voice_call.commands import dispatch
from voice_call.config import Config
from voice_call.manager.bus import EventBus
from voice_call.manager.continues import ContinueTurns
from voice_call.manager.manager import CallManager
from voice_call.models import CallEvent, CallState
from voice_call.providers.registry import build_provider
from voice_call.security.exposure import (
    forwarding_from_anyone,
    refuse_tailnet_only,
    refuse_unreachable_webhook,
)
from voice_call.security.replay import ReplayCache, ReplayStore
from voice_call.security.rpc_token import ensure_rpc_token
from voice_call.store.factory import build_store
from voice_call.tunnel import Tunnel
from voice_call.tunnel.record import forget_exposure, record_exposure
from voice_call.tunnel.resolve import (
    bind_url,
    build_tunnel,
    local_origin,
    plan_exposure,
    stream_url,
)

if TYPE_CHECKING:
    from voice_call.cluster import Cluster
    from voice_call.cluster.adoption import AdoptionSweep
    from voice_call.cluster.feed import EventFeed
    from voice_call.cluster.router import ClusterRouter
    from voice_call.cluster.streams import ClusterStreams
    from voice_call.media.registry import MediaSessions
    from voice_call.realtime.control import ManagerControl
    from voice_call.realtime.factory import RealtimeFactory

log = logging.getLogger("voice_call.runtime")
RETENTION_INTERVAL_S = 3600.0
TunnelFactory = Callable[[Config], Tunnel | None]


class Runtime:
    def __init__(
        self,
        config: Config,
        home: Path,
        *,
        clock: Clock | None = None,
        tunnel_factory: TunnelFactory | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.clock = clock or RealClock()
        self.exposure = plan_exposure(config)
        self._tunnel_factory = tunnel_factory or build_tunnel
        self._tunnel: Tunnel | None = None
        self._tunnel_url: str | None = None
        self._opening: asyncio.Task[None] | None = None  # a tunnel `bound()` started opening
        self._port: int | None = None
        self.bus = EventBus()
        self.store = build_store(config, home)
        self.provider = build_provider(config, self.clock, home)
        self.replay: ReplayStore = ReplayCache()  # shared in Redis when clustered
        self.feed: EventFeed | None = None  # other instances' events onto self.bus
        self.manager = CallManager(
            config,
            self.store,
            self.provider,
            clock=self.clock,
            bus=self.bus,
            responder=build_responder(config),
            webhook_url=self.webhook_url(),
            recordings=home / "recordings",  # `recording.download`: the carrier's files
        )
        # continue.start turns outlive their request; a call's go when it ends
        self.turns = ContinueTurns(self.manager.continue_call)
        self.manager.end_listeners.append(self.turns.call_ended)
        # Redis: one of several instances; each call's events and commands go to its owner.
        self.cluster: Cluster | None = None
        self.router: ClusterRouter | None = None
        self._sweep: AdoptionSweep | None = None
        if config.store.backend == "redis":
            self._join_cluster()
        self.provider.attach(self.handle_event)
        self.provider.set_webhook_url(self.webhook_url(), pinned=self._url_is_public())
        if config.streaming.enabled or config.realtime.enabled:
            # Built now (a missing key fails at start) and handed to the provider.
            self.provider.attach_media(self.media)
            self.manager.end_listeners.append(self.media.call_ended)
        self.rpc_token = ""
        self.restored: dict[str, int] = {}
        self._state = "new"
        self._lock = asyncio.Lock()
        self._retention_timer: Timer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _join_cluster(self) -> None:
        from voice_call.cluster import Cluster
        from voice_call.cluster.adoption import AdoptionSweep
        from voice_call.cluster.feed import EventFeed
        from voice_call.cluster.replay import RedisReplayCache
        from voice_call.cluster.router import ClusterRouter

        store = self.config.store
        assert store.url is not None  # the config requires it with redis
        self.cluster = Cluster(store.url, store.prefix)
        self.router = ClusterRouter(
            self.cluster,
            self.manager,
            self._dispatch_here,
            transcript_timeout_ms=self.config.transcript_timeout_ms,
        )
        self._sweep = AdoptionSweep(self.router)
        self.replay = RedisReplayCache(self.cluster.redis, store.prefix)  # a retry at any instance
        self.feed = EventFeed(self.cluster.redis, store.prefix, self.bus)  # SSE/tail see all calls

    async def handle_event(self, event: CallEvent) -> str:
        """Apply a carrier or media event: at its call's owner when clustered."""
        if self.router is not None:
            return await self.router.handle_event(event)
        return await self.manager.handle_event(event)

    async def dispatch(self, method: str, params: Any) -> dict[str, Any]:
        """Run one command-layer method (RPC, console): at its call's owner when clustered."""
        if self.router is not None:
            return await self.router.dispatch(method, params)
        return await self._dispatch_here(method, params)

    async def _dispatch_here(self, method: str, params: Any) -> dict[str, Any]:
        return await dispatch(
            self.manager, method, params, self.turns, self.config.transcript_timeout_ms
        )

    async def end_after_stream_drop(self, call_id: str, reason: CallState) -> None:
        """A media stream is gone for good: its call's owner ends the call."""
        if self.router is not None:
            return await self.router.end_after_stream_drop(call_id, reason)
        return await self.manager.end_after_stream_drop(call_id, reason)

    def _shared_streams(self) -> ClusterStreams | None:
        """In a cluster, what the media registry shares with the other instances."""
        if self.cluster is None:
            return None
        from voice_call.cluster.streams import ClusterStreams

        return ClusterStreams(self.cluster)

    @functools.cached_property
    def media(self) -> MediaSessions:
        """Live media streams by call id, stream tokens and pre-warming (media/registry.py)."""
        from voice_call.media.registry import MediaSessions

        return MediaSessions(
            self.config,
            sink=self.handle_event,
            end_call=self.end_after_stream_drop,
            shared=self._shared_streams(),  # streams held here serve the other instances
            clock=self.clock,
            models=self.realtime,  # with realtime voice the streams are model bridges
            recordings=self.home / "recordings",  # `recording.enabled`: each stream's WAV
        )

    @functools.cached_property
    def realtime(self) -> RealtimeFactory | None:
        """Realtime voice models and their settings, when `realtime.enabled` (built with the
        media streams, so a missing key fails at start)."""
        if not self.config.realtime.enabled:
            return None
        from voice_call.realtime.factory import RealtimeFactory

        return RealtimeFactory(self.config, consult=self.manager.responder is not None)

    @functools.cached_property
    def call_control(self) -> ManagerControl:
        """What a realtime voice bridge may do to its call (realtime/control.py): in a cluster
        its hang-up, speech and digits run at the call's owner (the router)."""
        from voice_call.realtime.control import ManagerControl

        return ManagerControl(self.config, self.manager, self.media, actions=self.router)

    @property
    def port(self) -> int:
        """The port the server listens on once bound, else serve.port (0: not known yet)."""
        return self._port or self.config.serve.port

    def local_webhook_url(self, port: int | None = None) -> str:
        serve = self.config.serve
        return bind_url(serve.bind, port or self.port, serve.path)

    def _url_is_public(self) -> bool:
        """publicUrl or an open tunnel: the exact URL carriers sign their webhooks over."""
        return bool(self.config.public_url or self._tunnel_url)

    def webhook_url(self, port: int | None = None) -> str:
        """What carriers are told to call: publicUrl, else the open tunnel's URL, else local."""
        return self.config.public_url or self._tunnel_url or self.local_webhook_url(port)

    def stream_url(self, port: int | None = None, path: str | None = None) -> str:
        """The media WebSocket URL on the webhook URL's origin (https → wss)."""
        stream_path = path or self.media_stream_path
        return stream_url(self.webhook_url(port), self.config.serve.path, stream_path)

    @property
    def media_stream_path(self) -> str:
        """The local path carriers open media streams on (realtime or streaming)."""
        realtime = self.config.realtime
        if realtime.enabled and realtime.stream_path:
            return realtime.stream_path
        return self.config.streaming.stream_path

    def bound(self, port: int) -> None:
        """The server listens on `port` (which differs from the config when that asked for 0)."""
        self._port = port
        self._use_urls()
        waiting = self._tunnel is None and self._opening is None
        if self._state == "running" and waiting and self.exposure.tunnel is not None:
            self._opening = asyncio.get_running_loop().create_task(self._open_tunnel(port))

    def _use_urls(self) -> None:
        """Hand the current URLs to the manager and provider, and record them for `setup`."""
        self.manager.webhook_url = self.webhook_url(self._port)
        self.provider.set_webhook_url(self.manager.webhook_url, pinned=self._url_is_public())
        if self._state == "running":
            record_exposure(
                self.home,
                webhookUrl=self.manager.webhook_url,
                streamUrl=self.stream_url(self._port),
                source=self.exposure.source,
                tunnel=self._tunnel.name if self._tunnel else None,
            )

    def _refuse_unreachable(self) -> None:
        """Fail closed before anything opens: a real carrier cannot call a local URL."""
        refuse_tailnet_only(self.config, self.exposure.tunnel)
        if self.exposure.source == "publicUrl" and self.config.public_url:
            refuse_unreachable_webhook(self.config, self.config.public_url, source="publicUrl")
        elif self.exposure.source == "local":
            url = self.local_webhook_url(self._port)
            refuse_unreachable_webhook(self.config, url, source="local")
        forwarding = forwarding_from_anyone(self.config)
        if forwarding is not None:
            log.warning(forwarding)

    async def _open_tunnel(self, port: int) -> None:
        tunnel = self._tunnel_factory(self.config)
        if tunnel is None:
            return
        try:
            url = await tunnel.start(local_origin(self.config.serve.bind, port))
            refuse_unreachable_webhook(self.config, url, source=self.exposure.source)
        except BaseException:
            await tunnel.stop()  # whatever it mounted before failing or being cancelled
            raise
        self._tunnel, self._tunnel_url = tunnel, url
        self._use_urls()
        log.info("webhook URL through %s: %s", tunnel.name, url)

    async def _close_tunnel(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None and not opening.done():
            opening.cancel()
        if opening is not None:
            await asyncio.gather(opening, return_exceptions=True)
        tunnel, self._tunnel, self._tunnel_url = self._tunnel, None, None
        if tunnel is not None:
            await tunnel.stop()

    def drain(self) -> None:
        """Shutdown has begun: answer waiting `continue` turns now rather than at the deadline."""
        self.manager.drain()

    @property
    def running(self) -> bool:
        return self._state == "running"

    async def start(self) -> None:
        async with self._lock:
            if self._state == "running":
                if self._opening is not None:
                    await self._opening  # the tunnel `bound()` began: up, or its error
                return
            self._refuse_unreachable()
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.rpc_token = ensure_rpc_token(self.home)
            port = self._port or self.config.serve.port
            if self.exposure.tunnel is not None and port:
                await self._open_tunnel(port)
            try:
                await self.store.open()
                await self._start_cluster()
                self.restored = await self.manager.start()
            except BaseException:
                await self._stop_cluster()
                await self._close_tunnel()
                raise
            if self.router is not None and self._sweep is not None:
                self.router.ready()  # the calls restored here are ours: serve the others
                self._sweep.start()
            self._state = "running"
            self._use_urls()
            self._arm_retention()

    async def _start_cluster(self) -> None:
        if self.cluster is not None:
            await self.cluster.start()
        if self.feed is not None:
            await self.feed.start()  # before the manager logs anything: nothing missed

    async def _stop_cluster(self) -> None:
        """Leave the cluster: releases under way finish, then others may adopt our calls."""
        if self._sweep is not None:
            await self._sweep.stop()
        if self.router is not None:
            await self.router.aclose()
        if self.feed is not None:
            await self.feed.stop()
        if self.cluster is not None:
            await self.cluster.stop()

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
            await self._close_tunnel()  # carriers stop reaching us before anything else stops
            forget_exposure(self.home)
            if self._retention_timer is not None:
                self._retention_timer.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._sweep is not None:
                await self._sweep.stop()  # no call is taken over while this one leaves
            if "media" in self.__dict__:  # built: close its streams before the manager stops
                await self.media.close()
            if "call_control" in self.__dict__:
                await self.call_control.aclose()
            await self.manager.stop()
            await self._stop_cluster()
            self.bus.close()
            await self.provider.close()
            await self.store.close()
