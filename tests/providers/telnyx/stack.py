"""Our real server with the Telnyx provider against the Telnyx emulator, both on loopback.

`telnyx_stack(tmp_path, ...)` picks a free port first (publicUrl must be known before the
server binds), starts the emulator (its Call Control App URL = our webhook, for inbound calls),
builds the Runtime from a parsed config, serves it, and drives calls over JSON-RPC with
`RpcClient`, exactly as a user would. `restart()` stops the server and serves a fresh Runtime
on the same port and state folder (a crash-and-restart mid-call).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import CallStackMixin, free_port, merge, wait_until
from voice_call.client.rpc import RpcClient
from voice_call.config import Config, parse_config
from voice_call.models import CallRecord
from voice_call.runtime import Runtime
from voice_call.security.signatures import telnyx as signatures
from voice_call.server.serve import RunningServer, start_background
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import SentWebhook
from voice_call.sim.telnyx import TelnyxEmulator
from voice_call.sim.telnyx.call import TelnyxCall

API_KEY = "KEYtelnyx_provider_test"
CONNECTION_ID = "1494404757140276705"
APP_NUMBER = "+15550001000"
CALLEE = "+15550002000"
CALLER = "+15550003000"
SCALE = 0.05  # emulator delays (answer, speech, retries) at 1/20 of real time


def raw_config(emu: TelnyxEmulator, port: int, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "provider": "telnyx",
        "fromNumber": APP_NUMBER,
        "telnyx": {
            "apiKey": API_KEY,
            "connectionId": CONNECTION_ID,
            "publicKey": emu.public_key,
            "apiBaseUrl": emu.api_base,
        },
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0},
        "staleCallReaperSeconds": 0,
        "maxConcurrentCalls": 5,
    }
    return merge(raw, overrides)


@dataclass
class TelnyxStack(CallStackMixin):
    emu: TelnyxEmulator
    config: Config
    home: Path
    port: int
    runtime: Runtime
    server: RunningServer
    rpc: RpcClient

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/voice/webhook"

    async def wait_user_lines(self, call_id: str, count: int, timeout: float = 10.0) -> CallRecord:
        return await self.wait_record(
            call_id, lambda r: len([e for e in r.transcript if e.speaker == "user"]) >= count
        )

    async def leg(self, call_id: str) -> TelnyxCall:
        """The emulator's leg of one of our calls."""
        record = await self.wait_record(call_id, lambda r: r.provider_call_id is not None)
        assert record.provider_call_id is not None
        return self.emu.leg(record.provider_call_id)

    async def events(self, call_id: str) -> list[str]:
        return [e.type for e in await self.runtime.store.events(call_id=call_id)]

    async def wait_event(self, call_id: str, kind: str, timeout: float = 10.0) -> None:
        async def logged() -> bool:
            return kind in await self.events(call_id)

        await wait_until(logged, timeout)

    async def restart(self) -> None:
        """Stop serving (the runtime and provider close) and serve a fresh Runtime."""
        await self.server.stop()
        self.runtime = Runtime(self.config, self.home)
        self.server = await start_background(self.runtime)
        self.rpc = RpcClient.from_home(self.config, self.home)

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            return await http.post(self.webhook_url, content=body, headers=headers)


@asynccontextmanager
async def telnyx_stack(
    tmp_path: Path,
    *,
    script: CalleeScript | None = None,
    time_scale: float = SCALE,
    emulator: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[TelnyxStack]:
    port = free_port()
    emu = TelnyxEmulator(
        API_KEY,
        webhook_url=f"http://127.0.0.1:{port}/voice/webhook",
        script=script or CalleeScript(),
        time_scale=time_scale,
        connection_id=CONNECTION_ID,
        **(emulator or {}),
    )
    async with emu:
        config = parse_config(raw_config(emu, port, **overrides), env={})
        home = tmp_path / "home"
        runtime = Runtime(config, home)
        server = await start_background(runtime)
        stack = TelnyxStack(
            emu, config, home, port, runtime, server, RpcClient.from_home(config, home)
        )
        try:
            yield stack
        finally:
            await stack.server.stop()


# -- what the emulator saw --------------------------------------------------------------------


def commands(leg: TelnyxCall, action: str | None = None) -> list[dict[str, Any]]:
    """The REST commands the emulator accepted for a leg: [{"action", "body"}]."""
    done: list[dict[str, Any]] = leg.call.extra["commands"]
    return [c for c in done if action is None or c["action"] == action]


def hooks_of(emu: TelnyxEmulator, call_control_id: str) -> list[SentWebhook]:
    return [
        h
        for h in emu.webhooks
        if h.params.get("data", {}).get("payload", {}).get("call_control_id") == call_control_id
    ]


def wire_body(hook: SentWebhook) -> bytes:
    """The exact bytes the emulator sent (it serialises compactly, in insertion order)."""
    return json.dumps(hook.params, separators=(",", ":")).encode()


def signed_headers(
    private_key: signatures.PrivateKeyLike, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "content-type": "application/json",
        signatures.TIMESTAMP_HEADER: stamp,
        signatures.SIGNATURE_HEADER: signatures.sign(private_key, stamp, body),
    }


def decoded_state(value: str) -> str:
    return base64.b64decode(value).decode()
