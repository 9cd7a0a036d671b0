"""Telnyx Call Control v2 REST out: one httpx client, Bearer key, JSON, clear failures.

Every command carries a `command_id`; a request that fails in transit or with a 5xx/429 is
sent once more with the same body, so Telnyx runs it at most once. Failures become
`TelnyxApiError` (a ProviderError) naming the action, HTTP status and Telnyx's error code,
title and detail; never the key.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from voice_call.providers.base import ProviderError

DEFAULT_API_BASE = "https://api.telnyx.com/v2"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RETRY_PAUSE_S = 0.25
CALL_ENDED_CODE = "90018"  # "Call has already ended" (docs/carriers.md §2.1)

Body = dict[str, Any]


class TelnyxApiError(ProviderError):
    def __init__(
        self,
        action: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(f"Telnyx {action} failed: {message}")
        self.status = status
        self.code = code

    @property
    def call_gone(self) -> bool:
        """The call no longer exists or has ended: nothing left to hang up."""
        return self.status == 404 or self.code == CALL_ENDED_CODE


def new_command_id() -> str:
    return str(uuid.uuid4())


class TelnyxRest:
    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_pause_s: float = RETRY_PAUSE_S,
    ) -> None:
        base = (base_url or DEFAULT_API_BASE).rstrip("/") + "/"
        self.host = urlsplit(base).netloc
        self.retry_pause_s = retry_pause_s
        self._transport = transport
        self._client = httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=TIMEOUT,
            transport=transport,
            follow_redirects=False,  # the key must not follow a redirect to another host
        )

    async def dial(self, body: Body) -> Body:
        """`POST /calls`: the `data` of the new call (call_control_id, …)."""
        return await self._request("dial", "POST", "calls", body)

    async def command(self, call_control_id: str, action: str, body: Body) -> None:
        """`POST /calls/{id}/actions/{action}`; a `command_id` is added when absent."""
        payload = {"command_id": new_command_id(), **body}
        await self._request(
            action, "POST", f"{_call_path(call_control_id)}/actions/{action}", payload
        )

    async def retrieve(self, call_control_id: str) -> Body:
        return await self._request("status", "GET", _call_path(call_control_id), None)

    async def download(self, url: str) -> tuple[bytes, str]:
        """A recording file at its pre-signed URL, with no credentials at all: (audio, ext)."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise TelnyxApiError("recording download", f"not a recording URL: {url[:80]!r}")
        try:
            async with httpx.AsyncClient(
                timeout=TIMEOUT, transport=self._transport, follow_redirects=True
            ) as plain:
                response = await plain.get(url)
        except httpx.HTTPError as exc:
            raise TelnyxApiError("recording download", type(exc).__name__) from None
        if response.status_code >= 400:
            raise TelnyxApiError("recording download", f"HTTP {response.status_code}")
        extension = "mp3" if urlsplit(url).path.endswith(".mp3") else "wav"
        return response.content, extension

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(self, action: str, method: str, path: str, body: Body | None) -> Body:
        for attempt in (1, 2):
            try:
                response = await self._client.request(method, path, json=body)
            except httpx.TransportError as exc:
                if attempt == 1:
                    await asyncio.sleep(self.retry_pause_s)
                    continue
                raise TelnyxApiError(
                    action, f"cannot reach {self.host}: {type(exc).__name__}"
                ) from None
            if (response.status_code >= 500 or response.status_code == 429) and attempt == 1:
                await asyncio.sleep(self.retry_pause_s)
                continue
            return _data(action, response)
        raise AssertionError("unreachable")  # pragma: no cover


def _call_path(call_control_id: str) -> str:
    # call_control_id looks like "v3:…": quote it whole so it stays one path segment.
    return f"calls/{quote(call_control_id, safe='')}"


def _data(action: str, response: httpx.Response) -> Body:
    try:
        reply = response.json()
    except ValueError:
        reply = None
    if response.is_success:
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, dict):
            raise TelnyxApiError(
                action,
                f"HTTP {response.status_code} without a data object",
                status=response.status_code,
            )
        return data
    code, detail = _first_error(reply)
    text = f"HTTP {response.status_code}"
    if code:
        text += f" {code}"
    text += f": {detail or response.reason_phrase or 'no detail'}"
    raise TelnyxApiError(action, text, status=response.status_code, code=code)


def _first_error(reply: object) -> tuple[str | None, str]:
    """Telnyx errors: `{"errors": [{"code", "title", "detail"}]}`; code and a short text."""
    errors = reply.get("errors") if isinstance(reply, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None, ""
    code = first.get("code")
    parts = [str(first[k]) for k in ("title", "detail") if isinstance(first.get(k), str)]
    return (str(code) if code is not None else None), " — ".join(parts)[:300]
