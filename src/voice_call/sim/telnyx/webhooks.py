"""Telnyx webhook delivery: the `{"data": …, "meta": …}` envelope, Ed25519-signed, in order.

Each call owns a `WebhookQueue`: events are queued synchronously (so their order is the order
things happened) and a single task delivers them one after another, retrying a delivery that
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from voice_call.security.signatures import telnyx as signatures
from voice_call.sim.common import SentWebhook, WebhookLog

log = logging.getLogger(__name__)


def iso_now() -> str:
    """Telnyx's timestamp style: UTC, microseconds, `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 2.0  # the docs ask apps to answer within 2 s [S]
    # Telnyx retries a failed delivery [S]; how often and when is not documented: three attempts
    # in all, 1 s then 2 s apart (before time_scale), is our guess [M].
    attempts: int = 3
    backoff_s: tuple[float, ...] = (1.0, 2.0)


class WebhookSender:
    """Signs and POSTs envelopes through the emulator's one HTTP client, logging every attempt."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        private_key: Ed25519PrivateKey,
        log: WebhookLog,
        policy: DeliveryPolicy,
        time_scale: float,
    ) -> None:
        self.client = client
        self.private_key = private_key
        self.log = log
        self.policy = policy
        self.time_scale = time_scale

    async def deliver(self, url: str | None, data: dict[str, Any]) -> None:
        kind = str(data.get("event_type", ""))
        if not url:
            # No webhook URL on the call or the connection: Telnyx has nowhere to send it.
            await self.log.add(SentWebhook(url="", params={"data": data}, headers={}, kind=kind))
            return
        for attempt in range(1, self.policy.attempts + 1):
            envelope = {"data": data, "meta": {"attempt": attempt, "delivered_to": url}}
            if await self._post(url, envelope, kind):
                return
            if attempt < self.policy.attempts:
                pause = self.policy.backoff_s[min(attempt - 1, len(self.policy.backoff_s) - 1)]
                await asyncio.sleep(pause * self.time_scale)

    async def _post(self, url: str, envelope: dict[str, Any], kind: str) -> bool:
        # Compact JSON [M]: a receiver that re-serialises before verifying will fail, as it should.
        body = json.dumps(envelope, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            signatures.TIMESTAMP_HEADER: timestamp,
            signatures.SIGNATURE_HEADER: signatures.sign(self.private_key, timestamp, body),
        }
        hook = SentWebhook(url=url, params=envelope, headers=headers, kind=kind)
        try:
            response = await self.client.post(
                url, content=body, headers=headers, timeout=self.policy.timeout_s
            )
        except httpx.HTTPError as exc:
            hook.response_body = f"{type(exc).__name__}: {exc}"
            await self.log.add(hook)
            return False
        hook.status_code = response.status_code
        hook.response_body = response.text
        await self.log.add(hook)
        return response.is_success


class WebhookQueue:
    """One call's webhooks, delivered strictly in the order they were posted."""

    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender
        self._queue: asyncio.Queue[tuple[str | None, dict[str, Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def post(self, url: str | None, event_type: str, payload: dict[str, Any]) -> None:
        data = {
            "record_type": "event",
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": iso_now(),
            "payload": payload,
        }
        self._queue.put_nowait((url, data))
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            url, data = await self._queue.get()
            try:
                await self._sender.deliver(url, data)
            except Exception:  # a bug here must not stall the calls' later webhooks
                log.exception("telnyx emulator: delivering %s failed", data.get("event_type"))
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until everything posted so far was delivered (or given up on)."""
        await self._queue.join()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
