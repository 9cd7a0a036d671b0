"""Public exposure: which hosts a carrier can reach, which URL wins, and refusing to start.

Tables first (host classification, URL resolution, stream URLs, refusals), then properties of
the host classifier, then the Runtime: a real carrier with a local URL never starts.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_call.clock import Clock
from voice_call.config import Config, ConfigError, parse_config
from voice_call.providers.mock import MockProvider
from voice_call.security.exposure import (
    ExposureRefused,
    forwarding_trust,
    host_kind,
    ip_literal,
    local_only_kind,
    needs_public_webhook,
    refuse_tailnet_only,
    refuse_unreachable_webhook,
)
from voice_call.tunnel.resolve import (
    exposure_routes,
    local_origin,
    path_prefix,
    plan_exposure,
    stream_url,
)
from voice_call.tunnel.tailscale import Route

TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15550001111",
    "twilio": {"accountSid": "AC" + "1" * 32, "authToken": "secret-token"},
}


def config(**raw: Any) -> Config:
    return parse_config(raw, env={})


def twilio(**raw: Any) -> Config:
    return parse_config({**TWILIO, **raw}, env={})


# --- host classification -------------------------------------------------------------------------

HOSTS = [
    # loopback, by name and by every IPv4 spelling a URL parser accepts
    ("localhost", "loopback"),
    ("LOCALHOST.", "loopback"),
    ("api.localhost", "loopback"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("127.1", "loopback"),
    ("2130706433", "loopback"),
    ("0x7f000001", "loopback"),
    ("0x7f.1", "loopback"),
    ("017700000001", "loopback"),
    ("127.0.0.1.", "loopback"),
    ("::1", "loopback"),
    ("[::1]", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("[::ffff:7f00:1]", "loopback"),
    # unspecified
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("::", "unspecified"),
    # RFC 1918 private
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.20", "private"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:192.168.0.1", "private"),
    # link-local
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("[febf::1]", "link-local"),
    # CGNAT (Tailscale addresses live here)
    ("100.64.0.1", "CGNAT"),
    ("100.101.102.103", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("::ffff:100.100.100.100", "CGNAT"),
    # unique local
    ("fc00::1", "unique-local"),
    ("fd7a:115c:a1e0::1", "unique-local"),
    # reserved: documentation, benchmarking, multicast, class E
    ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"),
    ("224.0.0.1", "reserved"),
    ("240.0.0.1", "reserved"),
    ("2001:db8::1", "reserved"),
    # reachable
    ("8.8.8.8", None),
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    ("100.63.255.255", None),
    ("100.128.0.0", None),
    ("169.253.255.255", None),
    ("11.0.0.1", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("fec0::1", "reserved"),  # deprecated site-local: not global
    ("example.com", None),
    ("calls.ngrok.app", None),
    ("node.tail1234.ts.net", None),
    ("localhost.example.com", None),
    ("my-localhost", None),
    ("1.2.3.example", None),
    ("256.256.256.256", None),  # not an IPv4 address at all: a (bad) name, not ours to judge
]


@pytest.mark.parametrize(("host", "kind"), HOSTS)
def test_host_kind(host: str, kind: str | None) -> None:
    assert host_kind(host) == kind


URLS = [
    ("http://127.0.0.1:3334/voice/webhook", "loopback"),
    ("http://localhost:3334/voice/webhook", "loopback"),
    ("https://[::1]:8443/voice/webhook", "loopback"),
    ("http://0.0.0.0:3334/voice/webhook", "unspecified"),
    ("http://[::]:3334/voice/webhook", "unspecified"),
    ("https://192.168.1.5/voice/webhook", "private"),
    ("https://[fd00::5]/voice/webhook", "unique-local"),
    ("https://[fe80::1%25en0]/voice/webhook", "link-local"),
    ("https://100.100.1.1/voice/webhook", "CGNAT"),
    ("https://user:pw@10.0.0.1/voice/webhook", "private"),
    ("http://2130706433/voice/webhook", "loopback"),
    ("https://calls.example.com/voice/webhook", None),
    ("https://203.0.113.9.nip.io/voice/webhook", None),
    ("https://8.8.4.4:8443/voice/webhook", None),
    ("not a url", "invalid"),
    ("https:///voice/webhook", "invalid"),
    ("https://[::1/voice", "invalid"),
]


@pytest.mark.parametrize(("url", "kind"), URLS)
def test_local_only_kind(url: str, kind: str | None) -> None:
    assert local_only_kind(url) == kind


@given(st.ip_addresses())
def test_every_ip_is_judged_like_ipaddress_does(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    text = str(ip)
    kind = host_kind(text)
    probe = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if probe.is_loopback:
        assert kind == "loopback"
    elif probe.is_global and not probe.is_multicast and not _site_local(probe):
        assert kind is None
    else:
        assert kind is not None  # private, link-local, CGNAT, ULA, unspecified or reserved
    assert host_kind(f"[{text}]" if ":" in text else text) == kind


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_as_one_decimal_or_hex_number(value: int) -> None:
    expected = ipaddress.IPv4Address(value)
    assert ip_literal(str(value)) == expected
    assert ip_literal(hex(value)) == expected


@given(st.text(max_size=80))
def test_any_text_is_classified_without_error(text: str) -> None:
    assert local_only_kind(text) in (None, "invalid", *_KINDS)
    assert host_kind(text) in (None, *_KINDS)


def _site_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local


_KINDS = ("loopback", "unspecified", "private", "link-local", "CGNAT", "unique-local", "reserved")


# --- URL resolution ------------------------------------------------------------------------------

RESOLUTION = [
    # (config, source, tunnel, public path)
    ({}, "local", None, "/voice/webhook"),
    ({"publicUrl": "https://x.example.com/hook"}, "publicUrl", None, "/hook"),
    (
        {"publicUrl": "https://x.example.com/voice/webhook", "tunnel": {"provider": "ngrok"}},
        "publicUrl",
        None,
        "/voice/webhook",
    ),
    (
        {"tunnel": {"provider": "ngrok"}, "tailscale": {"mode": "funnel"}},
        "tunnel",
        "ngrok",
        "/voice/webhook",
    ),
    ({"tunnel": {"provider": "tailscale-serve"}}, "tunnel", "tailscale-serve", "/voice/webhook"),
    (
        {"tunnel": {"provider": "tailscale-funnel"}, "serve": {"path": "/calls/webhook"}},
        "tunnel",
        "tailscale-funnel",
        "/calls/webhook",
    ),
    (
        {"tailscale": {"mode": "funnel", "path": "/pub/voice/webhook"}},
        "tailscale",
        "tailscale-funnel",
        "/pub/voice/webhook",
    ),
    ({"tailscale": {"mode": "serve"}}, "tailscale", "tailscale-serve", "/voice/webhook"),
    (
        {"tailscale": {"mode": "off"}, "tunnel": {"provider": "none"}},
        "local",
        None,
        "/voice/webhook",
    ),
]


@pytest.mark.parametrize(("raw", "source", "tunnel", "path"), RESOLUTION)
def test_url_resolution_priority(
    raw: dict[str, Any], source: str, tunnel: str | None, path: str
) -> None:
    plan = plan_exposure(config(**raw))
    assert (plan.source, plan.tunnel, plan.public_path) == (source, tunnel, path)


STREAMS = [
    # (webhook URL, serve.path, stream path, stream URL)
    (
        "https://x.ngrok.app/voice/webhook",
        "/voice/webhook",
        "/voice/stream",
        "wss://x.ngrok.app/voice/stream",
    ),
    (
        "http://127.0.0.1:3334/voice/webhook",
        "/voice/webhook",
        "/voice/stream",
        "ws://127.0.0.1:3334/voice/stream",
    ),
    (
        "https://node.ts.net:8443/voice/webhook",
        "/voice/webhook",
        "/voice/stream",
        "wss://node.ts.net:8443/voice/stream",
    ),
    (
        "https://proxy.example.com/pfx/voice/webhook?x=1",
        "/voice/webhook",
        "/voice/stream",
        "wss://proxy.example.com/pfx/voice/stream",
    ),
    (
        "https://user:pw@example.com/hook",
        "/voice/webhook",
        "/voice/stream/realtime",
        "wss://example.com/voice/stream/realtime",
    ),
    ("http://[::1]:3334/voice/webhook", "/voice/webhook", "/s", "ws://[::1]:3334/s"),
]


@pytest.mark.parametrize(("webhook", "local", "stream", "expected"), STREAMS)
def test_stream_url_shares_the_webhook_origin(
    webhook: str, local: str, stream: str, expected: str
) -> None:
    assert stream_url(webhook, local, stream) == expected


def test_path_prefix_and_stream_routes() -> None:
    assert path_prefix("/pfx/voice/webhook", "/voice/webhook") == "/pfx"
    assert path_prefix("/voice/webhook", "/voice/webhook") == ""
    assert path_prefix("/hook", "/voice/webhook") == ""
    cfg = config(provider="mock", streaming={"enabled": True})
    assert exposure_routes(cfg, "/pfx/voice/webhook", "/voice/webhook") == [
        Route("/pfx/voice/webhook", "/voice/webhook"),
        Route("/pfx/voice/stream", "/voice/stream"),
    ]
    assert exposure_routes(config(), "/voice/webhook", "/voice/webhook") == [
        Route("/voice/webhook", "/voice/webhook")
    ]


@pytest.mark.parametrize(
    ("bind", "origin"),
    [
        ("127.0.0.1", "http://127.0.0.1:3334"),
        ("0.0.0.0", "http://127.0.0.1:3334"),
        ("::", "http://127.0.0.1:3334"),
        ("::1", "http://[::1]:3334"),
        ("localhost", "http://localhost:3334"),
    ],
)
def test_local_origin(bind: str, origin: str) -> None:
    assert local_origin(bind, 3334) == origin


# --- who must be public, and the refusal ---------------------------------------------------------


def test_only_real_carriers_need_a_public_url() -> None:
    assert needs_public_webhook(twilio())
    assert not needs_public_webhook(config())  # mock
    emulated = {**TWILIO["twilio"], "apiBaseUrl": "http://127.0.0.1:9999"}  # type: ignore[dict-item]
    assert not needs_public_webhook(twilio(twilio=emulated))  # `voicecall sim` calls back locally
    remote = {**TWILIO["twilio"], "apiBaseUrl": "https://api.dublin.ie1.twilio.com"}  # type: ignore[dict-item]
    assert needs_public_webhook(twilio(twilio=remote))


@pytest.mark.parametrize(
    ("url", "source", "words"),
    [
        ("http://127.0.0.1:3334/voice/webhook", "local", ["loopback", "publicUrl", "tunnel"]),
        ("http://0.0.0.0:3334/voice/webhook", "local", ["unspecified", "publicUrl"]),
        ("https://10.0.0.5/voice/webhook", "publicUrl", ["private", "set publicUrl"]),
        ("https://100.90.1.2/voice/webhook", "publicUrl", ["CGNAT"]),
        ("https://[fd00::1]/voice/webhook", "publicUrl", ["unique-local"]),
        ("https://169.254.1.1/voice/webhook", "tunnel", ["link-local", "tunnel settings"]),
    ],
)
def test_a_real_carrier_refuses_a_local_url_and_names_the_fix(
    url: str, source: str, words: list[str]
) -> None:
    with pytest.raises(ExposureRefused) as caught:
        refuse_unreachable_webhook(twilio(), url, source=source)
    message = caught.value.message
    assert message.startswith("twilio cannot reach the webhook URL")
    for word in words:
        assert word in message
    refuse_unreachable_webhook(config(), url, source=source)  # the mock provider does not care


def test_refusal_never_echoes_secrets_from_the_url() -> None:
    with pytest.raises(ExposureRefused) as caught:
        refuse_unreachable_webhook(
            twilio(), "https://u:hunter2@10.0.0.1/voice/webhook?token=abc", source="publicUrl"
        )
    assert "hunter2" not in caught.value.message and "abc" not in caught.value.message


def test_public_urls_pass() -> None:
    for url in ("https://calls.example.com/voice/webhook", "https://8.8.8.8/voice/webhook"):
        refuse_unreachable_webhook(twilio(), url, source="publicUrl")


def test_tailscale_serve_is_tailnet_only_for_carriers() -> None:
    with pytest.raises(ExposureRefused, match="tailscale-funnel"):
        refuse_tailnet_only(twilio(), "tailscale-serve")
    refuse_tailnet_only(twilio(), "tailscale-funnel")
    refuse_tailnet_only(config(), "tailscale-serve")


# --- the seed's ngrok signature bypass ------------------------------------------------------------


def test_the_seeds_ngrok_signature_bypass_is_refused() -> None:
    """What the seed documents (Twilio webhooks with invalid signatures through ngrok) would
    take forged webhooks from anyone who finds the tunnel URL: the config refuses it."""
    with pytest.raises(ConfigError, match="allowNgrokFreeTierLoopbackBypass: not supported"):
        config(tunnel={"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": True})
    off = config(tunnel={"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": False})
    trust = forwarding_trust(off)
    assert not trust.trust_forwarding_headers and not trust.allowed_hosts


def test_forwarding_trust_carries_webhook_security() -> None:
    cfg = config(
        webhookSecurity={
            "allowedHosts": ["calls.example.com"],
            "trustForwardingHeaders": True,
            "trustedProxyIPs": ["10.0.0.1"],
        }
    )
    trust = forwarding_trust(cfg)
    assert trust.allowed_hosts == ("calls.example.com",)
    assert trust.trust_forwarding_headers and trust.trusted_proxy_ips == ("10.0.0.1",)


# --- the Runtime ---------------------------------------------------------------------------------


@pytest.fixture
def carrier_as_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build a mock provider whatever the config names: what is judged here is the config."""

    def build(cfg: Config, clock: Clock, home: Path) -> MockProvider:
        return MockProvider(clock)

    monkeypatch.setattr("voice_call.runtime.build_provider", build)


