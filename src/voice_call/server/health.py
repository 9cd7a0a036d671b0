"""GET /healthz: liveness for people and load balancers. No auth, so nothing secret in it."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

import voice_call
from voice_call.runtime import Runtime
from voice_call.server.responses import json_response

log = logging.getLogger("voice_call.server.health")


class HealthRoute:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def handle(self, request: Request) -> Response:
        body = {
            "ok": True,
            "provider": self.runtime.provider.name,
            "version": voice_call.__version__,
        }
        if self.runtime.cluster is not None:  # which instance (or `--workers` worker) answered
            body["instance"] = self.runtime.cluster.id
        try:
            active = await self.runtime.manager.active()
        except Exception as exc:
            log.warning("health check: store unavailable: %r", exc)
            return json_response({**body, "ok": False, "error": "store unavailable"}, 503)
        return json_response({**body, "activeCalls": len(active)})
