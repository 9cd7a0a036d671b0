"""Requests from the Plivo emulator to the application: signed, logged, retried like Plivo.

Each request is form-encoded (POST) or carries its params in the query (GET) and is signed with
V3 (default) or V2 and a fresh 20-digit nonce, as Plivo does. XML fetches (answer, action,
redirect, transfer) are retried: [S] Plivo gives up on `answer_url` "after 3 retries or a 60 s
timeout" and then tries `fallback_url`; [M] we read that as three attempts in all, retry on a
connection failure or a 5xx only, and apply the same rule to every XML fetch. Notifications
(ring, hangup, machine detection, stream status) are sent once: a failure is only logged.
"""

from __future__ import annotations

import secrets
import time
from typing import Literal

import httpx

from voice_call.security.signatures import plivo as signatures
from voice_call.sim.common import SentWebhook, WebhookLog
from voice_call.sim.plivo.call import (
    XML_UNREACHABLE,
    CallOver,
    PlivoLeg,
    Target,
)

XML_ATTEMPTS = 3
RETRY_PAUSE_S = 1.0  # carrier seconds between attempts [M]
SignatureVersion = Literal["v3", "v2"]


def new_nonce() -> str:
    return f"{secrets.randbelow(10**20):020d}"


class PlivoHooks:
    def __init__(
        self,
        client: httpx.AsyncClient,
        log: WebhookLog,
        auth_token: str,
        version: SignatureVersion = "v3",
    ) -> None:
        self.client = client
        self.log = log
        self.auth_token = auth_token
        self.version = version

    def sign(self, url: str, params: dict[str, str], method: str) -> dict[str, str]:
        nonce = new_nonce()
        if self.version == "v2":
            signature = signatures.sign_v2(self.auth_token, url, nonce)
            return {
                signatures.V2_HEADER: signature,
                signatures.V2_MA_HEADER: signature,  # this emulator is a main account
                signatures.V2_NONCE_HEADER: nonce,
            }
        signature = signatures.sign_v3(self.auth_token, url, params, nonce, method)
        return {
            signatures.V3_HEADER: signature,
            signatures.V3_MA_HEADER: signature,
            signatures.V3_NONCE_HEADER: nonce,
        }

    async def send(self, kind: str, target: Target, params: dict[str, str]) -> SentWebhook:
        """One signed request; never raises for a failed one (status_code None or the error)."""
        method = target.method.upper()
        headers = self.sign(target.url, params, method)
        started = time.time()
        status: int | None = None
        body = ""
        try:
            if method == "GET":
                # merge, not replace: the app's own query stays and is signed with the params
                url = httpx.URL(target.url).copy_merge_params(params)
                response = await self.client.get(url, headers=headers)
            else:
                response = await self.client.post(target.url, data=params, headers=headers)
            status, body = response.status_code, response.text
        except httpx.HTTPError as exc:
            body = f"{type(exc).__name__}: {exc}"
        hook = SentWebhook(target.url, dict(params), headers, status, body, started, kind)
        await self.log.add(hook)
        return hook

    async def fetch_xml(
        self,
        leg: PlivoLeg,
        kind: str,
        target: Target,
        params: dict[str, str],
        fallback: Target | None = None,
    ) -> str:
        """The XML the application answers with; ends the call when it cannot be had."""
        for candidate, candidate_kind in ((target, kind), (fallback, "fallback")):
            if candidate is None:
                continue
            for attempt in range(XML_ATTEMPTS):
                if attempt:
                    await leg.pause(RETRY_PAUSE_S)
                hook = await self.send(candidate_kind, candidate, params)
                if hook.status_code is not None and hook.status_code < 300:
                    return hook.response_body
                if hook.status_code is not None and hook.status_code < 500:
                    break  # a 4xx will not change on retry
        leg.end(XML_UNREACHABLE)
        raise CallOver
