"""Our real server with the Plivo provider against the Plivo emulator, both on loopback.

`plivo_stack(tmp_path, ...)` picks a free port first (publicUrl must be known before the server
binds), starts the emulator (its inbound application's answer and hangup URLs = our webhook),
builds the Runtime from a parsed config, serves it, and drives calls over JSON-RPC with
`RpcClient`, as a user would. `restart()` stops the server and serves a fresh Runtime on the
same port and state folder (a restart mid-call).

The emulator gives distinct RequestUUID and CallUUID (`same_request_and_call_uuid=False`), so
every test also proves the RequestUUID → CallUUID upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import CallStackMixin, free_port, merge
from voice_call.client.rpc import RpcClient
from voice_call.config import Config, parse_config
from voice_call.models import CallRecord
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer, start_background
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import EmulatedCall, SentWebhook
from voice_call.sim.plivo import PlivoEmulator
from voice_call.sim.plivo.call import PlivoLeg

AUTH_ID = "MAPLIVOPROVIDER00001"  # MA + 18: a main account id
AUTH_TOKEN = "plivo-provider-test-token"
APP_NUMBER = "+15550001000"
CALLEE = "+15550002000"
CALLER = "+15550003000"
SCALE = 0.05  # emulator delays at 1/20 of real time


def raw_config(emulator_url: str, port: int, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "provider": "plivo",
        "fromNumber": APP_NUMBER,
        "plivo": {"authId": AUTH_ID, "authToken": AUTH_TOKEN, "apiBaseUrl": emulator_url},
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0},
        "staleCallReaperSeconds": 0,
        "maxConcurrentCalls": 5,
    }
    return merge(raw, overrides)


@dataclass
class PlivoStack(CallStackMixin):
    emulator: PlivoEmulator
    config: Config
    home: Path
    port: int
    server: RunningServer
    rpc: RpcClient

    @property
    def runtime(self) -> Runtime:
        return self.server._runtime

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/voice/webhook"

    async def wait_user_lines(self, call_id: str, count: int, timeout: float = 10.0) -> None:
        await self.wait_record(
            call_id, lambda r: sum(e.speaker == "user" for e in r.transcript) >= count, timeout
        )

    def leg(self, record: CallRecord) -> PlivoLeg:
        assert record.provider_call_id is not None
        return self.emulator.legs[record.provider_call_id]

    def leg_by_uuid(self, call_uuid: str) -> PlivoLeg:
        return self.emulator.legs[call_uuid]

    async def wait_hook(self, kind: str, call_uuid: str, timeout: float = 5.0) -> SentWebhook:
        return await self.emulator.webhooks.wait_for(
            lambda h: h.kind == kind and h.params.get("CallUUID") == call_uuid, timeout
        )

    def carrier_call(self, record: CallRecord) -> EmulatedCall:
        return self.leg(record).call

    def hooks(self, kind: str | None = None, call_uuid: str | None = None) -> list[SentWebhook]:
        return [
            h
            for h in self.emulator.webhooks
            if (kind is None or h.kind == kind)
            and (call_uuid is None or h.params.get("CallUUID") == call_uuid)
        ]

    async def post(
        self, params: dict[str, str], headers: dict[str, str], url: str | None = None
    ) -> httpx.Response:
        """A callback as Plivo sends it (form body), to our webhook or `url`."""
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(url or self.webhook_url, data=params, headers=headers)

    async def replay(self, hook: SentWebhook) -> httpx.Response:
        return await self.post(dict(hook.params), dict(hook.headers), hook.url)

    async def stop(self) -> None:
        await self.server.stop()

    async def start(self) -> None:
        """A fresh Runtime on the same port and state folder (after `stop`)."""
        self.server = await start_background(Runtime(self.config, self.home))
        self.rpc = RpcClient.from_home(self.config, self.home)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@asynccontextmanager
async def plivo_stack(
    tmp_path: Path,
    script: CalleeScript | None = None,
    *,
    time_scale: float = SCALE,
    signature: str = "v3",
    config: dict[str, Any] | None = None,
) -> AsyncIterator[PlivoStack]:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    emulator = PlivoEmulator(
        AUTH_ID,
        AUTH_TOKEN,
        script or CalleeScript(answer_delay_ms=300, reply_delay_ms=300),
        time_scale,
        answer_url=webhook,
        hangup_url=webhook,
        signature="v2" if signature == "v2" else "v3",
        same_request_and_call_uuid=False,
    )
    async with emulator:
        parsed = parse_config(raw_config(emulator.url, port, **(config or {})), env={})
        home = tmp_path / "home"
        server = await start_background(Runtime(parsed, home))
        stack = PlivoStack(emulator, parsed, home, port, server, RpcClient.from_home(parsed, home))
        try:
            yield stack
        finally:
            await stack.server.stop()
