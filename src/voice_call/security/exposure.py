"""Can a carrier reach this webhook URL? Classify its host by literal IP or `localhost`.

Twilio, Telnyx and Plivo call webhooks from the internet, so a loopback, private, link-local,
CGNAT (100.64/10, where Tailscale addresses live), unique-local (fc00::/7) or unspecified
address can never work: a real carrier provider with such a webhook URL refuses to start,
before a call is paid for whose callbacks would never arrive.

Only literals are judged. Other hostnames are not resolved: what this machine's resolver says
is not what the carrier will see, and start-up should not depend on DNS. IPv4 is read the way
URL parsers (and so carriers' HTTP clients) read it, so `127.1`, `2130706433` and `0x7f.1` are
loopback too, and IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is judged by its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from voice_call.config import CARRIERS, Config
from voice_call.errors import Unavailable
from voice_call.security.public_url import ForwardingTrust, redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (network, kind) in the order they are tested; the first match names the address.
_LOCAL_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("127.0.0.0/8"), "loopback"),
    (ipaddress.ip_network("::1/128"), "loopback"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified"),
    (ipaddress.ip_network("::/128"), "unspecified"),
    (ipaddress.ip_network("10.0.0.0/8"), "private"),
    (ipaddress.ip_network("172.16.0.0/12"), "private"),
    (ipaddress.ip_network("192.168.0.0/16"), "private"),
    (ipaddress.ip_network("169.254.0.0/16"), "link-local"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    (ipaddress.ip_network("100.64.0.0/10"), "CGNAT"),
    (ipaddress.ip_network("fc00::/7"), "unique-local"),
)
KINDS = ("loopback", "unspecified", "private", "link-local", "CGNAT", "unique-local", "reserved")


class ExposureRefused(Unavailable):
    """A carrier provider would be told to call back a URL it cannot reach."""


# --- host classification -------------------------------------------------------------------


def _ipv4_number(part: str) -> int | None:
    """One dotted part as URL parsers read it: 0x… hex, 0… octal, else decimal."""
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
        if digits == "":
            return 0
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits.isascii() or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """`127.1`, `2130706433`, `0x7f.0.0.1` → 127.0.0.1, as the WHATWG URL parser reads them."""
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # one trailing dot is allowed
    if not 1 <= len(parts) <= 4 or any(part == "" for part in parts):
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    address = values[-1]
    for index, n in enumerate(values[:-1]):
        address += n << (8 * (3 - index))
    return ipaddress.IPv4Address(address)


def ip_literal(host: str) -> IPAddress | None:
    """The IP address `host` spells (bracketed IPv6, a zone id, IPv4 in any URL form), or None."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            return None
        # Judge an IPv4-mapped address by the IPv4 address it carries.
        return ip.ipv4_mapped or ip
    return _whatwg_ipv4(host)


