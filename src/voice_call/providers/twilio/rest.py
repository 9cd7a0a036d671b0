"""Twilio's Calls REST API (docs/carriers.md §1.1): create, update (TwiML / hang up), fetch.

One httpx client per provider with explicit timeouts. Every failure becomes a `TwilioApiError`
(a ProviderError) that names the operation, the HTTP status and Twilio's error code and
message — never the Auth Token, which travels only in the Basic auth header.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from voice_call.providers.base import ProviderError

API_VERSION = "2010-04-01"
REGION_HOSTS = {
    "us1": "https://api.twilio.com",
    "ie1": "https://api.dublin.ie1.twilio.com",
    "au1": "https://api.sydney.au1.twilio.com",
}
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
NOT_IN_PROGRESS = 21220  # "Call is not in-progress": an update racing the answer (or the end)
RETRY_DELAYS_S = (0.25, 0.75)
_SID = re.compile(r"[A-Za-z0-9]{2,64}")

Form = Mapping[str, str | Sequence[str]]
Sleep = Callable[[float], Awaitable[None]]


class TwilioApiError(ProviderError):
    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def api_base(region: str, api_base_url: str | None) -> str:
    """The REST root up to and including the API version."""
    base = (api_base_url or REGION_HOSTS.get(region, REGION_HOSTS["us1"])).rstrip("/")
    return base if base.endswith(f"/{API_VERSION}") else f"{base}/{API_VERSION}"


def _describe(what: str, response: httpx.Response) -> TwilioApiError:
    status = response.status_code
    code: int | None = None
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code")
        code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
        message = str(body.get("message") or "")[:300]
    if not message:
        message = response.reason_phrase or "no message"
    hint = {
        401: " — check twilio.accountSid and twilio.authToken",
        404: " — no such call (or account) at Twilio",
        429: " — Twilio is rate limiting us; retry later",
    }.get(status, " — Twilio is having trouble; retry later" if status >= 500 else "")
    detail = f"HTTP {status}" + (f", error {code}" if code is not None else "")
    return TwilioApiError(f"Twilio {what} failed ({detail}): {message}{hint}", status, code)


class TwilioRest:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str,
        *,
        sleep: Sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.calls_url = f"{base_url}/Accounts/{account_sid}/Calls"
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            auth=(account_sid, auth_token),
            timeout=TIMEOUT,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(
        self, what: str, method: str, url: str, form: Form | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, data=form)
        except httpx.TimeoutException:
            raise TwilioApiError(f"Twilio {what} failed: no answer in time") from None
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise TwilioApiError(
                f"Twilio {what} failed: could not reach Twilio ({reason})"
            ) from None
        if response.status_code >= 400:
            raise _describe(what, response)
        try:
            body = response.json()
        except ValueError:
            raise TwilioApiError(f"Twilio {what} failed: the answer was not JSON") from None
        if not isinstance(body, dict):
            raise TwilioApiError(f"Twilio {what} failed: unexpected answer {type(body).__name__}")
        return body

    async def create_call(self, form: Form) -> dict[str, Any]:
        body = await self._send("create call", "POST", f"{self.calls_url}.json", form)
        if not isinstance(body.get("sid"), str) or not body["sid"]:
            raise TwilioApiError("Twilio create call failed: the answer has no call sid")
        return body

    async def update_call(self, sid: str, form: Form, what: str = "update call") -> dict[str, Any]:
        """A live update. Right after the answer Twilio may not see the call in progress yet
        (error 21220): try again after 250 ms, then 750 ms, before giving up."""
        url = self._call_url(sid)
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return await self._send(what, "POST", url, form)
            except TwilioApiError as exc:
                if exc.code != NOT_IN_PROGRESS or delay is None:
                    raise
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def hangup(self, sid: str) -> None:
        """End the call; one Twilio no longer knows (404) or that is over (21220) is done."""
        form = {"Status": "completed"}
        try:
            await self._send("hang up", "POST", self._call_url(sid), form)
        except TwilioApiError as exc:
            if exc.status != 404 and exc.code != NOT_IN_PROGRESS:
                raise

    async def fetch_call(self, sid: str) -> dict[str, Any]:
        return await self._send("fetch call", "GET", self._call_url(sid))

    async def start_recording(self, sid: str, form: Form) -> dict[str, Any]:
        """Record a live call (the Recordings resource under the call)."""
        url = self._call_url(sid).removesuffix(".json") + "/Recordings.json"
        return await self._send("start recording", "POST", url, form)

    async def fetch_recording(self, url: str) -> bytes:
        """A recording's file (`RecordingUrl` plus ".wav"), with our credentials, which go to
        Twilio's own API host only: a callback cannot make us send them elsewhere."""
        if urlsplit(url).netloc != urlsplit(self.calls_url).netloc:
            raise TwilioApiError(f"not a Twilio recording URL: {url[:80]!r}")
        try:
            response = await self._http.get(url if url.endswith(".wav") else f"{url}.wav")
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise TwilioApiError(f"Twilio recording download failed ({reason})") from None
        if response.status_code >= 400:
            raise _describe("recording download", response)
        return response.content

    def _call_url(self, sid: str) -> str:
        # The sid came from a webhook: never let it reshape the path.
        if not _SID.fullmatch(sid):
            raise TwilioApiError(f"not a Twilio call sid: {sid[:40]!r}")
        return f"{self.calls_url}/{sid}.json"
