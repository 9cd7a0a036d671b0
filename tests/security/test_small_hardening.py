"""Issue 15 item 7, the smaller hardening fixes, each reproduced against a live server on
loopback (Twilio requests signed exactly as the emulator signs them, JSON-RPC with the token).

Host rules for signatures, the start-up warning about forwarding headers, `allowFrom` on
normalised numbers, ASCII-only E.164, the premium-rate deny-list, inbound calls under
`maxConcurrentCalls`, `since` beyond SQLite's integers, 401 bodies without the URL, the Host
check on every non-carrier route, and a store path that is not a database.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.providers.twilio.stack import APP_NUMBER, CALLER, TwilioStack, twilio_stack
from tests.server.stack import Rpc, server_config
from tests.support import wait_until
from voice_call.config import ConfigError, parse_config
from voice_call.errors import InvalidInput, Unavailable
from voice_call.models import CallState
from voice_call.runtime import Runtime
from voice_call.server.serve import start_background

ARABIC_EIGHT = "\u0668"  # ٨, an Arabic-Indic digit: str.isdigit() and \d both say yes
UNKNOWN_CALL = {"CallSid": "CA" + "0" * 32, "CallStatus": "in-progress", "SpeechResult": "hi"}


async def _post_with_host(
    stack: TwilioStack, host: str, signed_url: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST a gather for an unknown call to our port, with `Host: host`, signed over
    `signed_url` (what a captured or forged signature would cover)."""
    from urllib.parse import urlencode

    local = f"{stack.webhook}?type=gather&callId=nope"
    sent = {
        "Host": host,
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": stack.sign(signed_url, UNKNOWN_CALL),
        **(headers or {}),
    }
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        return await http.post(local, content=urlencode(UNKNOWN_CALL).encode(), headers=sent)


# --- a. allowedHosts constrains the Host header too; no silent https ------------------------


async def test_allowed_hosts_refuses_a_host_header_outside_the_list(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "publicUrl": None,
        "webhookSecurity": {"allowedHosts": ["voice.example.com"]},
    }
    async with twilio_stack(tmp_path, **settings) as stack:
        # signed for the attacker's own host, sent with that Host: not a host we serve
        foreign = await _post_with_host(
            stack,
            "attacker.example",
            "http://attacker.example/voice/webhook?type=gather&callId=nope",
        )
        assert foreign.status_code == 401
        assert "attacker.example" not in foreign.text
        # the same with a claimed https: still refused
        foreign_https = await _post_with_host(
            stack,
            "attacker.example",
            "https://attacker.example/voice/webhook?type=gather&callId=nope",
        )
        assert foreign_https.status_code == 401
        # the allowed host passes, verified over the scheme it was reached by (no proto: http)
        allowed = "http://voice.example.com/voice/webhook?type=gather&callId=nope"
        assert (await _post_with_host(stack, "voice.example.com", allowed)).status_code == 200


async def test_https_only_from_a_trusted_x_forwarded_proto(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "publicUrl": None,
        "webhookSecurity": {"trustForwardingHeaders": True},
    }
    async with twilio_stack(tmp_path, **settings) as stack:
        https_url = "https://voice.example.com/voice/webhook?type=gather&callId=nope"
        http_url = "http://voice.example.com/voice/webhook?type=gather&callId=nope"
        # no X-Forwarded-Proto: the request's own scheme (http), never an assumed https
        assert (await _post_with_host(stack, "voice.example.com", https_url)).status_code == 401
        assert (await _post_with_host(stack, "voice.example.com", http_url)).status_code == 200
        proto = {"X-Forwarded-Proto": "https"}
        response = await _post_with_host(stack, "voice.example.com", https_url, proto)
        assert response.status_code == 200


# --- b. a start-up warning for forwarding headers trusted from anyone -----------------------