def host_kind(host: str) -> str | None:
    """Why a carrier cannot reach `host` (one of KINDS), or None when it may be reachable."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return "loopback"
    ip = ip_literal(name)
    if ip is None:
        return None
    for network, kind in _LOCAL_NETWORKS:
        if ip.version == network.version and ip in network:
            return kind
    # Documentation, benchmarking, multicast, class E, old site-local …: not a webhook host.
    unroutable = ip.is_multicast or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    return None if ip.is_global and not unroutable else "reserved"


def url_host(url: str) -> str | None:
    """The host part of an http(s) URL, or None when it has none or cannot be parsed."""
    try:
        return urlsplit(url.strip()).hostname or None
    except ValueError:
        return None


def local_only_kind(url: str) -> str | None:
    """Why a carrier could not reach `url` ("loopback", "private", …), or None when it may.

    A URL that cannot be parsed is "invalid": never something a carrier could call.
    """
    host = url_host(url)
    if host is None:
        return "invalid"
    return host_kind(host)


def is_loopback_host(host: str) -> bool:
    return host_kind(host) == "loopback"


# --- who needs a public URL ------------------------------------------------------------------


def carrier_api_is_local(config: Config) -> bool:
    """The provider's apiBaseUrl points at this machine (`voicecall sim`, a test emulator).

    A local emulator calls back from this machine, so a local webhook URL is right for it.
    """
    block = getattr(config, config.provider, None)
    base = getattr(block, "api_base_url", None) if block is not None else None
    return isinstance(base, str) and local_only_kind(base) not in (None, "invalid")


def needs_public_webhook(config: Config) -> bool:
    """A real carrier (not mock, not a local emulator) must be able to reach our webhook."""
    return config.provider in CARRIERS and not carrier_api_is_local(config)


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def refuse_unreachable_webhook(config: Config, url: str, *, source: str) -> None:
    """Raise ExposureRefused when a real carrier would be given `url` it cannot call.

    `source` says where the URL came from ("publicUrl", "tunnel", "tailscale", "local"), so
    the message names the setting to change.
    """
    if not needs_public_webhook(config):
        return
    kind = local_only_kind(url)
    if kind is None:
        return
    shown = redact_url(url) if kind != "invalid" else repr(url)
    host = url_host(url) or "?"
    what = (
        "is not a valid URL"
        if kind == "invalid"
        else f"points at {_article(kind)} {kind} address ({host})"
    )
    problem = f"{config.provider} cannot reach the webhook URL {shown}: it {what}"
    raise ExposureRefused(f"{problem} — {exposure_fix(source)}")


def refuse_tailnet_only(config: Config, tunnel: str | None) -> None:
    """Tailscale serve publishes only inside the tailnet: no carrier can call it."""
    if tunnel == "tailscale-serve" and needs_public_webhook(config):
        raise ExposureRefused(
            f"Tailscale serve is reachable only inside your tailnet, and {config.provider} "
            'calls from the internet — use tunnel.provider "tailscale-funnel" (or '
            'tailscale.mode "funnel") instead'
        )


def exposure_fix(source: str) -> str:
    """How to give carriers a public webhook URL, phrased for where the bad URL came from."""
    tunnels = (
        'tunnel.provider "ngrok" (with tunnel.ngrokAuthToken or NGROK_AUTHTOKEN) or '
        '"tailscale-funnel", or run `voicecall expose --mode funnel` and put the URL it prints '
        "in publicUrl"
    )
    if source == "publicUrl":
        return (
            "set publicUrl to the public https URL that reaches this server, or remove it and "
            f"use {tunnels}"
        )
    if source == "local":
        return (
            "carriers call from the internet: set publicUrl to the public https URL that "
            f"reaches this server (e.g. through a reverse proxy), or use {tunnels}"
        )
    return "check the tunnel settings, or set publicUrl to the public https URL of this server"


# --- forwarded-header trust (docs/security.md) ------------------------------------------


def forwarding_trust(config: Config) -> ForwardingTrust:
    """`webhookSecurity`: what providers pass to verification_url. (The seed's
    tunnel.allowNgrokFreeTierLoopbackBypass is refused by the config: config/checks.py.)"""
    security = config.webhook_security
    return ForwardingTrust(
        allowed_hosts=tuple(security.allowed_hosts),
        trust_forwarding_headers=security.trust_forwarding_headers,
        trusted_proxy_ips=tuple(security.trusted_proxy_ips),
    )


def forwarding_from_anyone(config: Config) -> str | None:
    """A warning when `trustForwardingHeaders` trusts forwarding headers from any peer.

    Without `trustedProxyIPs`, whoever reaches the port picks the host and scheme signatures
    are checked against and the client address the per-client limits count."""
    security = config.webhook_security
    if not security.trust_forwarding_headers or security.trusted_proxy_ips:
        return None
    return (
        "webhookSecurity.trustForwardingHeaders is on without webhookSecurity.trustedProxyIPs: "
        "forwarding headers are trusted from any client — list your proxy's address in "
        "trustedProxyIPs, or set publicUrl"
    )
