"""With a tunnel (no publicUrl), signatures are checked over the tunnel's public URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from voice_call.clock import FakeClock
from voice_call.config import parse_config
from voice_call.providers.base import WebhookRequest
from voice_call.providers.plivo.provider import build as build_plivo
from voice_call.providers.twilio.provider import build as build_twilio
from voice_call.security.signatures import plivo as plivo_sig
from voice_call.security.signatures import twilio as twilio_sig

TUNNEL = "https://abc123.ngrok.app/voice/webhook"
LOCAL = "http://127.0.0.1:3334/voice/webhook"
PARAMS = {"CallSid": "CA" + "1" * 32, "CallStatus": "ringing", "Direction": "outbound-api"}
TOKEN = "tok-secret"


def _twilio(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = parse_config(
        {
            "provider": "twilio",
            "fromNumber": "+15550001234",
            "twilio": {"accountSid": "AC" + "0" * 32, "authToken": TOKEN},
        },
        env={},
    )
    return build_twilio(config, FakeClock(), tmp_path)


def _request(url: str, headers: dict[str, str], body: bytes) -> WebhookRequest:
    return WebhookRequest("POST", url, headers, body, "127.0.0.1")


async def test_twilio_verifies_over_the_pinned_tunnel_url(tmp_path: Path) -> None:
    provider = _twilio(tmp_path)
    query = "?type=status&callId=abc"
    signature = twilio_sig.compute_signature(TOKEN, TUNNEL + query, PARAMS)
    headers = {"x-twilio-signature": signature, "host": "127.0.0.1:3334"}
    request = _request(LOCAL + query, headers, urlencode(PARAMS).encode())
    provider.set_webhook_url(LOCAL)  # not pinned: the local URL is not what Twilio signed
    assert not provider.verify_webhook(request).ok
    provider.set_webhook_url(TUNNEL, pinned=True)
    assert provider.verify_webhook(request).ok
    await provider.close()


async def test_plivo_verifies_over_the_pinned_tunnel_url(tmp_path: Path) -> None:
    config = parse_config(
        {
            "provider": "plivo",
            "fromNumber": "+15550001234",
            "plivo": {"authId": "MA" + "0" * 18, "authToken": TOKEN},
        },
        env={},
    )
    provider = build_plivo(config, FakeClock(), tmp_path)
    params = {"CallUUID": "u-1", "CallStatus": "ringing", "Direction": "outbound"}
    query = "?callId=abc&flow=answer"
    nonce = "12345678901234567890"
    signature = plivo_sig.sign_v3(TOKEN, TUNNEL + query, params, nonce)
    headers = {"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": nonce}
    request = _request(LOCAL + query, headers, urlencode(params).encode())
    provider.set_webhook_url(LOCAL)
    assert not provider.verify_webhook(request).ok
    provider.set_webhook_url(TUNNEL, pinned=True)
    assert provider.verify_webhook(request).ok
    await provider.close()