@pytest.mark.usefixtures("carrier_as_mock")
@pytest.mark.parametrize(
    "raw",
    [
        {},  # local URL on the default loopback bind
        {"serve": {"bind": "0.0.0.0"}},
        {"serve": {"bind": "10.1.2.3"}},
        {"publicUrl": "https://192.168.0.10/voice/webhook"},
        {"tunnel": {"provider": "tailscale-serve"}},
    ],
)
async def test_runtime_refuses_to_start_a_carrier_on_a_local_url(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    from voice_call.runtime import Runtime

    runtime = Runtime(twilio(**raw), tmp_path / "home")
    with pytest.raises(ExposureRefused):
        await runtime.start()
    assert not runtime.running
    assert not (tmp_path / "home").exists()  # refused before anything was created


@pytest.mark.usefixtures("carrier_as_mock")
async def test_runtime_starts_a_carrier_on_a_public_url(tmp_path: Path) -> None:
    from voice_call.runtime import Runtime

    runtime = Runtime(twilio(publicUrl="https://calls.example.com/voice/webhook"), tmp_path)
    await runtime.start()
    try:
        assert runtime.webhook_url() == "https://calls.example.com/voice/webhook"
        assert runtime.stream_url() == "wss://calls.example.com/voice/stream"
    finally:
        await runtime.stop()


async def test_mock_runtime_keeps_its_local_url(tmp_path: Path) -> None:
    from voice_call.runtime import Runtime

    runtime = Runtime(config(serve={"port": 4555}), tmp_path)
    await runtime.start()
    try:
        assert runtime.webhook_url() == "http://127.0.0.1:4555/voice/webhook"
        runtime.bound(4777)
        assert runtime.manager.webhook_url == "http://127.0.0.1:4777/voice/webhook"
        assert runtime.stream_url(4777) == "ws://127.0.0.1:4777/voice/stream"
    finally:
        await runtime.stop()
