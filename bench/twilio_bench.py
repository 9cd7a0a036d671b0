"""What the webhooks, load and chaos benchmarks share: our server on the Twilio provider, pointed
at a Twilio emulator that lives in the benchmark's own process.

- `server_config` is the config a user would write for that (plus the benchmark's overrides);
- `RecordingTwilio` is the emulator keeping its own ledger of create-call requests (who asked
  it to dial what), which is how "no call was dialed twice" is judged;
- `status_callback` builds a status callback signed exactly as Twilio signs it;
- `stored_keys` / `expected_keys` compare what the emulator delivered (and got a 2xx for) with
  the store's event log, by the dedupe key the server derives from the verified request.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from voice_call.client.rpc import RpcClient
from voice_call.providers.base import WebhookRequest
from voice_call.providers.twilio.webhooks import parse, verify
from voice_call.security.public_url import ForwardingTrust
from voice_call.security.signatures.twilio import HEADER, compute_signature
from voice_call.sim.common import SentWebhook
from voice_call.sim.twilio.emulator import TwilioEmulator
from voice_call.sim.twilio.rest import CreateCall

ACCOUNT_SID = "AC" + "be7c" * 8
AUTH_TOKEN = "bench-twilio-auth-token-0123456789"
APP_NUMBER = "+15550001000"
CREATE_CONCURRENCY = 8  # calls placed at once before a benchmark starts


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def webhook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/voice/webhook"


def server_config(emulator_url: str, port: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": APP_NUMBER,
        "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "apiBaseUrl": emulator_url},
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": webhook_url(port),
        "staleCallReaperSeconds": 0,
    }
    return merge(base, overrides)


@dataclass(frozen=True)
class Dialed:
    """One create-call request the emulator accepted."""

    sid: str
    call_id: str  # ours, from the callback URLs the provider handed over
    to: str
    request: CreateCall


def _call_id(request: CreateCall) -> str:
    for url in (request.status_callback, request.url):
        ids = parse_qs(urlsplit(url or "").query).get("callId")
        if ids:
            return ids[0]
    return ""


class SpreadTransport(httpx.AsyncBaseTransport):
    """Webhooks from many loopback source addresses (127.0.0.2, .3, ...), as Twilio's come from
    many edge hosts: the server admits 8 requests in flight per client address, a limit meant
    for one misbehaving client, not for a carrier's whole fleet."""

    def __init__(self, sources: int) -> None:
        self._transports = [
            httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + i}") for i in range(sources)
        ]
        self._next = itertools.cycle(self._transports)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


class RecordingTwilio(TwilioEmulator):
    """The Twilio emulator, plus its own ledger of every call it was asked to place, and
    (with `sources` > 1) webhooks spread over that many loopback source addresses."""

    def __init__(self, *args: Any, sources: int = 1, **kwargs: Any) -> None:
        if sources > 1:
            kwargs["webhook_transport"] = SpreadTransport(sources)
        super().__init__(*args, **kwargs)
        self.dialed: list[Dialed] = []
        self.sources = sources

    def create_call(self, request: CreateCall) -> dict[str, Any]:
        resource = super().create_call(request)
        self.dialed.append(Dialed(str(resource["sid"]), _call_id(request), request.to, request))
        return resource


def status_callback(url: str, sid: str, status: str, sequence: int) -> tuple[str, bytes]:
    """(signature, form body) of one Twilio status callback to `url` for call `sid`."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "Called": "+15550002000",
        "Caller": APP_NUMBER,
        "Direction": "outbound-api",
        "From": APP_NUMBER,
        "To": "+15550002000",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": str(sequence),
        "Timestamp": formatdate(usegmt=True),
    }
    return compute_signature(AUTH_TOKEN, url, params), urlencode(params).encode()


def signed_headers(signature: str) -> dict[str, str]:
    return {
        HEADER: signature,
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "TwilioProxy/1.1",
    }


def expected_keys(hook: SentWebhook, public_url: str) -> list[str]:
    """The dedupe keys of the events the server derives from this delivered webhook."""
    body = urlencode(hook.params).encode()
    request = WebhookRequest(
        method="POST",
        url=hook.url,
        headers={k.lower(): v for k, v in hook.headers.items()},
        body=body,
        remote="127.0.0.1",
    )
    verification = verify(request, AUTH_TOKEN, public_url=public_url, trust=ForwardingTrust())
    assert verification.ok, f"the emulator sent a webhook that does not verify: {hook.url}"
    events = parse(request, verification.request_key).events
    return [event.key for event in events]


def stored_keys(db: Path) -> set[str]:
    """Every dedupe key in the store's event log (read-only; safe while a server runs)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT dedupe_key FROM events WHERE dedupe_key IS NOT NULL")
        return {row[0] for row in rows}
    finally:
        conn.close()


def count_events(db: Path, kind: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE type = ?", (kind,)).fetchone()[0]
        )
    finally:
        conn.close()


async def place_calls(emu: RecordingTwilio, rpcs: Sequence[RpcClient], count: int) -> None:
    """`voicecall.initiate` round-robin over the instances' RPC clients; then wait until the
    emulator posted each call's `ringing`, so no call setup lands inside a measured level."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await rpcs[index % len(rpcs)].call(
                "voicecall.initiate",
                {"to": f"+1555{index:07d}", "message": "Hello", "mode": "conversation"},
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    await emu.webhooks.wait_for(
        lambda hook: (
            hook is emu.webhooks[-1]
            and sum(h.params.get("CallStatus") == "ringing" for h in emu.webhooks) >= count
        ),
        timeout=60,
    )
