"""Public-URL reconstruction and the ngrok loopback rule (docs/security.md §1), row by row.

Each table below is one sentence of the reconstruction rule: who is trusted, where the scheme
comes from, which forwarded host wins, the fallbacks, and what never changes (path and query).
The rows go through `verification_url` — what every webhook signature is checked against.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_call.security.public_url import (
    ForwardingTrust,
    HostNotAllowed,
    trusts_forwarding,
    verification_url,
)

LOCAL = "http://127.0.0.1:3334/voice/webhook?callId=c1&type=status"
TAIL = "/voice/webhook?callId=c1&type=status"
OPT_IN = ForwardingTrust(trust_forwarding_headers=True)

# --- "trusted only if (allowedHosts non-empty OR trustForwardingHeaders) AND
#      (trustedProxyIPs empty OR remote IP ∈ trustedProxyIPs), IPv4-mapped normalised" ----------

TRUST = [
    # (trust, remote, trusted)
    (ForwardingTrust(), "203.0.113.7", False),
    (ForwardingTrust(), "127.0.0.1", False),
    (ForwardingTrust(trust_forwarding_headers=True), "203.0.113.7", True),
    (ForwardingTrust(trust_forwarding_headers=True), None, True),
    (ForwardingTrust(allowed_hosts=["calls.example.com"]), "203.0.113.7", True),
    (ForwardingTrust(trusted_proxy_ips=["10.0.0.1"]), "10.0.0.1", False),  # no opt-in: AND
    (
        ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"]),
        "10.0.0.1",
        True,
    ),
    (
        ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"]),
        "10.0.0.2",
        False,
    ),
    (ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"]), None, False),
    (
        ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"]),
        "::ffff:10.0.0.1",
        True,
    ),
    (
        ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["::ffff:10.0.0.1"]),
        "10.0.0.1",
        True,
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"], trusted_proxy_ips=["2001:db8::5"]),
        "2001:db8::5",
        True,
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"], trusted_proxy_ips=["2001:db8::5"]),
        "2001:db8::6",
        False,
    ),
    (
        ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"]),
        "not-an-ip",
        False,
    ),
    # nothing opted in: not even a loopback peer (the seed's ngrok bypass is refused)
    (ForwardingTrust(), "127.0.0.1", False),
]


@pytest.mark.parametrize(("trust", "remote", "trusted"), TRUST)
def test_who_may_forward(trust: ForwardingTrust, remote: str | None, trusted: bool) -> None:
    assert trusts_forwarding(trust, remote) is trusted
    headers = {
        "host": "127.0.0.1:3334",
        "x-forwarded-host": "calls.example.com",
        "x-forwarded-proto": "https",
    }
    if not trusted and trust.allowed_hosts:  # the Host header left is not an allowed host
        with pytest.raises(HostNotAllowed):
            verification_url(LOCAL, headers, remote, trust=trust)
        return
    expected = "https://calls.example.com" + TAIL if trusted else LOCAL
    assert verification_url(LOCAL, headers, remote, trust=trust) == expected


# --- "proto from X-Forwarded-Proto (only http/https), else the request's own: never an
#      assumed https" (issue 15: a missing or odd proto used to become https) ------------------

PROTO = [
    ({"x-forwarded-proto": "https"}, "https"),
    ({"x-forwarded-proto": "http"}, "http"),
    ({}, "http"),
    ({"x-forwarded-proto": ""}, "http"),
    ({"x-forwarded-proto": "HTTPS"}, "https"),
    ({"x-forwarded-proto": " http "}, "http"),
    ({"x-forwarded-proto": "http, https"}, "http"),  # the first hop's, as for hosts
    ({"x-forwarded-proto": "ftp"}, "http"),
    ({"x-forwarded-proto": "javascript"}, "http"),
    ({"x-forwarded-proto": "wss"}, "http"),
]


@pytest.mark.parametrize(("headers", "scheme"), PROTO)
def test_scheme_from_x_forwarded_proto(headers: dict[str, str], scheme: str) -> None:
    all_headers = {"host": "calls.example.com", **headers}
    url = verification_url(LOCAL, all_headers, "203.0.113.7", trust=OPT_IN)
    assert url == f"{scheme}://calls.example.com{TAIL}"


def test_untrusted_proto_is_ignored() -> None:
    headers = {"host": "calls.example.com", "x-forwarded-proto": "https"}
    assert verification_url(LOCAL, headers, "203.0.113.7") == "http://calls.example.com" + TAIL


# --- "host from the first valid of X-Forwarded-Host, X-Original-Host, Ngrok-Forwarded-Host
#      (first comma element; RFC-1123 or bracketed IPv6 with numeric port; no '@'; in
#      allowedHosts when set). Fallback: Host, then the request URL host." ------------------

HOSTS: list[tuple[ForwardingTrust, dict[str, str], str | None]] = [
    (OPT_IN, {"x-forwarded-host": "a.example.com"}, "a.example.com"),
    (OPT_IN, {"x-forwarded-host": "a.example.com:8443"}, "a.example.com:8443"),
    (OPT_IN, {"x-forwarded-host": "a.example.com, b.example.com"}, "a.example.com"),
    (OPT_IN, {"x-original-host": "o.example.com"}, "o.example.com"),
    (OPT_IN, {"ngrok-forwarded-host": "x.ngrok-free.app"}, "x.ngrok-free.app"),
    (
        OPT_IN,
        {
            "x-forwarded-host": "a.example.com",
            "x-original-host": "o.example.com",
            "ngrok-forwarded-host": "x.ngrok-free.app",
        },
        "a.example.com",
    ),
    (
        OPT_IN,
        {"x-original-host": "o.example.com", "ngrok-forwarded-host": "x.ngrok-free.app"},
        "o.example.com",
    ),
    # invalid values are skipped, not trusted
    (
        OPT_IN,
        {"x-forwarded-host": "user@evil.com", "x-original-host": "o.example.com"},
        "o.example.com",
    ),
    (
        OPT_IN,
        {"x-forwarded-host": "evil.com@", "ngrok-forwarded-host": "x.ngrok.app"},
        "x.ngrok.app",
    ),
    (OPT_IN, {"x-forwarded-host": "a b.example.com"}, "h.example.com"),
    (OPT_IN, {"x-forwarded-host": "-bad.example.com"}, "h.example.com"),
    (OPT_IN, {"x-forwarded-host": "a.example.com:port"}, "h.example.com"),
    (OPT_IN, {"x-forwarded-host": "a.example.com/path"}, "h.example.com"),
    (OPT_IN, {"x-forwarded-host": "2001:db8::1"}, "h.example.com"),  # IPv6 must be bracketed
    (OPT_IN, {"x-forwarded-host": "[2001:db8::1]"}, "[2001:db8::1]"),
    (OPT_IN, {"x-forwarded-host": "[2001:db8::1]:8443"}, "[2001:db8::1]:8443"),
    (OPT_IN, {"x-forwarded-host": "[zz::1]:8443"}, "h.example.com"),
    (OPT_IN, {"x-forwarded-host": ""}, "h.example.com"),
    (OPT_IN, {"x-forwarded-host": ", a.example.com"}, "h.example.com"),  # first element is empty
    # an allow-list filters every header
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"]),
        {"x-forwarded-host": "calls.example.com"},
        "calls.example.com",
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"]),
        {"x-forwarded-host": "CALLS.Example.com"},
        "CALLS.Example.com",
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"]),
        {"x-forwarded-host": "calls.example.com:443"},
        "calls.example.com:443",
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"]),
        {"x-forwarded-host": "evil.example.net"},
        None,  # the Host header left (h.example.com) is not allowed either: refused
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"]),
        {"x-forwarded-host": "evil.example.net", "x-original-host": "calls.example.com"},
        "calls.example.com",
    ),
    (
        ForwardingTrust(allowed_hosts=["calls.example.com"]),
        {"x-forwarded-host": "calls.example.com.evil.net"},
        None,
    ),
    # the Host header is held to the allow-list too
    (
        ForwardingTrust(allowed_hosts=["h.example.com"]),
        {"x-forwarded-host": "evil.net"},
        "h.example.com",
    ),
]


@pytest.mark.parametrize(("trust", "forwarded", "host"), HOSTS)
def test_forwarded_host_choice(
    trust: ForwardingTrust, forwarded: dict[str, str], host: str | None
) -> None:
    headers = {"host": "h.example.com", "x-forwarded-proto": "https", **forwarded}
    if host is None:
        with pytest.raises(HostNotAllowed):
            verification_url(LOCAL, headers, "203.0.113.7", trust=trust)
        return
    url = verification_url(LOCAL, headers, "203.0.113.7", trust=trust)
    assert url == f"https://{host}{TAIL}"


FALLBACK = [
    # (request URL, headers, expected) — untrusted, or trusted with no usable forwarded host
    (LOCAL, {"host": "calls.example.com"}, "http://calls.example.com" + TAIL),
    (LOCAL, {"host": "calls.example.com:8080"}, "http://calls.example.com:8080" + TAIL),
    (LOCAL, {"host": "user@evil.com"}, LOCAL),
    (LOCAL, {"host": "bad host"}, LOCAL),
    (LOCAL, {}, LOCAL),
    ("http://[::1]:3334/voice/webhook?x=1", {}, "http://[::1]:3334/voice/webhook?x=1"),
    ("http://[::1]:3334/voice/webhook", {"host": "[::1]:3334"}, "http://[::1]:3334/voice/webhook"),
]


@pytest.mark.parametrize(("request_url", "headers", "expected"), FALLBACK)
def test_host_header_then_request_host(
    request_url: str, headers: dict[str, str], expected: str
) -> None:
    assert verification_url(request_url, headers, "203.0.113.7") == expected


def test_trusted_without_a_forwarded_host_or_proto_keeps_the_host_header_and_scheme() -> None:
    url = verification_url(LOCAL, {"host": "calls.example.com"}, None, trust=OPT_IN)
    assert url == "http://calls.example.com" + TAIL  # issue 15: no longer an assumed https


# --- "path + query always from the request"; publicUrl pins the rest ---------------------------


def test_forwarded_headers_never_move_the_path_or_query() -> None:
    headers = {
        "x-forwarded-host": "a.example.com",
        "x-forwarded-prefix": "/other",
        "x-original-uri": "/elsewhere?token=x",
        "x-forwarded-path": "/p",
    }
    url = verification_url(LOCAL, headers, None, trust=OPT_IN)
    assert url == "http://a.example.com" + TAIL


PINNED = [
    # (publicUrl, request URL, expected): scheme/host/path pinned, query from the request
    (
        "https://p.example.com/voice/webhook",
        "http://127.0.0.1:3334/local/path?callId=c1",
        "https://p.example.com/voice/webhook?callId=c1",
    ),
    (
        "https://p.example.com:8443/hook?ignored=1#frag",
        "http://127.0.0.1:3334/voice/webhook?a=1&b=2",
        "https://p.example.com:8443/hook?a=1&b=2",
    ),
    (
        "https://p.example.com/voice/webhook",
        LOCAL.split("?")[0],
        "https://p.example.com/voice/webhook",
    ),
]


@pytest.mark.parametrize(("public", "request_url", "expected"), PINNED)
def test_public_url_pins_scheme_host_and_path(public: str, request_url: str, expected: str) -> None:
    forged = {"host": "evil.com", "x-forwarded-host": "evil.com", "x-forwarded-proto": "http"}
    assert (
        verification_url(request_url, forged, "127.0.0.1", public_url=public, trust=OPT_IN)
        == expected
    )


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "host",
                "x-forwarded-host",
                "x-original-host",
                "ngrok-forwarded-host",
                "x-forwarded-proto",
            ]
        ),
        st.text(max_size=60),
    ),
    st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=20)),
    st.booleans(),
)
def test_reconstruction_never_changes_path_or_query_or_adds_userinfo(
    headers: dict[str, str], remote: str | None, trusted: bool
) -> None:
    trust = OPT_IN if trusted else ForwardingTrust()
    url = verification_url(LOCAL, headers, remote, trust=trust)
    scheme, _, rest = url.partition("://")
    assert scheme in ("http", "https")
    host, _, _ = rest.partition("/")
    assert "@" not in host and " " not in host
    assert url.endswith(TAIL)
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if trusted:
        assert scheme == (proto if proto in ("http", "https") else "http")
    else:
        assert scheme == "http"
