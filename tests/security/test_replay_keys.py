"""Replay and dedupe keys name what a carrier's signature covers, nothing more, nothing less:
every variant a signature still verifies is the same key; a different request is another."""

from __future__ import annotations

from urllib.parse import urlencode

from voice_call.providers.base import WebhookRequest
from voice_call.providers.plivo import webhooks as plivo_webhooks
from voice_call.providers.twilio import webhooks as twilio_webhooks
from voice_call.security.public_url import ForwardingTrust
from voice_call.security.signatures import plivo as plivo_signatures
from voice_call.security.signatures import twilio as twilio_signatures

TOKEN = "12345"
URL = "https://voice.example.com/voice/webhook?type=gather&callId=c1&n=ab12"
PARAMS = {"CallSid": "CA1", "SpeechResult": "yes please", "Digits": "12"}


def _twilio(url: str, body: bytes, signature: str, host: str | None = None) -> str | None:
    request = WebhookRequest(
        method="POST",
        url=url,
        headers={
            "x-twilio-signature": signature,
            "content-type": "application/x-www-form-urlencoded",
            **({"host": host} if host else {}),
        },
        body=body,
    )
    verdict = twilio_webhooks.verify(request, TOKEN, public_url=None, trust=ForwardingTrust())
    return verdict.request_key if verdict.ok else None


def test_twilio_variants_with_the_same_signature_share_the_key() -> None:
    signature = twilio_signatures.compute_signature(TOKEN, URL, PARAMS)
    body = urlencode(PARAMS)
    key = _twilio(URL, body.encode(), signature)
    assert key is not None
    variants = [
        f"{body}&=",  # an empty pair signs nothing
        f"{body}&&",  # empty fields are skipped
        f"{body}&CallSid=CA1",  # a repeated pair: the signature covers a set
        urlencode(dict(reversed(PARAMS.items()))),  # the pairs sorted before signing
        body.replace("Digits=12", "Digits1=2"),  # names and values concatenated unseparated
    ]
    for variant in variants:
        assert _twilio(URL, variant.encode(), signature) == key, variant
    with_port = URL.replace("example.com/", "example.com:443/")  # Twilio's port leniency
    assert _twilio(with_port, body.encode(), signature) == key


def test_twilio_another_request_is_another_key() -> None:
    other_params = dict(PARAMS, SpeechResult="no thanks")
    other_url = URL.replace("n=ab12", "n=cd34")
    keys = {
        _twilio(
            URL, urlencode(PARAMS).encode(), twilio_signatures.compute_signature(TOKEN, URL, PARAMS)
        ),
        _twilio(
            URL,
            urlencode(other_params).encode(),
            twilio_signatures.compute_signature(TOKEN, URL, other_params),
        ),
        _twilio(
            other_url,
            urlencode(PARAMS).encode(),
            twilio_signatures.compute_signature(TOKEN, other_url, PARAMS),
        ),
    }
    assert None not in keys and len(keys) == 3


def test_twilio_signed_string_is_the_string_that_matched() -> None:
    bare = "https://h.example/hook"
    signature = twilio_signatures.compute_signature(TOKEN, bare, PARAMS)
    pairs = list(PARAMS.items())
    for url in (bare, "https://h.example:443/hook"):
        signed = twilio_signatures.signed_form_string(TOKEN, url, pairs, signature)
        assert signed == twilio_signatures.signing_string(bare, PARAMS)
    assert twilio_signatures.signed_form_string(TOKEN, bare, pairs, "bm90LWl0") is None


PLIVO_URL = "https://voice.example.com/voice/webhook?provider=plivo&flow=input&callId=c1&n=ab12"
PLIVO_PARAMS = {"CallUUID": "u-1", "CallStatus": "in-progress", "Speech": "yes"}


def _plivo(params: dict[str, str], nonce: str, header: str = "X-Plivo-Signature-V3") -> str | None:
    signature = plivo_signatures.sign_v3(TOKEN, PLIVO_URL, params, nonce)
    request = WebhookRequest(
        method="POST",
        url=PLIVO_URL,
        headers={header.lower(): signature, "x-plivo-signature-v3-nonce": nonce},
        body=urlencode(params).encode(),
    )
    verdict = plivo_webhooks.verify(request, TOKEN, PLIVO_URL)
    return verdict.request_key if verdict.ok else None


def test_plivo_retries_with_new_nonces_share_the_key() -> None:
    key = _plivo(PLIVO_PARAMS, "11111111111111111111")
    assert key is not None and key.startswith("plivo:v3:")
    assert _plivo(PLIVO_PARAMS, "22222222222222222222") == key
    assert _plivo(PLIVO_PARAMS, "33333333333333333333", "X-Plivo-Signature-Ma-V3") == key
    other = _plivo(dict(PLIVO_PARAMS, Speech="no"), "11111111111111111111")
    assert other is not None and other != key


def test_plivo_incomplete_v3_never_falls_back_to_v2() -> None:
    nonce = "44444444444444444444"
    request = WebhookRequest(
        method="POST",
        url=PLIVO_URL,
        headers={
            "x-plivo-signature-v3": "bm90LWl0",  # without its nonce
            "x-plivo-signature-v2": plivo_signatures.sign_v2(TOKEN, PLIVO_URL, nonce),
            "x-plivo-signature-v2-nonce": nonce,
        },
        body=urlencode(PLIVO_PARAMS).encode(),
    )
    for allow_v2 in (False, True):
        verdict = plivo_webhooks.verify(request, TOKEN, PLIVO_URL, allow_v2=allow_v2)
        assert not verdict.ok and "V3" in verdict.reason
