"""Twilio's requests to the application: voice (TwiML fetches), status and stream callbacks.

Each is signed (X-Twilio-Signature) over the exact URL requested, with the query string for GET,
and its form params (docs/carriers.md §1.2), and logged in the emulator's `WebhookLog` whatever
happens. No retries (docs/carriers.md §1 names none).
"""

from __future__ import annotations

import logging
import uuid
from email.utils import format_datetime
from urllib.parse import urlencode

import httpx

from voice_call.security.signatures.twilio import HEADER, compute_signature
from voice_call.sim.common import SentWebhook, WebhookLog
from voice_call.sim.twilio.call import TwilioLeg, now
from voice_call.sim.twilio.markup import Fetch, Stream
from voice_call.sim.twilio.rest import API_VERSION

log = logging.getLogger("voice_call.sim.twilio.webhooks")

WEBHOOK_TIMEOUT_S = 15.0  # [M] Twilio's voice webhook timeout; real seconds, never scaled
# [M] initiated → "initiated", answered → "in-progress", completed → the final status.
_PROGRESS = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}


class TwilioWebhooks:
    """One account's signed requests to the app, over one HTTP client, all logged."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        log_: WebhookLog,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.log = log_
        self._http = httpx.AsyncClient(
            transport=transport, trust_env=False, timeout=WEBHOOK_TIMEOUT_S
        )

    async def close(self) -> None:
        await self._http.aclose()

    def call_params(self, leg: TwilioLeg) -> dict[str, str]:
        """The fields of every voice request (docs/carriers.md §1.2)."""
        call = leg.call
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.id,
            "CallStatus": call.status,
            "Called": call.to_number,
            "Caller": call.from_number,
            "Direction": "inbound" if call.direction == "inbound" else "outbound-api",
            "From": call.from_number,
            "To": call.to_number,
        }
        if "answered_by" in call.extra:
            params["AnsweredBy"] = call.extra["answered_by"]
        return params

    async def fetch_twiml(self, leg: TwilioLeg, fetch: Fetch) -> tuple[SentWebhook, str]:
        """Request a TwiML document; returns the log entry and the answer's content type."""
        params = {**self.call_params(leg), **fetch.params}
        return await self.send(fetch.kind, fetch.url, fetch.method, params)

    async def status_callback(self, leg: TwilioLeg, event: str, duration: int) -> None:
        """One status callback, awaited: the app sees them in order, before the next step."""
        if leg.status_callback is None or event not in leg.events:
            return
        params = self.call_params(leg)
        params["CallStatus"] = _PROGRESS.get(event, leg.call.status)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(leg.sequence)
        params["Timestamp"] = format_datetime(now())
        if event == "completed":
            params["CallDuration"] = str(duration)
        leg.sequence += 1
        await self.send("status", leg.status_callback, leg.status_callback_method, params)

    async def stream_status(
        self, leg: TwilioLeg, stream: Stream, sid: str, event: str, err: str | None
    ) -> None:
        """A `<Stream statusCallback>` request: the stream started, stopped or failed."""
        if not stream.status_callback:
            return
        params = {
            "AccountSid": self.account_sid,
            "CallSid": leg.call.id,
            "StreamSid": sid,
            "StreamName": stream.name or sid,
            "StreamEvent": event,
            "Timestamp": format_datetime(now()),
        }
        if err:
            params["StreamError"] = err
        await self.send("stream", stream.status_callback, stream.status_callback_method, params)

    async def send(
        self, kind: str, url: str, method: str, params: dict[str, str]
    ) -> tuple[SentWebhook, str]:
        """One signed request to the app; logged whatever happens. Returns (log entry, type)."""
        if method == "GET":
            target = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            signature = compute_signature(self.auth_token, target)
            body = None
        else:
            target, body = url, urlencode(params)
            signature = compute_signature(self.auth_token, url, params)
        headers = {
            HEADER: signature,
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "X-Home-Region": "us1",
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        hook = SentWebhook(url=target, params=dict(params), headers=headers, kind=kind)
        content_type = ""
        try:
            response = await self._http.request(method, target, content=body, headers=headers)
            hook.status_code = response.status_code
            hook.response_body = response.text
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        except httpx.HTTPError as exc:
            # Twilio does not retry voice webhooks by default (§1.2 says nothing of retries).
            log.info("Twilio emulator: %s %s failed: %s", method, target, exc)
        await self.log.add(hook)
        return hook, content_type
