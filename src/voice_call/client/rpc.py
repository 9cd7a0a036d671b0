"""The client side of the RPC API: what the CLI (and any other process) uses to reach a server.

`server_url` finds the running server (its `server.json`, which `server/serve.py` writes, else
the configured address); `RpcClient.call` sends one JSON-RPC request (answered by
`server/rpc.py`) and turns an error back into the same VoiceCallError subclass the server
raised; `RpcClient.events` follows the SSE event stream (`server/events.py`), reconnecting from
the last seen id when the server ends a stream. The public face over it is `api.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from voice_call.config import Config
from voice_call.errors import (
    BY_CODE,
    Conflict,
    InvalidInput,
    NotFound,
    TimedOut,
    Unavailable,
    VoiceCallError,
)
from voice_call.security.rpc_token import read_rpc_token

SERVER_FILE = "server.json"
DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# Methods that wait on the person on the line (transcriptTimeoutMs may be up to 180 s;
# continue.result waits at most its timeoutMs, up to 60 s).
UNBOUNDED_METHODS = frozenset({"voicecall.continue", "voicecall.continue.result"})
SSE_READ_TIMEOUT_S = 60.0  # the server sends a keepalive every 15 s
_RPC_CODES: dict[int, type[VoiceCallError]] = {
    -32700: InvalidInput,
    -32600: InvalidInput,
    -32601: NotFound,
    -32602: InvalidInput,
    -32001: NotFound,
    -32002: Conflict,
    -32003: Unavailable,
    -32004: TimedOut,
}


class ServerUnavailable(Unavailable):
    """Nothing answers at the server's URL (or there is no RPC token yet): no server runs."""

    def __init__(self, url: str, detail: str = "") -> None:
        message = f"no voice-call server is answering at {url} — start one with `voicecall serve`"
        if url.endswith(":0"):  # serve.port 0 and no server.json: there is no port to name
            message = (
                "no voice-call server is running (with serve.port 0 a running server names its "
                "port in server.json in the state folder, and there is none) — start one with "
                "`voicecall serve`"
            )
            detail = ""
        super().__init__(f"{message} ({detail})" if detail else message)
        self.url = url


def local_url(bind: str, port: int) -> str:
    """The URL a local client should use for a server bound to `bind`."""
    host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    except (OverflowError, ValueError):
        return False
    return True


def read_server_file(home: Path) -> dict[str, Any] | None:
    """`home/server.json` when it names a live process, else None (stale or absent)."""
    try:
        data = json.loads((home / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not _pid_alive(pid):
        return None
    return data


def server_url(config: Config, home: Path) -> str:
    running = read_server_file(home)
    if running is not None:
        return str(running["url"])
    return local_url(config.serve.bind, config.serve.port)


def error_from_reply(error: Any) -> VoiceCallError:
    """Rebuild the server's VoiceCallError from a JSON-RPC error object."""
    if not isinstance(error, dict):
        return Unavailable(f"the server sent a malformed error: {error!r}")
    message = str(error.get("message") or "unknown error")
    data = error.get("data")
    code = data.get("code") if isinstance(data, dict) else None
    cls = BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        rpc_code = error.get("code")
        cls = _RPC_CODES.get(rpc_code, Unavailable) if isinstance(rpc_code, int) else Unavailable
    return cls(message)


class RpcClient:
    def __init__(self, url: str, token: str, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ids = itertools.count(1)

    @classmethod
    def from_home(
        cls, config: Config, home: Path, timeout: float | None = DEFAULT_TIMEOUT_S
    ) -> RpcClient:
        url = server_url(config, home)
        token = read_rpc_token(home)
        if token is None:
            raise ServerUnavailable(url, f"no RPC token in {home}; the server creates it")
        return cls(url, token, timeout)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _timeout(self, method: str) -> httpx.Timeout:
        read = None if method in UNBOUNDED_METHODS else self.timeout
        return httpx.Timeout(read, connect=CONNECT_TIMEOUT_S)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one method; raises the VoiceCallError subclass the server reported."""
        request = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": params or {},
        }
        try:
            async with httpx.AsyncClient(timeout=self._timeout(method)) as http:
                response = await http.post(f"{self.url}/rpc", json=request, headers=self._headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerUnavailable(self.url, type(exc).__name__) from None
        except httpx.TimeoutException as exc:
            raise TimedOut(f"no answer from the server to {method}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise ServerUnavailable(self.url, f"the connection failed: {exc}") from None
        return self._result(response)

    def _result(self, response: httpx.Response) -> dict[str, Any]:
        reply = _json(response)
        if response.status_code != 200 or not isinstance(reply, dict):
            raise self._http_failure(response, reply)
        if "error" in reply:
            raise error_from_reply(reply["error"])
        result = reply.get("result")
        if not isinstance(result, dict):
            raise Unavailable(f"the server sent a malformed result: {result!r}")
        return result

    def _http_failure(self, response: httpx.Response, reply: Any) -> VoiceCallError:
        status = response.status_code
        if status == 401:
            return Unavailable(
                f"the server at {self.url} refused the RPC token; is it serving another "
                "state folder (VOICECALL_HOME)?"
            )
        detail = reply.get("error") if isinstance(reply, dict) else response.text[:200]
        if status in (400, 413):
            return InvalidInput(f"the server refused the request: {detail}")
        return Unavailable(f"the server answered HTTP {status}: {detail}")

    def call_sync(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """`call` for synchronous code (the CLI); not for use inside a running event loop."""
        return asyncio.run(self.call(method, params))

    async def events(
        self, since: int | None = None, last: int | None = None, call_id: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Logged events (LoggedEvent wire dicts): the backlog asked for, then live ones.

        When the server ends a stream (this watcher fell behind) it reconnects from the last
        id seen; when the server goes away after a stream it simply stops.
        """
        resume: int | None = since
        connected = False
        timeout = httpx.Timeout(SSE_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        async with httpx.AsyncClient(timeout=timeout) as http:
            while True:
                params: dict[str, str] = {}
                if resume is not None:
                    params["since"] = str(resume)
                elif last is not None:
                    params["last"] = str(last)
                if call_id is not None:
                    params["callId"] = call_id
                try:
                    async with http.stream(
                        "GET", f"{self.url}/events", params=params, headers=self._headers
                    ) as response:
                        if response.status_code != 200:
                            await response.aread()
                            if connected and response.status_code == 503:
                                return  # the server is shutting down
                            raise self._http_failure(response, _json(response))
                        connected = True
                        async for event_id, data in parse_sse(response.aiter_lines()):
                            if event_id is not None:
                                resume = event_id if resume is None else max(resume, event_id)
                            if data is not None:
                                yield data
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    if not connected:
                        raise ServerUnavailable(self.url, type(exc).__name__) from None
                    return
                except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError):
                    pass  # a dead or cut connection: resume from the last id
                await asyncio.sleep(0.1)


async def parse_sse(
    lines: AsyncIterator[str],
) -> AsyncIterator[tuple[int | None, dict[str, Any] | None]]:
    """(id, decoded data) per SSE message; comments skipped; data None for an id-only message."""
    event_id: int | None = None
    data: list[str] = []
    async for line in lines:
        if line == "":
            decoded = _decode(data)
            if event_id is not None or decoded is not None:
                yield event_id, decoded
            event_id, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id" and value.isascii() and value.isdigit():
            event_id = int(value)
        elif name == "data":
            data.append(value)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _decode(data: list[str]) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        decoded = json.loads("\n".join(data))
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
