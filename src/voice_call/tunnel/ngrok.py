"""The ngrok tunnel, in-process through the official `ngrok` SDK (no agent binary to install).

The authtoken comes from `tunnel.ngrokAuthToken` or `NGROK_AUTHTOKEN`; a paid reserved domain
from `tunnel.ngrokDomain` or `NGROK_DOMAIN`. When a domain is configured the tunnel must come
up on exactly that domain: the seed's issue #11555 was a token silently ignored, a random
free URL, and every webhook signature failing against the URL the carrier was given.

The SDK call is one injectable function (`ListenerFactory`), so tests exercise everything
here without the network.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from voice_call.config import Config
from voice_call.security.public_url import valid_host
from voice_call.tunnel import TunnelError

log = logging.getLogger("voice_call.tunnel.ngrok")
START_TIMEOUT_S = 30.0  # the seed's startup limit
STOP_TIMEOUT_S = 5.0
TOKEN_HELP = "https://dashboard.ngrok.com/get-started/your-authtoken"


@dataclass(frozen=True)
class NgrokOptions:
    forward_to: str  # http://127.0.0.1:3334
    authtoken: str
    domain: str | None = None


class NgrokListener(Protocol):
    def url(self) -> str: ...

    def close(self) -> Awaitable[None]: ...


ListenerFactory = Callable[[NgrokOptions], Awaitable[NgrokListener]]


class _SessionListener:
    """An SDK listener with the session it belongs to, closed together."""

    def __init__(self, session: Any, listener: Any) -> None:
        self._session = session
        self._listener = listener

    def url(self) -> str:
        return str(self._listener.url())

    async def close(self) -> None:
        try:
            await self._listener.close()
        finally:
            await self._session.close()


async def sdk_listener(options: NgrokOptions) -> NgrokListener:
    """Open an ngrok session and an HTTPS endpoint forwarding to `options.forward_to`."""
    import ngrok  # the SDK loads a native library: only when a tunnel is really opened

    session = await ngrok.SessionBuilder().authtoken(options.authtoken).connect()
    try:
        builder = session.http_endpoint()
        if options.domain:
            builder = builder.domain(options.domain)
        listener = await builder.listen_and_forward(options.forward_to)
    except BaseException:
        await session.close()
        raise
    return _SessionListener(session, listener)


class NgrokTunnel:
    name = "ngrok"

    def __init__(
        self,
        *,
        path: str,
        authtoken: str,
        domain: str | None = None,
        factory: ListenerFactory = sdk_listener,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.authtoken = authtoken
        self.domain = domain
        self._factory = factory
        self._start_timeout_s = start_timeout_s
        self._listener: NgrokListener | None = None

    async def start(self, local_origin: str) -> str:
        if self._listener is not None:
            raise TunnelError("the ngrok tunnel is already open")
        options = NgrokOptions(local_origin, self.authtoken, self.domain)
        try:
            async with asyncio.timeout(self._start_timeout_s):
                listener = await self._factory(options)
        except TimeoutError:
            raise TunnelError(
                f"ngrok did not open a tunnel within {self._start_timeout_s:g} s — check the "
                "network connection to ngrok.com"
            ) from None
        except Exception as exc:  # the SDK raises plain ValueError/RuntimeError/OSError
            detail = _detail(exc)
            message = f"ngrok could not open a tunnel: {detail} — {_hint(detail)}"
            raise TunnelError(message) from None
        self._listener = listener
        try:
            origin = self._checked_origin(listener.url())
        except TunnelError:
            await self.stop()
            raise
        url = origin + self.path
        log.info("ngrok tunnel open: %s → %s", url, local_origin)
        return url

    def _checked_origin(self, url: str) -> str:
        parts = urlsplit(url.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise TunnelError(f"ngrok returned an unexpected URL {url!r}")
        if self.domain and parts.hostname.lower() != self.domain.lower():
            raise TunnelError(
                f"ngrok opened {url}, not the reserved domain {self.domain} — reserve the domain "
                "for this authtoken's account at https://dashboard.ngrok.com/domains, or remove "
                "tunnel.ngrokDomain"
            )
        return f"https://{parts.netloc}"

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await listener.close()
        except Exception as exc:
            log.warning("ngrok tunnel did not close cleanly: %s", exc)


def _detail(exc: BaseException) -> str:
    """The SDK puts several strings in one error's args: ('failed to connect session', …)."""
    parts = [str(arg) for arg in exc.args if str(arg)]
    return ": ".join(parts) if parts else type(exc).__name__


def _hint(text: str) -> str:
    if "ERR_NGROK_105" in text or "ERR_NGROK_107" in text or "authtoken" in text.lower():
        return f"check tunnel.ngrokAuthToken / NGROK_AUTHTOKEN (get one at {TOKEN_HELP})"
    if "domain" in text.lower() or "ERR_NGROK_3" in text:
        return "check tunnel.ngrokDomain: it must be reserved for this authtoken's account"
    if "failed to establish" in text.lower():  # what the SDK says offline (or DNS failing)
        return "ngrok.com cannot be reached from here: check the network connection"
    return "check tunnel.ngrokAuthToken, tunnel.ngrokDomain and the network connection"


def normalise_domain(value: str) -> str:
    """`my.ngrok.app` (a pasted `https://my.ngrok.app/` is accepted); anything else is refused."""
    text = value.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "https" or parts.path not in ("", "/") or parts.query:
            raise TunnelError(
                f"tunnel.ngrokDomain {value!r} is not a domain — write just the host name, "
                'e.g. "calls.ngrok.app"'
            )
        text = parts.netloc
    if not text or ":" in text or not valid_host(text):
        raise TunnelError(
            f"tunnel.ngrokDomain {value!r} is not a domain — write just the host name, "
            'e.g. "calls.ngrok.app"'
        )
    return text.rstrip(".").lower()


def build(
    config: Config,
    env: Mapping[str, str] | None = None,
    factory: ListenerFactory = sdk_listener,
) -> NgrokTunnel:
    """The tunnel the config asks for. Raises TunnelError when no authtoken is available."""
    env = os.environ if env is None else env
    tunnel = config.tunnel
    token = tunnel.ngrok_auth_token or (env.get("NGROK_AUTHTOKEN") or "").strip()
    if not token:
        raise TunnelError(
            "the ngrok tunnel needs an authtoken — set tunnel.ngrokAuthToken in the config or "
            f"NGROK_AUTHTOKEN in the environment (get one at {TOKEN_HELP})"
        )
    domain = tunnel.ngrok_domain or (env.get("NGROK_DOMAIN") or "").strip() or None
    return NgrokTunnel(
        path=config.serve.path,
        authtoken=token,
        domain=normalise_domain(domain) if domain else None,
        factory=factory,
    )
