"""The ngrok tunnel with its listener factory injected: URL, domain, authtoken, shutdown.

The SDK call itself (`sdk_listener`) is checked against a stand-in `ngrok` module whose names
are verified to exist on the real SDK, so a renamed SDK method fails here, not in production.
"""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest

from voice_call.config import Config, parse_config
from voice_call.runtime import Runtime
from voice_call.server.serve import start_background
from voice_call.tunnel import TunnelError
from voice_call.tunnel import ngrok as ngrok_tunnel
from voice_call.tunnel.ngrok import NgrokOptions, NgrokTunnel, build, normalise_domain, sdk_listener
from voice_call.tunnel.record import read_exposure

ORIGIN = "http://127.0.0.1:3334"


class FakeListener:
    def __init__(self, url: str, close_error: Exception | None = None) -> None:
        self._url = url
        self.closed = 0
        self.close_error = close_error

    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        self.closed += 1
        if self.close_error:
            raise self.close_error


class FakeNgrok:
    """A listener factory that records what it was asked for."""

    def __init__(self, url: str = "https://a1b2.ngrok-free.app", **listener: Any) -> None:
        self.url = url
        self.listener_args = listener
        self.options: list[NgrokOptions] = []
        self.listeners: list[FakeListener] = []

    async def __call__(self, options: NgrokOptions) -> FakeListener:
        self.options.append(options)
        listener = FakeListener(self.url, **self.listener_args)
        self.listeners.append(listener)
        return listener


def ngrok_config(env: dict[str, str] | None = None, **tunnel: Any) -> Config:
    return parse_config({"tunnel": {"provider": "ngrok", **tunnel}}, env=env or {})


async def test_public_url_is_the_listener_url_plus_the_webhook_path() -> None:
    fake = FakeNgrok()
    tunnel = build(ngrok_config(ngrokAuthToken="tok-config"), env={}, factory=fake)
    assert await tunnel.start(ORIGIN) == "https://a1b2.ngrok-free.app/voice/webhook"
    assert fake.options == [NgrokOptions(ORIGIN, "tok-config", None)]


async def test_serve_path_is_used_for_the_public_path() -> None:
    config = parse_config(
        {"tunnel": {"provider": "ngrok", "ngrokAuthToken": "t"}, "serve": {"path": "calls/in"}},
        env={},
    )
    tunnel = build(config, env={}, factory=FakeNgrok("https://x.ngrok.app/"))
    assert await tunnel.start(ORIGIN) == "https://x.ngrok.app/calls/in"


async def test_reserved_domain_is_requested_and_must_be_what_ngrok_opened() -> None:
    fake = FakeNgrok("https://calls.ngrok.app")
    tunnel = build(ngrok_config(ngrokAuthToken="t", ngrokDomain="calls.ngrok.app"), {}, fake)
    assert await tunnel.start(ORIGIN) == "https://calls.ngrok.app/voice/webhook"
    assert fake.options[0].domain == "calls.ngrok.app"

    wrong = FakeNgrok("https://random-words.ngrok-free.app")
    tunnel = build(ngrok_config(ngrokAuthToken="t", ngrokDomain="calls.ngrok.app"), {}, wrong)
    with pytest.raises(TunnelError, match=r"not the reserved domain calls\.ngrok\.app"):
        await tunnel.start(ORIGIN)
    assert wrong.listeners[0].closed == 1  # the wrong tunnel is not left open


@pytest.mark.parametrize(
    ("raw_env", "tunnel", "token", "domain"),
    [
        ({"NGROK_AUTHTOKEN": "tok-env"}, {}, "tok-env", None),
        ({"NGROK_AUTHTOKEN": "tok-env"}, {"ngrokAuthToken": "tok-config"}, "tok-config", None),
        ({"NGROK_AUTHTOKEN": "t", "NGROK_DOMAIN": "Env.Ngrok.App"}, {}, "t", "env.ngrok.app"),
        (
            {"NGROK_DOMAIN": "env.ngrok.app"},
            {"ngrokAuthToken": "t", "ngrokDomain": "c.ngrok.app"},
            "t",
            "c.ngrok.app",
        ),
    ],
)
async def test_authtoken_and_domain_from_config_or_environment(
    raw_env: dict[str, str], tunnel: dict[str, str], token: str, domain: str | None
) -> None:
    fake = FakeNgrok(f"https://{domain}" if domain else "https://r.ngrok-free.app")
    # parsed with the environment (the config picks it up) …
    await build(ngrok_config(raw_env, **tunnel), env={}, factory=fake).start(ORIGIN)
    # … or parsed without it and built with it (the tunnel reads it itself)
    await build(ngrok_config({}, **tunnel), env=raw_env, factory=fake).start(ORIGIN)
    assert [(o.authtoken, o.domain) for o in fake.options] == [(token, domain)] * 2


