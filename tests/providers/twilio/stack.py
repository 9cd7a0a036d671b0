"""Our real server with the Twilio provider against the Twilio emulator, both on loopback.

`twilio_stack(tmp_path, ...)` picks a free port first (publicUrl must be known before the
server binds), starts the emulator (the number's Voice URL and status callback = our webhook,
for inbound calls), builds the Runtime from a parsed config, serves it, and drives calls over
JSON-RPC with `RpcClient`, exactly as a user would. `restart()` stops the server and serves a
fresh Runtime on the same port and state folder (a crash-and-restart mid-call). `sign()` and
`post()` play Twilio for hand-made requests (replays, tampering, forged turns).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.support import CallStackMixin, free_port, merge
from voice_call.client.rpc import RpcClient
from voice_call.config import Config, parse_config
from voice_call.models import CallRecord, Speaker
from voice_call.runtime import Runtime
from voice_call.security.signatures.twilio import compute_signature
from voice_call.server.serve import RunningServer, start_background
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import EmulatedCall, SentWebhook
from voice_call.sim.twilio import TwilioEmulator

ACCOUNT_SID = "AC" + "5e1f" * 8
AUTH_TOKEN = "twilio-provider-test-token-0123456789"
APP_NUMBER = "+15550001000"
CALLEE = "+15550002000"
CALLER = "+15550003000"
SCALE = 0.05  # emulator delays (answer, Say, Gather, Pause) at 1/20 of real time
LINES = ("Hi, this is Sam speaking.", "Tuesday at three works for me.", "No, that is all, bye.")


def raw_config(emu: TwilioEmulator, port: int, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": APP_NUMBER,
        "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "apiBaseUrl": emu.url},
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0},
        "staleCallReaperSeconds": 0,
        "maxConcurrentCalls": 5,
    }
    return merge(raw, overrides)


def script(**fields: Any) -> CalleeScript:
    fields.setdefault("answer_delay_ms", 400)
    fields.setdefault("reply_delay_ms", 1500)
    fields.setdefault("replies", LINES)
    return CalleeScript(**fields)


@dataclass
class TwilioStack(CallStackMixin):
    emu: TwilioEmulator
    home: Path
    port: int
    config: Config
    runtime: Runtime
    server: RunningServer
    rest_forms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.port}/voice/webhook"

    @property
    def rpc(self) -> RpcClient:
        return RpcClient.from_home(self.config, self.home, timeout=30)

    async def wait_state(self, call_id: str, *states: str, timeout: float = 10.0) -> CallRecord:
        return await self.wait_record(call_id, lambda r: r.state.value in states, timeout)

    async def by_sid(self, sid: str) -> CallRecord | None:
        return await self.runtime.store.find_by_provider_call_id("twilio", sid)

    def emulated(self, record: CallRecord) -> EmulatedCall:
        assert record.provider_call_id is not None
        return self.emu.calls[record.provider_call_id]

    async def start_call(self, mode: str, message: str, to: str = CALLEE) -> str:
        reply = await self.call("voicecall.initiate", to=to, message=message, mode=mode)
        return str(reply["callId"])

    async def answered_greeting(self, greeting: str) -> str:
        """A conversation whose callee has answered `greeting`: one Gather action logged."""
        call_id = await self.start_call("conversation", greeting)
        await self.wait_record(
            call_id, lambda r: any(e.speaker == Speaker.USER for e in r.transcript)
        )
        # the emulator logs a webhook once it has our answer, a moment after we applied it
        await self.emu.webhooks.wait_for(lambda h: h.kind == "action")
        await self.runtime.manager.settle()
        return call_id

    async def restart(self) -> None:
        """Stop serving (the manager, store and provider with it), then serve a fresh Runtime."""
        await self.server.stop()
        self.runtime = Runtime(self.config, self.home)
        self.server = await start_background(self.runtime)
        self._spy()

    def _spy(self) -> None:
        """Record every live-update form the provider sends Twilio."""
        rest = self.runtime.provider.rest  # type: ignore[attr-defined]
        original = rest.update_call

        async def update_call(sid: str, form: dict[str, Any], what: str = "update") -> Any:
            self.rest_forms.append({"sid": sid, "what": what, **form})
            return await original(sid, form, what=what)

        rest.update_call = update_call

    def updates(self, sid: str | None) -> list[dict[str, Any]]:
        return [f for f in self.rest_forms if f["sid"] == sid]

    # ---- playing Twilio by hand

    def sign(self, url: str, params: dict[str, str]) -> str:
        return compute_signature(AUTH_TOKEN, url, params)

    async def post(
        self,
        url: str,
        params: dict[str, str],
        signature: str | None = None,
        body: bytes | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        content = body if body is not None else urlencode(params).encode()
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            return await http.post(url, content=content, headers=headers)

    async def resend(self, hook: SentWebhook, **changes: str) -> httpx.Response:
        """Send a logged webhook again, as sent (a replay), or with changed params."""
        params = {**hook.params, **changes}
        return await self.post(hook.url, params, hook.headers["X-Twilio-Signature"])

    def hooks(self, kind: str, sid: str | None = None) -> list[SentWebhook]:
        return [
            h
            for h in self.emu.webhooks
            if h.kind == kind and (sid is None or h.params.get("CallSid") == sid)
        ]


@asynccontextmanager
async def twilio_stack(
    tmp_path: Path,
    callee: CalleeScript | Callable[[str], CalleeScript] | None = None,
    *,
    scale: float = SCALE,
    **overrides: Any,
) -> AsyncIterator[TwilioStack]:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    emu = TwilioEmulator(
        ACCOUNT_SID,
        AUTH_TOKEN,
        script=callee or script(),
        time_scale=scale,
        voice_url=webhook,
        status_callback=webhook,
    )
    async with emu, serving(emu, tmp_path, port, overrides) as stack:
        yield stack


@asynccontextmanager
async def serving(
    emu: TwilioEmulator, tmp_path: Path, port: int, overrides: dict[str, Any]
) -> AsyncIterator[TwilioStack]:
    """Our server on `port` against `emu` (already running), config `overrides` on top."""
    config = parse_config(raw_config(emu, port, **overrides), env={})
    home = tmp_path / "home"
    runtime = Runtime(config, home)
    server = await start_background(runtime)
    stack = TwilioStack(emu, home, port, config, runtime, server)
    stack._spy()
    try:
        yield stack
    finally:
        await stack.server.stop()
