"""DNS-rebinding guard: routes that are not the carrier's answer only to names of this server.

A web page on `evil.example` whose name is re-pointed at 127.0.0.1 can make the browser send
requests to our port with `Host: evil.example` and read the answers (`/healthz` names the
provider and version; `/rpc`, `/events` and `/metrics` need the token, but need not be probed).
So every HTTP request except the carrier webhook (whose Host rules are the signature's,
`security/public_url.py`) must name a host we know: a loopback name, any IP literal (a
rebinding page always uses a name, and a literal is its own origin), the bind address, the
host of the URL carriers are told to call (publicUrl or the tunnel's), or
`webhookSecurity.allowedHosts`. Anything else is 421, as the MCP server answers. The media
WebSocket is not HTTP here: its single-use stream token is its guard.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from voice_call.runtime import Runtime
from voice_call.security.exposure import is_loopback_host, url_host
from voice_call.security.public_url import normalise_ip, split_host
from voice_call.server.responses import json_error

MISDIRECTED = 421
REFUSAL = "unknown Host header: this server answers only to its own names"


def _name(host: str) -> str:
    """A Host value's name: no port, no brackets, lower case, no trailing dot."""
    return split_host(host.strip())[0].strip("[]").lower().rstrip(".")


def known_names(runtime: Runtime) -> set[str]:
    """The names (besides loopback and IP literals) this server answers to right now."""
    config = runtime.config
    names = {_name(config.serve.bind)}
    names.update(_name(host) for host in config.webhook_security.allowed_hosts)
    public = url_host(runtime.webhook_url())  # publicUrl, else the open tunnel's URL
    if public:
        names.add(public.lower().rstrip("."))
    return names


def host_allowed(host: str | None, names: Callable[[], Collection[str]]) -> bool:
    """True for a Host we answer: none at all (HTTP/1.0; browsers always send one), loopback,
    an IP literal, or one of `names()`."""
    if host is None:
        return True
    name = _name(host)
    if not name or is_loopback_host(name) or normalise_ip(name) is not None:
        return bool(name)
    return name in names()


class HostGuard:
    """ASGI middleware: 421 for an HTTP request outside `exempt` paths naming a foreign Host."""

    def __init__(self, app: ASGIApp, runtime: Runtime, exempt: Collection[str]) -> None:
        self.app = app
        self.runtime = runtime
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.exempt:
            host = _host_header(scope)
            if not host_allowed(host, lambda: known_names(self.runtime)):
                await json_error(MISDIRECTED, REFUSAL)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_header(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return bytes(value).decode("latin-1")
    return None