async def test_trusting_forwarding_headers_from_anyone_is_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = server_config(webhookSecurity={"trustForwardingHeaders": True})
    runtime = Runtime(config, tmp_path / "home")
    with caplog.at_level(logging.WARNING, logger="voice_call"):
        server = await start_background(runtime)
        await runtime.start()  # idempotent: no second warning
        await server.stop()
    warned = [r for r in caplog.records if "trustedProxyIPs" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "trustForwardingHeaders" in warned[0].getMessage()


async def test_no_warning_with_trusted_proxies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    security = {"trustForwardingHeaders": True, "trustedProxyIPs": ["10.0.0.1"]}
    runtime = Runtime(server_config(webhookSecurity=security), tmp_path / "home")
    with caplog.at_level(logging.WARNING, logger="voice_call"):
        server = await start_background(runtime)
        await server.stop()
    assert not [r for r in caplog.records if "trustedProxyIPs" in r.getMessage()]


# --- c. allowFrom compares normalised E.164 numbers ----------------------------------------


async def test_a_sip_caller_with_an_allowed_number_inside_is_refused(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"inboundPolicy": "allowlist", "allowFrom": [CALLER]}
    async with twilio_stack(tmp_path, **settings) as stack:
        call = await stack.emu.place_inbound(f"sip:{CALLER}@elsewhere.example", APP_NUMBER)
        await asyncio.wait_for(call.ended.wait(), 5)
        assert call.hangup_cause == "reject" and call.answered_at is None
        record = await stack.by_sid(call.id)
        assert record is not None and record.metadata["rejectionReason"] == "inbound-policy"


def test_allow_from_matches_plain_e164_spellings_only() -> None:
    from voice_call.manager.inbound import screen

    config = parse_config({"inboundPolicy": "allowlist", "allowFrom": ["+15550003000"]}, env={})
    for caller in ("+15550003000", "+1 555 000 3000", "+1 (555) 000-3000", "+1.555.000.3000"):
        assert screen(config, caller, APP_NUMBER).accepted, caller
    for caller in (
        "sip:+15550003000@elsewhere.example",
        "tel:+15550003000",
        "client:+15550003000",
        "15550003000",  # no +: not E.164 (Plivo's bare digits get their + in its parser)
        "+155500030001",  # a longer number that ends the same way
        "0015550003000",
        f"+1555000300{ARABIC_EIGHT}",
        "+15550003000\n",
    ):
        assert not screen(config, caller, APP_NUMBER).accepted, caller


# --- d. E.164: ASCII digits only, everywhere -----------------------------------------------


async def test_a_non_ascii_digit_never_reaches_the_carrier(rpc: Rpc, vc_runtime: Runtime) -> None:
    for to in (f"+1900555000{ARABIC_EIGHT}", f"+1555555000{ARABIC_EIGHT}", "+１5555550100"):
        reply = await rpc("voicecall.initiate", {"to": to, "message": "hi"})
        assert reply["error"]["code"] == -32602, (to, reply)
        assert reply["error"]["data"]["code"] == "invalid_request"
    assert await vc_runtime.store.list_recent() == []


async def test_the_manager_takes_only_a_whole_ascii_number(vc_runtime: Runtime) -> None:
    await vc_runtime.start()
    for to in (f"+1555555000{ARABIC_EIGHT}", "+15555550100\n"):  # `$` let a newline through
        with pytest.raises(InvalidInput, match=r"E\.164"):
            await vc_runtime.manager.initiate(to=to, message="hi")
    assert await vc_runtime.store.list_recent() == []


@pytest.mark.parametrize("key", ["fromNumber", "toNumber"])
def test_config_refuses_non_ascii_digits(key: str) -> None:
    with pytest.raises(ConfigError, match=r"E\.164"):
        parse_config({key: f"+1555555000{ARABIC_EIGHT}"}, env={})
    with pytest.raises(ConfigError, match=r"E\.164"):
        parse_config({"allowFrom": [f"+1555555000{ARABIC_EIGHT}"]}, env={})


# --- e. premium-rate prefixes are refused before anything is stored or dialled -------------


async def test_premium_rate_numbers_are_refused(rpc: Rpc, vc_runtime: Runtime) -> None:
    for to in ("+19005550100", "+1 976 555 0100", "+19765550100"):
        reply = await rpc("voicecall.initiate", {"to": to, "message": "hi"})
        assert reply["error"]["code"] == -32602, (to, reply)
        assert "denyPrefixes" in reply["error"]["message"]
    assert await vc_runtime.store.list_recent() == []
    assert await vc_runtime.store.last_seq() == 0


async def test_deny_prefixes_are_configurable(tmp_path: Path) -> None:
    config = server_config(outbound={"denyPrefixes": ["+44"]})
    runtime = Runtime(config, tmp_path / "home")
    await runtime.start()
    try:
        with pytest.raises(Exception, match="denyPrefixes"):
            await runtime.manager.initiate(to="+447700900123", message="hi")
        record = await runtime.manager.initiate(to="+19005550100", message="hi")  # list replaced
        assert record.to_number == "+19005550100"
    finally:
        await runtime.stop()


def test_deny_prefixes_must_be_plus_and_digits() -> None:
    for bad in (["1900"], ["+"], [f"+19{ARABIC_EIGHT}"], ["+1 900"]):
        with pytest.raises(ConfigError, match="denyPrefixes"):
            parse_config({"outbound": {"denyPrefixes": bad}}, env={})


# --- f. inbound calls count against maxConcurrentCalls --------------------------------------


async def test_inbound_calls_beyond_the_cap_are_rejected(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"inboundPolicy": "open", "maxConcurrentCalls": 1}
    async with twilio_stack(tmp_path, **settings) as stack:
        first = await stack.emu.place_inbound(CALLER, APP_NUMBER)
        await wait_until(lambda: _registered(stack, first.id))
        others = [await stack.emu.place_inbound(f"+1555000300{n}", APP_NUMBER) for n in (1, 2)]
        for call in others:
            await asyncio.wait_for(call.ended.wait(), 5)
            assert call.hangup_cause == "reject" and call.answered_at is None
            record = await stack.by_sid(call.id)
            assert record is not None and record.terminal
            assert record.metadata["rejectionReason"] == "max-concurrent-calls"
        active = await stack.runtime.store.list_active()
        assert [r.provider_call_id for r in active] == [first.id]
        # an outbound call is refused too while the inbound one is live
        with pytest.raises(Exception, match="Maximum concurrent calls"):
            await stack.call("voicecall.initiate", to="+15550002000", message="hi")
        record = await stack.by_sid(first.id)
        assert record is not None
        await stack.call("voicecall.end", callId=record.call_id)


async def _registered(stack: TwilioStack, sid: str) -> bool:
    record = await stack.by_sid(sid)
    return record is not None and record.state != CallState.INITIATED


# --- g. since beyond SQLite's integers is the caller's mistake -----------------------------


async def test_events_since_beyond_int64_is_invalid_params(
    rpc: Rpc, vc_runtime: Runtime, vc_http: httpx.AsyncClient
) -> None:
    for since in (2**63, 2**64, 10**30):
        reply = await rpc("voicecall.events", {"since": since})
        assert reply["error"]["code"] == -32602, (since, reply)
    assert "result" in await rpc("voicecall.events", {"since": 2**63 - 1})
    params = {"since": str(2**63), "token": vc_runtime.rpc_token}
    assert (await vc_http.get("/events", params=params)).status_code == 400


# --- h. a 401 body does not echo the URL being verified ------------------------------------


async def test_a_401_body_names_no_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with twilio_stack(tmp_path) as stack:
        url = f"{stack.webhook}?type=gather&callId=nope"
        with caplog.at_level(logging.WARNING, logger="voice_call"):
            response = await stack.post(url, UNKNOWN_CALL, "bm90IGEgc2lnbmF0dXJl")
        assert response.status_code == 401
        error = response.json()["error"]
        assert "invalid X-Twilio-Signature" in error
        for leak in ("http", "127.0.0.1", "/voice/webhook", "callId"):
            assert leak not in error, error
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "/voice/webhook" in logged  # the operator still sees which URL was checked


# --- i. every route but the carrier's refuses a foreign Host (DNS rebinding) ---------------


@pytest.fixture
def vc_config() -> Any:
    return server_config(webhookSecurity={"allowedHosts": ["calls.example.com"]})


async def test_a_foreign_host_gets_nothing_from_health_rpc_events_or_metrics(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    auth = {"Authorization": f"Bearer {vc_runtime.rpc_token}"}
    rebound = {"Host": "attacker.example:3334", **auth}
    health = await vc_http.get("/healthz", headers=rebound)
    assert health.status_code == 421
    assert "provider" not in health.text and "mock" not in health.text
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "voicecall.status"}
    assert (await vc_http.post("/rpc", json=rpc, headers=rebound)).status_code == 421
    assert (await vc_http.get("/events", headers=rebound)).status_code == 421
    assert (await vc_http.get("/metrics", headers=rebound)).status_code == 421
    assert (await vc_http.get("/nowhere", headers=rebound)).status_code == 421
    # the carrier webhook keeps its own rules (the mock provider's parser answers)
    assert (await vc_http.post("/voice/webhook", content=b"{}", headers=rebound)).status_code == 400
    port = vc_http.base_url.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "[::1]", "127.0.0.2"):
        assert (await vc_http.get("/healthz", headers={"Host": host})).status_code == 200, host
    for host in ("calls.example.com", "calls.example.com:443", "localhost.attacker.example"):
        expected = 200 if host.startswith("calls.") else 421
        assert (await vc_http.get("/healthz", headers={"Host": host})).status_code == expected