def test_no_authtoken_names_both_places_to_set_it() -> None:
    with pytest.raises(TunnelError) as caught:
        build(ngrok_config(), env={})
    assert "tunnel.ngrokAuthToken" in caught.value.message
    assert "NGROK_AUTHTOKEN" in caught.value.message


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("calls.ngrok.app", "calls.ngrok.app"),
        ("Calls.Ngrok.App.", "calls.ngrok.app"),
        ("https://calls.ngrok.app/", "calls.ngrok.app"),
        ("https://calls.ngrok.app", "calls.ngrok.app"),
        ("calls.ngrok.app/voice", None),
        ("http://calls.ngrok.app", None),
        ("https://calls.ngrok.app/voice", None),
        ("calls.ngrok.app:443", None),
        ("user@calls.ngrok.app", None),
        ("a b", None),
        ("", None),
    ],
)
def test_domain_is_a_host_name(value: str, domain: str | None) -> None:
    if domain is None:
        with pytest.raises(TunnelError, match="not a domain"):
            normalise_domain(value)
    else:
        assert normalise_domain(value) == domain


async def test_stop_closes_once_and_is_idempotent() -> None:
    fake = FakeNgrok()
    tunnel = build(ngrok_config(ngrokAuthToken="t"), {}, fake)
    await tunnel.start(ORIGIN)
    await tunnel.stop()
    await tunnel.stop()
    assert fake.listeners[0].closed == 1
    await tunnel.start(ORIGIN)  # a stopped tunnel may open again
    await tunnel.stop()
    assert [listener.closed for listener in fake.listeners] == [1, 1]


async def test_a_failing_close_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNgrok(close_error=RuntimeError("session already gone"))
    tunnel = build(ngrok_config(ngrokAuthToken="t"), {}, fake)
    await tunnel.start(ORIGIN)
    await tunnel.stop()
    assert "session already gone" in caplog.text


async def test_a_hung_close_is_abandoned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ngrok_tunnel, "STOP_TIMEOUT_S", 0.05)
    never = asyncio.Event()

    class Hung(FakeListener):
        async def close(self) -> None:
            await never.wait()

    async def factory(options: NgrokOptions) -> Hung:
        return Hung("https://h.ngrok.app")

    tunnel = NgrokTunnel(path="/voice/webhook", authtoken="t", factory=factory)
    await tunnel.start(ORIGIN)
    await tunnel.stop()  # returns although close() never does


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (ValueError("failed to connect: ERR_NGROK_105 authentication failed"), "NGROK_AUTHTOKEN"),
        (RuntimeError("ERR_NGROK_320: domain is reserved by another account"), "ngrokDomain"),
        (OSError("network is unreachable"), "network connection"),
        (
            ValueError("failed to connect session", "failed to establish tcp connection"),
            "network connection",
        ),
    ],
)
async def test_sdk_errors_become_tunnel_errors_with_a_hint(error: Exception, hint: str) -> None:
    async def factory(options: NgrokOptions) -> FakeListener:
        raise error

    tunnel = NgrokTunnel(path="/voice/webhook", authtoken="t", factory=factory)
    with pytest.raises(TunnelError) as caught:
        await tunnel.start(ORIGIN)
    detail = ": ".join(str(arg) for arg in error.args)  # the SDK's args, not a tuple repr
    assert f"open a tunnel: {detail} — " in caught.value.message
    assert hint in caught.value.message


async def test_a_slow_start_times_out() -> None:
    never = asyncio.Event()

    async def factory(options: NgrokOptions) -> FakeListener:
        await never.wait()
        raise AssertionError("unreachable")

    tunnel = NgrokTunnel(path="/p", authtoken="t", factory=factory, start_timeout_s=0.05)
    with pytest.raises(TunnelError, match=r"did not open a tunnel within 0\.05 s"):
        await tunnel.start(ORIGIN)


async def test_a_non_https_url_from_the_sdk_is_refused() -> None:
    fake = FakeNgrok("tcp://0.tcp.ngrok.io:12345")
    tunnel = build(ngrok_config(ngrokAuthToken="t"), {}, fake)
    with pytest.raises(TunnelError, match="unexpected URL"):
        await tunnel.start(ORIGIN)
    assert fake.listeners[0].closed == 1


# --- the SDK call, against a stand-in with the real SDK's names --------------------------------


