"""The URL a carrier used to reach us: what every webhook signature is computed over.

Behind a tunnel or proxy the request we receive names a local host; the carrier signed the
public one. With `publicUrl` configured, its scheme, host and path are pinned and only the
query comes from the request (a reverse proxy may map a different local path). Otherwise
forwarding headers are trusted only when `webhookSecurity` says so (an allow-list of hosts or an
explicit opt-in, and, when listed, only from trusted proxy IPs); untrusted, they are ignored and
the Host header is used (docs/security.md §1). With `allowedHosts` set, the host finally chosen
— forwarded or the Host header — must be one of them (`HostNotAllowed`). The scheme is the
request's own unless a trusted `X-Forwarded-Proto` names another: never an assumed https.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

FORWARDED_HOST_HEADERS = ("x-forwarded-host", "x-original-host", "ngrok-forwarded-host")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?(:[0-9]{1,5})?\Z"
)
_BRACKETED_V6 = re.compile(r"^\[([0-9A-Fa-f:.]+)\](:[0-9]{1,5})?\Z")


class HostNotAllowed(Exception):
    """The request reached us under a host outside `webhookSecurity.allowedHosts`.

    Not a ValueError on purpose: it must not pass for "the URL could not be parsed"."""


@dataclass(frozen=True)
class ForwardingTrust:
    """`webhookSecurity` in the shape this module needs."""

    allowed_hosts: Sequence[str] = ()
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: Sequence[str] = ()


@functools.lru_cache(maxsize=1024)
def normalise_ip(address: str | None) -> str | None:
    """`::ffff:a.b.c.d` → `a.b.c.d`; None for anything that is not an IP.

    Memoised (bounded): every webhook asks it of its peer's address, and a carrier calls from
    a few addresses; `ipaddress` parsing is ~7 µs a time on the per-webhook path."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def trusts_forwarding(trust: ForwardingTrust, remote: str | None) -> bool:
    opted_in = bool(trust.allowed_hosts) or trust.trust_forwarding_headers
    if not opted_in:
        return False
    if trust.trusted_proxy_ips:
        peer = normalise_ip(remote)
        return peer is not None and peer in {normalise_ip(p) for p in trust.trusted_proxy_ips}
    return True


def client_ip(trust: ForwardingTrust, remote: str | None, headers: Mapping[str, str]) -> str:
    """Who a request is from, for per-client limits: the peer, or — behind a proxy we trust
    (the same rule as for forwarded hosts) — the right-most `X-Forwarded-For` hop that is not
    one of our trusted proxies (the left part is the client's to write), else `X-Real-IP`.
    `headers` has lower-case names; "unknown" when there is no address at all."""
    peer = normalise_ip(remote) or remote or "unknown"
    if not trusts_forwarding(trust, remote):
        return peer
    proxies = {normalise_ip(p) for p in trust.trusted_proxy_ips}
    hops = [normalise_ip(h.strip()) for h in headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed(hops):
        if hop is None:
            break  # garbage in the chain: trust nothing left of it
        if hop not in proxies:
            return hop
    real = normalise_ip(headers.get("x-real-ip", "").strip())
    return real or peer


def valid_host(value: str) -> bool:
    """A hostname or bracketed IPv6 with an optional port (1-65535); never userinfo."""
    if "@" in value or not value:
        return False
    match = _BRACKETED_V6.match(value)
    if match:
        if normalise_ip(match.group(1)) is None:
            return False
    elif not _HOSTNAME.match(value):
        return False
    port = split_host(value)[1]
    return port is None or 1 <= port <= 65535


def split_host(value: str) -> tuple[str, int | None]:
    """`host[:port]` or `[v6][:port]` → (host, port); the brackets stay on an IPv6 host."""
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        return value[: end + 1], int(rest[1:]) if rest.startswith(":") and rest[1:] else None
    host, sep, port = value.rpartition(":")
    if sep and port.isascii() and port.isdigit():
        return host, int(port)
    return value, None


def host_listed(host: str, allowed: Sequence[str]) -> bool:
    """`host` (with or without its port) is one of `allowed`, case-insensitively."""
    wanted = {h.lower() for h in allowed}
    host = host.lower()
    return host in wanted or split_host(host)[0] in wanted


def _forwarded_host(headers: Mapping[str, str], allowed: Sequence[str]) -> str | None:
    for name in FORWARDED_HOST_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        host = raw.split(",")[0].strip()
        if not valid_host(host):
            continue
        if allowed and not host_listed(host, allowed):
            continue
        return host
    return None


def verification_url(
    request_url: str,
    headers: Mapping[str, str],
    remote: str | None,
    *,
    public_url: str | None = None,
    trust: ForwardingTrust | None = None,
) -> str:
    """The URL to verify a signature against. `headers` has lower-case names.

    Raises HostNotAllowed when `allowedHosts` is set and neither a trusted forwarded host nor
    the Host header is one of them."""
    request = urlsplit(request_url)
    if public_url:
        pinned = urlsplit(public_url)
        return urlunsplit((pinned.scheme, pinned.netloc, pinned.path, request.query, ""))
    scheme, host = request.scheme or "http", request.netloc
    header_host = headers.get("host")
    if header_host and valid_host(header_host):
        host = header_host
    if trust is not None and trusts_forwarding(trust, remote):
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        host = _forwarded_host(headers, trust.allowed_hosts) or host
    if trust is not None and trust.allowed_hosts and not host_listed(host, trust.allowed_hosts):
        raise HostNotAllowed("the request's host is not in webhookSecurity.allowedHosts")
    return urlunsplit((scheme, host, request.path, request.query, ""))


def redact_url(url: str) -> str:
    """For logs and 401 reasons: no userinfo, no fragment, every query value hidden."""
    parts = urlsplit(url)
    # The netloc less any userinfo, the port as written: `.port` would raise on a Host header
    # such as `example.com:99999`, and a log line must never fail on what a client sent.
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{pair.split('=', 1)[0]}=***" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, host, parts.path, query, ""))
