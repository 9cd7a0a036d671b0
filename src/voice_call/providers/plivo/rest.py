"""The Plivo Voice API subset we use (docs/carriers.md §3.1): one httpx client per provider.

Basic auth, JSON bodies, every path ends in `/`. Every failure becomes a ProviderError that says
what was attempted, the HTTP status and Plivo's own error text — never the auth token, and
never the request URL (it names the account).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from voice_call.providers.base import ProviderError

log = logging.getLogger("voice_call.plivo")

DEFAULT_API_BASE = "https://api.plivo.com"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class PlivoCallGone(ProviderError):
    """Plivo answered 404: no such (live) call or request."""


class PlivoRest:
    def __init__(
        self,
        auth_id: str,
        auth_token: str,
        api_base_url: str | None = None,
        *,
        timeout: httpx.Timeout = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = (api_base_url or DEFAULT_API_BASE).rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.host = httpx.URL(base).host
        self._client = httpx.AsyncClient(
            base_url=f"{base}/Account/{auth_id}/",
            auth=httpx.BasicAuth(auth_id, auth_token),
            timeout=timeout,
            headers={"User-Agent": "voice-call", "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, json=body, params=params)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"Plivo {what}: no answer from {self.host} in time ({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"Plivo {what}: could not reach {self.host} ({type(exc).__name__})"
            ) from None
        if response.status_code >= 400:
            message = f"Plivo {what} failed: HTTP {response.status_code}: {_error_text(response)}"
            if response.status_code == 404:
                raise PlivoCallGone(message)
            raise ProviderError(message)
        if not response.content:
            return {}
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    async def create_call(self, body: dict[str, Any]) -> list[str]:
        """`POST Call/`; the request UUID(s) Plivo fired."""
        data = await self._request("create call", "POST", "Call/", body=body)
        ids = data.get("request_uuid")
        if isinstance(ids, str) and ids:
            return [ids]
        if isinstance(ids, list) and ids and all(isinstance(i, str) and i for i in ids):
            return list(ids)
        raise ProviderError(f"Plivo create call: no request_uuid in the answer ({_brief(data)})")

    async def hangup_call(self, call_uuid: str) -> None:
        await self._request("hang up", "DELETE", f"Call/{_segment(call_uuid)}/")

    async def cancel_request(self, request_uuid: str) -> None:
        await self._request("cancel request", "DELETE", f"Request/{_segment(request_uuid)}/")

    async def transfer(self, call_uuid: str, url: str) -> None:
        """Run the XML at `url` on the A leg, in place of whatever runs now."""
        body = {"legs": "aleg", "aleg_url": url, "aleg_method": "POST"}
        await self._request("transfer", "POST", f"Call/{_segment(call_uuid)}/", body=body)

    async def send_digits(self, call_uuid: str, digits: str) -> None:
        body = {"digits": digits, "leg": "aleg"}
        await self._request("send digits", "POST", f"Call/{_segment(call_uuid)}/DTMF/", body=body)

    async def record(self, call_uuid: str, callback_url: str) -> dict[str, Any]:
        """`POST Call/{uuid}/Record/`: record the live call; `callback_url` gets the file."""
        body = {"file_format": "wav", "callback_url": callback_url, "callback_method": "POST"}
        path = f"Call/{_segment(call_uuid)}/Record/"
        return await self._request("record", "POST", path, body=body)

    async def download(self, url: str) -> bytes:
        """A `record_url` file; our credentials go only to Plivo's own API host."""
        if httpx.URL(url).host != self.host:
            raise ProviderError(f"Plivo recording download: not a Plivo URL: {url[:80]!r}")
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise ProviderError(f"Plivo recording download failed ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise ProviderError(f"Plivo recording download failed: HTTP {response.status_code}")
        return response.content

    async def live_call(self, call_uuid: str) -> dict[str, Any]:
        path = f"Call/{_segment(call_uuid)}/"
        return await self._request("get live call", "GET", path, params={"status": "live"})

    async def call_detail(self, call_uuid: str) -> dict[str, Any]:
        return await self._request("get call", "GET", f"Call/{_segment(call_uuid)}/")


def _segment(value: str) -> str:
    """A path segment; ids are UUIDs, but nothing read from a record may add path parts."""
    if not value or any(ch in value for ch in "/?#%\\") or value in (".", ".."):
        raise ProviderError(f"Plivo: {value!r} is not a call or request id")
    return value


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error") or data.get("message")
        if isinstance(error, dict):
            return "; ".join(f"{k}: {v}" for k, v in error.items())[:300]
        if error:
            return str(error)[:300]
    return _brief(data)


def _brief(data: Any) -> str:
    return json.dumps(data)[:200]