async def test_sdk_listener_calls_the_sdk_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    import ngrok as real

    for owner, names in (
        (real.SessionBuilder, ["authtoken", "connect"]),
        (real.Session, ["http_endpoint", "close"]),
        (real.HttpListenerBuilder, ["domain", "listen_and_forward"]),
        (real.Listener, ["url", "close"]),
    ):
        for name in names:
            assert hasattr(owner, name), f"ngrok.{owner.__name__}.{name} is gone"

    calls: list[tuple[str, Any]] = []

    class Listener:
        def url(self) -> str:
            return "https://sdk.ngrok.app"

        async def close(self) -> None:
            calls.append(("listener.close", None))

    class Endpoint:
        def domain(self, domain: str) -> Endpoint:
            calls.append(("domain", domain))
            return self

        async def listen_and_forward(self, url: str) -> Listener:
            calls.append(("listen_and_forward", url))
            return Listener()

    class Session:
        def http_endpoint(self) -> Endpoint:
            return Endpoint()

        async def close(self) -> None:
            calls.append(("session.close", None))

    class SessionBuilder:
        def authtoken(self, token: str) -> SessionBuilder:
            calls.append(("authtoken", token))
            return self

        async def connect(self) -> Session:
            return Session()

    stand_in = types.ModuleType("ngrok")
    stand_in.SessionBuilder = SessionBuilder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ngrok", stand_in)

    listener = await sdk_listener(NgrokOptions(ORIGIN, "tok", "calls.ngrok.app"))
    assert listener.url() == "https://sdk.ngrok.app"
    await listener.close()
    assert calls == [
        ("authtoken", "tok"),
        ("domain", "calls.ngrok.app"),
        ("listen_and_forward", ORIGIN),
        ("listener.close", None),
        ("session.close", None),
    ]


# --- the Runtime ----------------------------------------------------------------------------


async def test_runtime_opens_ngrok_after_binding_and_closes_it_on_stop(tmp_path: Path) -> None:
    fake = FakeNgrok("https://rt.ngrok-free.app")
    config = parse_config(
        {
            "provider": "mock",
            "serve": {"port": 0},
            "tunnel": {"provider": "ngrok", "ngrokAuthToken": "t"},
        },
        env={},
    )
    home = tmp_path / "home"
    runtime = Runtime(config, home, tunnel_factory=lambda cfg: build(cfg, {}, fake))
    server = await start_background(runtime)
    try:
        assert runtime.webhook_url() == "https://rt.ngrok-free.app/voice/webhook"
        assert runtime.stream_url() == "wss://rt.ngrok-free.app/voice/stream"
        forward = fake.options[0].forward_to
        assert forward == server.url  # the port the server really bound
        async with httpx.AsyncClient() as http:  # what ngrok forwards to answers
            reply = await http.get(forward + "/voice/webhook")
        assert reply.status_code == 405
        record = read_exposure(home)
        assert record is not None and record["source"] == "tunnel" and record["tunnel"] == "ngrok"
    finally:
        await server.stop()
    assert fake.listeners[0].closed == 1
    assert read_exposure(home) is None


async def test_runtime_with_a_known_port_opens_ngrok_in_start(tmp_path: Path) -> None:
    fake = FakeNgrok()
    config = parse_config(
        {"serve": {"port": 45999}, "tunnel": {"provider": "ngrok", "ngrokAuthToken": "t"}}, env={}
    )
    runtime = Runtime(config, tmp_path, tunnel_factory=lambda cfg: build(cfg, {}, fake))
    await runtime.start()
    try:
        assert fake.options[0].forward_to == "http://127.0.0.1:45999"
        runtime.bound(45999)  # the same port: nothing opens twice
        await runtime.start()
        assert len(fake.options) == 1
    finally:
        await runtime.stop()
        await runtime.stop()
    assert fake.listeners[0].closed == 1


async def test_runtime_without_an_authtoken_refuses_to_start(tmp_path: Path) -> None:
    config = parse_config({"serve": {"port": 45998}, "tunnel": {"provider": "ngrok"}}, env={})
    runtime = Runtime(config, tmp_path, tunnel_factory=lambda cfg: build(cfg, {}))
    with pytest.raises(TunnelError, match="NGROK_AUTHTOKEN"):
        await runtime.start()
    assert not runtime.running


async def test_public_url_wins_and_no_tunnel_opens(tmp_path: Path) -> None:
    fake = FakeNgrok()
    config = parse_config(
        {
            "serve": {"port": 45997},
            "publicUrl": "https://mine.example.com/voice/webhook",
            "tunnel": {"provider": "ngrok", "ngrokAuthToken": "t"},
        },
        env={},
    )
    runtime = Runtime(config, tmp_path, tunnel_factory=lambda cfg: build(cfg, {}, fake))
    await runtime.start()
    try:
        assert runtime.webhook_url() == "https://mine.example.com/voice/webhook"
        assert fake.options == []
    finally:
        await runtime.stop()
