"""Public-URL reconstruction: pinning, forwarding-header trust, host validation, redaction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_call.security.public_url import (
    ForwardingTrust,
    HostNotAllowed,
    redact_url,
    trusts_forwarding,
    valid_host,
    verification_url,
)

LOCAL = "http://127.0.0.1:3334/voice/webhook?callId=abc&type=status"
FORWARDED = {
    "host": "127.0.0.1:3334",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "calls.example.com",
}


def test_public_url_pins_scheme_host_and_path_and_keeps_the_query() -> None:
    url = verification_url(
        "http://127.0.0.1:3334/local/path?callId=abc",
        FORWARDED,
        "10.0.0.9",
        public_url="https://voice.example.com/voice/webhook",
    )
    assert url == "https://voice.example.com/voice/webhook?callId=abc"


def test_forwarding_headers_are_ignored_unless_trusted() -> None:
    assert verification_url(LOCAL, FORWARDED, "127.0.0.1") == LOCAL
    assert verification_url(LOCAL, FORWARDED, "127.0.0.1", trust=ForwardingTrust()) == LOCAL


def test_trusted_forwarding_uses_proto_and_host() -> None:
    trust = ForwardingTrust(trust_forwarding_headers=True)
    url = verification_url(LOCAL, FORWARDED, "127.0.0.1", trust=trust)
    assert url == "https://calls.example.com/voice/webhook?callId=abc&type=status"


def test_allowed_hosts_filter_forwarded_hosts() -> None:
    trust = ForwardingTrust(allowed_hosts=["calls.example.com"])
    evil = {**FORWARDED, "x-forwarded-host": "evil.example.net"}
    # the forwarded host is ignored, and the Host header (127.0.0.1) is not allowed either
    with pytest.raises(HostNotAllowed):
        verification_url(LOCAL, evil, "1.2.3.4", trust=trust)
    good = verification_url(LOCAL, FORWARDED, "1.2.3.4", trust=trust)
    assert good.startswith("https://calls.example.com/")


def test_trusted_proxy_ips_limit_who_may_forward() -> None:
    trust = ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"])
    assert trusts_forwarding(trust, "10.0.0.1")
    assert trusts_forwarding(trust, "::ffff:10.0.0.1")  # IPv4-mapped peers are normalised
    assert not trusts_forwarding(trust, "10.0.0.2")
    assert not trusts_forwarding(trust, None)


def test_host_validation() -> None:
    assert valid_host("calls.example.com") and valid_host("calls.example.com:8443")
    assert valid_host("[::1]:3334") and valid_host("localhost")
    for bad in ("user@evil.com", "", "a b", "[zz::1]", "host:port", "-bad.com"):
        assert not valid_host(bad)
    for bad_port in ("calls.example.com:0", "calls.example.com:65536", "[::1]:99999"):
        assert not valid_host(bad_port)
    assert valid_host("calls.example.com:65535") and valid_host("[2001:db8::5]:1")


def test_allowed_hosts_match_ipv6_and_ported_hosts_by_name() -> None:
    trust = ForwardingTrust(allowed_hosts=["[2001:db8::5]", "calls.example.com"])
    for forwarded, expected in (
        ("[2001:db8::5]:8443", "https://[2001:db8::5]:8443/"),
        ("[2001:db8::5]", "https://[2001:db8::5]/"),
        ("calls.example.com:8443", "https://calls.example.com:8443/"),
    ):
        headers = {**FORWARDED, "x-forwarded-host": forwarded}
        assert verification_url(LOCAL, headers, "1.2.3.4", trust=trust).startswith(expected)
    # not allowed: ignored, and the Host header left (127.0.0.1:3334) is not allowed either
    headers = {**FORWARDED, "x-forwarded-host": "[2001:db8::6]:8443"}
    with pytest.raises(HostNotAllowed):
        verification_url(LOCAL, headers, "1.2.3.4", trust=trust)


def test_invalid_forwarded_host_falls_back_to_host_header() -> None:
    trust = ForwardingTrust(trust_forwarding_headers=True)
    headers = {**FORWARDED, "x-forwarded-host": "a@b.com", "x-original-host": "ok.example.com"}
    assert verification_url(LOCAL, headers, None, trust=trust).startswith("https://ok.example.com/")


def test_redaction_hides_query_values_and_userinfo() -> None:
    url = "https://user:pw@h.example.com:8443/voice/webhook?callId=abc&turnToken=secret#frag"
    assert redact_url(url) == "https://h.example.com:8443/voice/webhook?callId=***&turnToken=***"


@given(st.dictionaries(st.sampled_from(["host", *FORWARDED]), st.text(max_size=40)), st.text())
def test_untrusted_headers_never_change_scheme_or_path(
    headers: dict[str, str], remote: str
) -> None:
    url = verification_url(LOCAL, headers, remote)
    assert url.startswith("http://") and "/voice/webhook?callId=abc&type=status" in url


def test_client_ip_is_the_peer_unless_a_trusted_proxy_forwarded_for_someone() -> None:
    from voice_call.security.public_url import client_ip

    xff = {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.1", "x-real-ip": "198.51.100.4"}
    untrusted = ForwardingTrust()
    assert client_ip(untrusted, "10.0.0.1", xff) == "10.0.0.1"  # headers not trusted
    behind = ForwardingTrust(trust_forwarding_headers=True, trusted_proxy_ips=["10.0.0.1"])
    # right-most hop that is not our proxy; the spoofable left part is never used
    assert client_ip(behind, "10.0.0.1", xff) == "203.0.113.9"
    assert client_ip(behind, "10.0.0.2", xff) == "10.0.0.2"  # not our proxy talking
    only_real = {"x-real-ip": "198.51.100.4"}
    assert client_ip(behind, "::ffff:10.0.0.1", only_real) == "198.51.100.4"
    assert client_ip(behind, "10.0.0.1", {"x-forwarded-for": "203.0.113.9, junk"}) == "10.0.0.1"
    assert client_ip(untrusted, None, {}) == "unknown"
