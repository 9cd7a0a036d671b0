"""The ASGI app: webhook, JSON-RPC, the event stream, health and the web console, on one
Starlette router.

Unknown paths answer 404 and known paths with the wrong method 405, both as JSON. The
lifespan starts and stops the Runtime (both idempotent, so `serve` may start it earlier to
fail fast on a bad store before the port is announced).

The carrier's POSTs to the webhook path take a lane of their own (`App`): straight to the
webhook's ASGI endpoint, past the middleware (the Host guard exempts that path anyway) and the
router, which would only pick that same endpoint, at a cost on every webhook. Every other
request, the webhook path's other methods and spellings included, goes through Starlette.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Lifespan, Receive, Scope, Send

from voice_call.runtime import Runtime
from voice_call.server.console import console_routes
from voice_call.server.events import KEEPALIVE_S, EventsRoute
from voice_call.server.health import HealthRoute
from voice_call.server.host_guard import HostGuard
from voice_call.server.limits import InFlightLimiter, Limits
from voice_call.server.media import MediaRoute
from voice_call.server.metrics import MetricsRoute
from voice_call.server.responses import json_error
from voice_call.server.rpc import RpcRoute
from voice_call.server.webhook import WebhookRoute

_REASONS = {404: "not found", 405: "method not allowed"}


def webhook_path(path: str) -> str:
    """The seed's normalisation: a leading slash added, a trailing slash removed."""
    path = "/" + path.strip().strip("/")
    return path


class App(Starlette):
    """Starlette, with one direct lane: an HTTP POST to exactly `lane_path` goes to `lane`,
    the same endpoint the router would have chosen for it."""

    def __init__(
        self,
        *,
        lane_path: str,
        lane: WebhookRoute,
        routes: Sequence[BaseRoute],
        middleware: Sequence[Middleware],
        exception_handlers: Mapping[Any, Callable[[Request, Exception], Any]],
        lifespan: Lifespan[Starlette],
    ) -> None:
        super().__init__(
            routes=routes,
            middleware=middleware,
            exception_handlers=exception_handlers,
            lifespan=lifespan,
        )
        self.lane_path = lane_path
        self.lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.lane_path
            and scope["method"] == "POST"
            and not scope.get("root_path")  # the router would match the path without it
        ):
            await self.lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_app(
    runtime: Runtime,
    *,
    limits: Limits | None = None,
    keepalive_s: float = KEEPALIVE_S,
    media: MediaRoute | None = None,
) -> Starlette:
    security = runtime.config.webhook_security
    limits = limits or Limits(max_in_flight=security.max_in_flight_per_client)
    events = EventsRoute(runtime, keepalive_s)
    hook_path = webhook_path(runtime.config.serve.path)
    webhook = WebhookRoute(runtime, limits, InFlightLimiter(limits.max_in_flight))
    routes = [
        Route(hook_path, webhook, methods=["POST"]),  # its other methods: 405 with Allow
        Route("/rpc", RpcRoute(runtime, limits).handle, methods=["POST"]),
        Route("/events", events.handle, methods=["GET"]),
        Route("/healthz", HealthRoute(runtime).handle, methods=["GET"]),
        Route("/metrics", MetricsRoute(runtime).handle, methods=["GET"]),
        *console_routes(runtime, events, limits),  # the web console (login required)
    ]
    streams: list[BaseRoute] = []
    if runtime.config.streaming.enabled or runtime.config.realtime.enabled or media is not None:
        media = media or MediaRoute(runtime)
        streams.append(WebSocketRoute(runtime.media_stream_path, media))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            events.close()
            if media is not None:
                media.close()
            await runtime.stop()

    app = App(
        lane_path=hook_path,
        lane=webhook,
        routes=[*routes, *streams],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
        # DNS rebinding: every HTTP route but the carrier's answers only to our own names
        middleware=[Middleware(HostGuard, runtime=runtime, exempt={hook_path})],
    )
    app.router.redirect_slashes = False  # a redirect is no answer for a carrier's POST
    app.state.events = events
    return app


def close_streams(app: Starlette) -> None:
    """End open event streams (called as the server starts shutting down)."""
    events: EventsRoute | None = getattr(app.state, "events", None)
    if events is not None:
        events.close()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = _REASONS.get(exc.status_code, exc.detail)
    return json_error(exc.status_code, reason, exc.headers)