async def test_the_public_url_host_is_allowed(tmp_path: Path) -> None:
    config = server_config(publicUrl="https://voice.example.org/voice/webhook")
    runtime = Runtime(config, tmp_path / "home")
    server = await start_background(runtime)
    try:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
            ok = await http.get("/healthz", headers={"Host": "voice.example.org"})
            assert ok.status_code == 200
            refused = await http.get("/healthz", headers={"Host": "voice.example.org.evil"})
            assert refused.status_code == 421
    finally:
        await server.stop()


# --- j. a store path naming a file that is not a database ----------------------------------


@pytest.mark.parametrize("name", ["notes.db", "notes.txt"])
async def test_a_store_path_that_is_not_a_database_is_one_clear_error(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_text("these are my notes, not a call store\n" * 100)
    runtime = Runtime(server_config(store=str(path)), tmp_path / "home")
    with pytest.raises(Unavailable) as refused:
        await runtime.start()
    message = str(refused.value)
    assert str(path) in message and "not a SQLite database" in message
    assert "\n" not in message
    assert path.read_text().startswith("these are my notes")  # left untouched
    await runtime.stop()


async def test_a_store_folder_under_a_file_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    runtime = Runtime(server_config(store=str(blocker / "sub" / "calls.db")), tmp_path / "home")
    with pytest.raises(Unavailable, match="cannot open the call store"):
        await runtime.start()
