"""Building the Telnyx provider: fail closed without a public key, every key format accepted."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.providers.telnyx.stack import APP_NUMBER, CALLEE, merge, telnyx_stack
from voice_call.clock import RealClock
from voice_call.config import Config, ConfigError, parse_config
from voice_call.providers.base import WebhookRequest
from voice_call.providers.registry import build_provider
from voice_call.providers.telnyx.provider import TelnyxProvider, build
from voice_call.security.signatures import telnyx as signatures

PRIVATE, PUBLIC_B64 = signatures.generate_keypair()


def config(**overrides: Any) -> Config:
    raw = {
        "provider": "telnyx",
        "fromNumber": APP_NUMBER,
        "telnyx": {"apiKey": "KEY", "connectionId": "conn", "publicKey": PUBLIC_B64},
    }
    return parse_config(merge(raw, overrides), env={})


def signed(body: bytes) -> WebhookRequest:
    stamp = str(int(time.time()))
    headers = {
        signatures.TIMESTAMP_HEADER: stamp,
        signatures.SIGNATURE_HEADER: signatures.sign(PRIVATE, stamp, body),
    }
    return WebhookRequest(method="POST", url="http://h/voice/webhook", headers=headers, body=body)


def public_forms() -> dict[str, str]:
    public = PRIVATE.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "der": base64.b64encode(der).decode(),
        "pem": pem.decode(),
    }


async def test_the_registry_builds_it(tmp_path: Path) -> None:
    provider = build_provider(config(), RealClock(), tmp_path)
    assert isinstance(provider, TelnyxProvider)
    assert provider.required_headers == (("telnyx-signature-ed25519", "telnyx-timestamp"),)
    assert provider.reports_playback_end and not provider.delivers_notify_inline
    await provider.close()


@pytest.mark.parametrize("form", ["base64", "base64url", "der", "pem"])
async def test_every_public_key_form_verifies(tmp_path: Path, form: str) -> None:
    provider = build(config(telnyx={"publicKey": public_forms()[form]}), RealClock(), tmp_path)
    assert provider.verify_webhook(signed(b'{"data":{}}')).ok
    await provider.close()


def test_missing_public_key_fails_closed_at_build(tmp_path: Path) -> None:
    # The config check already refuses it; build refuses it too, whatever built the config.
    base = config()
    assert base.telnyx is not None
    unsafe = base.model_copy(update={"telnyx": base.telnyx.model_copy(update={"public_key": None})})
    with pytest.raises(ConfigError, match=r"telnyx\.publicKey: required"):
        build(unsafe, RealClock(), tmp_path)


def test_unusable_public_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"telnyx\.publicKey: not an Ed25519 public key"):
        build(config(telnyx={"publicKey": "c2hvcnQ="}), RealClock(), tmp_path)


def test_missing_credentials_are_named(tmp_path: Path) -> None:
    base = config()
    assert base.telnyx is not None
    blank = base.model_copy(
        update={"telnyx": base.telnyx.model_copy(update={"api_key": None, "connection_id": None})}
    )
    with pytest.raises(ConfigError) as caught:
        build(blank, RealClock(), tmp_path)
    assert [e.split(":")[0] for e in caught.value.errors] == [
        "telnyx.apiKey",
        "telnyx.connectionId",
    ]


async def test_skip_without_key_warns_loudly_and_verifies_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    skip = config(skipSignatureVerification=True, telnyx={"publicKey": None})
    with caplog.at_level(logging.WARNING, logger="voice_call.telnyx"):
        provider = build(skip, RealClock(), tmp_path)
    assert any("SECURITY WARNING" in r.message for r in caplog.records)
    result = provider.verify_webhook(signed(b"{}"))
    assert not result.ok and "no Telnyx public key" in result.reason
    await provider.close()


async def test_skip_lets_unsigned_webhooks_through_the_server(tmp_path: Path) -> None:
    """Development mode end to end: unsigned events apply (replays still recognised)."""
    async with telnyx_stack(
        tmp_path, skipSignatureVerification=True, telnyx={"publicKey": None}
    ) as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message="Hi", mode="notify")
        record = await stack.wait_ended(started["callId"])
        assert record.state.value == "hangup-bot"
        leg = await stack.leg(started["callId"])
        assert leg.callee.heard == ["Hi"]
        body = json.dumps(
            {
                "data": {
                    "event_type": "call.dtmf.received",
                    "id": "e1",
                    "payload": {"call_control_id": leg.id, "digit": "1"},
                }
            }
        ).encode()
        first = await stack.post(body, {"content-type": "application/json"})
        again = await stack.post(body, {"content-type": "application/json"})
        assert first.status_code == again.status_code == 200
        # Reached the manager (the call has ended, so it changes nothing); the replay got the
        # cached first answer.
        assert first.json() == again.json() == {"results": ["ignored: call already ended"]}
