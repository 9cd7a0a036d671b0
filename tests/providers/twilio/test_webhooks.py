"""Twilio webhook verification and parsing, without a network.

The official SDK's RequestValidator signs 1,000 generated URLs and parameter sets: the
provider accepts every one and rejects any changed byte. Arbitrary bodies never raise
anything but WebhookError. The status map, speech, digits, AMD and inbound cases are tables.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from voice_call.clock import RealClock
from voice_call.config import Config, parse_config
from voice_call.models import CallState, Direction, EventType
from voice_call.providers.base import WebhookError, WebhookRequest
from voice_call.providers.twilio.provider import TwilioProvider
from voice_call.providers.twilio.webhooks import parse, read_hook
from voice_call.security.signatures.twilio import compute_signature, json_signed_url

TOKEN = "webhook-unit-token-9876543210"
SID = "CA" + "ab" * 16
PUBLIC = "https://voice.example.com/voice/webhook"
FORM = "application/x-www-form-urlencoded"


def config(**extra: Any) -> Config:
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": "+15550001000",
        "twilio": {"accountSid": "AC" + "1" * 32, "authToken": TOKEN},
    }
    raw.update(extra)
    return parse_config(raw, env={})


def provider(**extra: Any) -> TwilioProvider:
    return TwilioProvider(config(**extra), RealClock())


def form_request(
    url: str,
    params: dict[str, str],
    signature: str | None,
    headers: dict[str, str] | None = None,
    remote: str = "203.0.113.9",
) -> WebhookRequest:
    all_headers = {"content-type": FORM, **(headers or {})}
    if signature is not None:
        all_headers["x-twilio-signature"] = signature
    return WebhookRequest("POST", url, all_headers, urlencode(params).encode(), remote)


# ---------------------------------------------------------------------------- signatures

_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_value = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = ".".join(draw(st.lists(_label, min_size=1, max_size=3)))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    path = "/".join(draw(st.lists(st.from_regex(r"[A-Za-z0-9_.~-]{1,8}", fullmatch=True))))
    query = draw(st.dictionaries(st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True), _value))
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}/{path}" + (f"?{urlencode(query)}" if query else "")


def _mutate(text: str, index: int, char: str) -> str:
    index %= len(text)
    if text[index] == char:
        char = "b" if char != "b" else "c"
    return text[:index] + char + text[index + 1 :]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    url=urls(),
    params=st.dictionaries(_name, _value, max_size=8),
    where=st.sampled_from(["url", "name", "value", "signature"]),
    index=st.integers(0, 10_000),
    char=st.characters(codec="utf-8", exclude_categories=("Cs",)),
)
def test_sdk_signed_requests_pass_and_any_changed_byte_fails(
    url: str, params: dict[str, str], where: str, index: int, char: str
) -> None:
    twilio = PROVIDER
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    assert twilio.verify_webhook(form_request(url, params, signature)).ok
    if where in ("name", "value") and not params:
        where = "url"
    if where == "url":
        # after the scheme, which URLs spell in any case (it is not a byte Twilio signs apart)
        start = url.index("://") + 3
        url = url[:start] + _mutate(url[start:], index, char)
    elif where == "signature":
        signature = _mutate(signature, index, char)
    else:
        name = sorted(params)[index % len(params)]
        if where == "name":
            renamed = _mutate(name, index, char)
            params = {(renamed if k == name else k): v for k, v in params.items()}
        else:
            params[name] = _mutate(params[name], index, char) if params[name] else char
    assert not twilio.verify_webhook(form_request(url, params, signature)).ok


PROVIDER = provider()


def test_public_url_pins_the_verified_host_and_path() -> None:
    twilio = provider(publicUrl=PUBLIC)
    params = {"CallSid": SID, "CallStatus": "ringing"}
    signed_url = f"{PUBLIC}?type=status&callId=abc"
    signature = compute_signature(TOKEN, signed_url, params)
    # Behind a proxy the request reaches us at another host and path: the query is what counts
    local = "http://10.0.0.5:3334/internal/hook?type=status&callId=abc"
    assert twilio.verify_webhook(form_request(local, params, signature)).ok
    other = compute_signature(TOKEN, signed_url.replace("voice.example.com", "evil.test"), params)
    result = twilio.verify_webhook(form_request(local, params, other))
    assert not result.ok
    assert result.reason == (
        "invalid X-Twilio-Signature for https://voice.example.com/voice/webhook?type=***&callId=***"
    )


def test_forwarding_headers_count_only_when_trusted() -> None:
    params = {"CallSid": SID}
    public = "https://calls.example.org/voice/webhook?type=voice"
    signature = compute_signature(TOKEN, public, params)
    local = "http://127.0.0.1:3334/voice/webhook?type=voice"
    forwarded = {"x-forwarded-host": "calls.example.org", "x-forwarded-proto": "https"}
    assert not provider().verify_webhook(form_request(local, params, signature, forwarded)).ok
    trusting = provider(webhookSecurity={"allowedHosts": ["calls.example.org"]})
    assert trusting.verify_webhook(form_request(local, params, signature, forwarded)).ok
    proxied = provider(
        webhookSecurity={"trustForwardingHeaders": True, "trustedProxyIPs": ["10.0.0.1"]}
    )
    assert not proxied.verify_webhook(form_request(local, params, signature, forwarded)).ok
    assert proxied.verify_webhook(
        form_request(local, params, signature, forwarded, remote="10.0.0.1")
    ).ok
    # what the config's refusal of allowNgrokFreeTierLoopbackBypass suggests instead
    ngrok = provider(
        webhookSecurity={"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]}
    )
    assert ngrok.verify_webhook(form_request(local, params, signature, forwarded, "127.0.0.1")).ok
    assert not ngrok.verify_webhook(form_request(local, params, signature, forwarded)).ok


def test_port_variants_accept_what_twilio_signs() -> None:
    twilio = provider()
    params = {"CallSid": SID}
    portless = compute_signature(TOKEN, "https://voice.example.com/hook", params)
    request = form_request("https://voice.example.com:8443/hook", params, portless)
    assert twilio.verify_webhook(request).ok  # Twilio signed without the port (seed #6334)
    with_default = compute_signature(TOKEN, "https://voice.example.com:443/hook", params)
    assert twilio.verify_webhook(
        form_request("https://voice.example.com/hook", params, with_default)
    ).ok


def test_json_body_is_checked_through_its_hash() -> None:
    twilio = provider()
    body = json.dumps({"CallSid": SID, "CallStatus": "completed"})
    url = json_signed_url("https://voice.example.com/hook?type=status", body)
    signature = compute_signature(TOKEN, url, None)
    headers = {"content-type": "application/json", "x-twilio-signature": signature}
    request = WebhookRequest("POST", url, headers, body.encode())
    assert twilio.verify_webhook(request).ok
    tampered = WebhookRequest("POST", url, headers, body.replace("completed", "busy").encode())
    assert not twilio.verify_webhook(tampered).ok
    events = twilio.parse_webhook(request, "k").events
    assert [(e.type, e.reason) for e in events] == [(EventType.ENDED, CallState.COMPLETED)]


def test_get_requests_are_signed_over_the_url_alone() -> None:
    twilio = provider()
    url = f"https://voice.example.com/hook?CallSid={SID}&CallStatus=ringing&Direction=inbound"
    headers = {"x-twilio-signature": compute_signature(TOKEN, url)}
    request = WebhookRequest("GET", url, headers, b"")
    assert twilio.verify_webhook(request).ok
    [event] = twilio.parse_webhook(request, "k").events
    assert event.type == EventType.INITIATED and event.direction == Direction.INBOUND


def test_missing_token_or_signature_fails_closed() -> None:
    twilio = provider()
    twilio.auth_token = ""
    params = {"CallSid": SID}
    signature = compute_signature(TOKEN, PUBLIC, params)
    assert twilio.verify_webhook(form_request(PUBLIC, params, signature)).reason == (
        "twilio.authToken is not configured"
    )
    assert not provider().verify_webhook(form_request(PUBLIC, params, None)).ok


def test_request_keys_are_stable_per_delivery_and_distinct_per_request() -> None:
    twilio = provider()
    params = {"CallSid": SID, "SpeechResult": "yes"}
    first = f"{PUBLIC}?type=gather&n=1"
    second = f"{PUBLIC}?type=gather&n=2"
    key = twilio.verify_webhook(
        form_request(first, params, compute_signature(TOKEN, first, params))
    ).request_key
    again = twilio.verify_webhook(
        form_request(first, params, compute_signature(TOKEN, first, params))
    ).request_key
    other = twilio.verify_webhook(
        form_request(second, params, compute_signature(TOKEN, second, params))
    ).request_key
    assert key == again and key != other and key is not None and key.startswith("twilio:")


# ---------------------------------------------------------------------------- parsing


def parsed(url: str, **params: str) -> list[tuple[Any, ...]]:
    result = parse(form_request(url, {"CallSid": SID, **params}, None), "key")
    assert all(e.provider_call_id == SID for e in result.events)
    assert [e.dedupe_key for e in result.events] == [f"key:{i}" for i in range(len(result.events))]
    return [(e.type, e.reason) for e in result.events]


@pytest.mark.parametrize(
    ("status", "flow", "expected"),
    [
        ("initiated", None, [(EventType.INITIATED, None)]),
        ("queued", None, [(EventType.INITIATED, None)]),
        ("ringing", None, [(EventType.RINGING, None)]),
        ("in-progress", None, []),  # learnt from the Url request instead
        ("in-progress", "inline", [(EventType.ANSWERED, None)]),
        ("completed", None, [(EventType.ENDED, CallState.COMPLETED)]),
        ("busy", None, [(EventType.ENDED, CallState.BUSY)]),
        ("no-answer", None, [(EventType.ENDED, CallState.NO_ANSWER)]),
        ("failed", None, [(EventType.ENDED, CallState.FAILED)]),
        ("canceled", None, [(EventType.ENDED, CallState.HANGUP_BOT)]),
        ("weird", None, []),
    ],
)
def test_status_callbacks(status: str, flow: str | None, expected: list[Any]) -> None:
    url = f"{PUBLIC}?type=status&callId=c1" + (f"&flow={flow}" if flow else "")
    assert parsed(url, CallStatus=status) == expected


def test_speech_digits_and_silence_from_a_gather() -> None:
    url = f"{PUBLIC}?type=gather&callId=c1&turnToken=t1"
    result = parse(
        form_request(
            url, {"CallSid": SID, "SpeechResult": "  yes\n please ", "Confidence": "x"}, None
        ),
        None,
    )
    [speech] = result.events
    assert speech.transcript == "yes please" and speech.is_final and speech.confidence == 0.9
    assert speech.turn_token == "t1" and speech.call_id == "c1" and speech.dedupe_key is None
    assert parsed(url, SpeechResult="ok", Confidence="0.42") == [(EventType.SPEECH, None)]
    assert parsed(url, Digits="12#") == [(EventType.DTMF, None)]
    assert parsed(url, SpeechResult="  ") == [(EventType.SILENCE, None)]


def test_voice_requests_answer_and_machines_are_voicemail() -> None:
    url = f"{PUBLIC}?type=voice&callId=c1"
    assert parsed(url, CallStatus="in-progress") == [(EventType.ANSWERED, None)]
    assert parsed(url, CallStatus="in-progress", AnsweredBy="machine_start") == [
        (EventType.ENDED, CallState.VOICEMAIL)
    ]
    assert parsed(url, CallStatus="in-progress", AnsweredBy="human") == [(EventType.ANSWERED, None)]
    assert parsed(f"{PUBLIC}?type=reprompt", CallStatus="in-progress") == [
        (EventType.SILENCE, None)
    ]


def test_inbound_voice_url_request_is_a_new_inbound_call() -> None:
    request = form_request(
        PUBLIC,
        {
            "CallSid": SID,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": "+15550003000",
            "To": "+15550001000",
        },
        None,
    )
    [event] = parse(request, "k").events
    assert event.type == EventType.INITIATED and event.direction == Direction.INBOUND
    assert event.from_number == "+15550003000" and event.to_number == "+15550001000"
    assert event.call_id is None
    # its completed status callback (same URL, no type of ours) is an end, never a new call
    [ended] = parse(
        form_request(
            PUBLIC, {"CallSid": SID, "CallStatus": "completed", "Direction": "inbound"}, None
        ),
        "k",
    ).events
    assert ended.type == EventType.ENDED and ended.direction is None
    assert read_hook(request).kind == "inbound"


@pytest.mark.parametrize(
    ("url", "params", "message"),
    [
        (PUBLIC, {"CallStatus": "ringing"}, "CallSid is missing"),
        (f"{PUBLIC}?callId={'x' * 200}", {"CallSid": SID}, "callId is longer"),
        (PUBLIC, {"CallSid": "C" * 300}, "CallSid is longer"),
    ],
)
def test_malformed_requests_are_webhook_errors(
    url: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(WebhookError, match=message):
        parse(form_request(url, params, None), "k")


@settings(max_examples=400, deadline=None)
@given(
    body=st.binary(max_size=400),
    query=st.text(max_size=80),
    method=st.sampled_from(["POST", "GET"]),
    ctype=st.sampled_from([FORM, "application/json", "text/plain", ""]),
)
def test_arbitrary_requests_only_ever_raise_webhook_error(
    body: bytes, query: str, method: str, ctype: str
) -> None:
    request = WebhookRequest(
        method,
        f"{PUBLIC}?{query}",
        {"content-type": ctype, "x-twilio-signature": "AAAA"},
        body,
        "198.51.100.7",
    )
    assert not PROVIDER.verify_webhook(request).ok
    try:
        result = PROVIDER.parse_webhook(request, "key")
    except WebhookError:
        return
    reply = PROVIDER.webhook_response(request, result, ["applied"] * len(result.events))
    assert reply.body.startswith("<?xml")


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "CallSid",
                "CallStatus",
                "Direction",
                "From",
                "To",
                "SpeechResult",
                "Confidence",
                "Digits",
                "AnsweredBy",
                "CallbackSource",
            ]
        ),
        st.text(max_size=300),
    ),
    kind=st.sampled_from(["", "status", "voice", "gather", "hold", "listen", "answered", "x"]),
)
def test_arbitrary_twilio_fields_parse_or_fail_cleanly(params: dict[str, str], kind: str) -> None:
    url = f"{PUBLIC}?type={kind}&callId=c1&turnToken=t"
    with contextlib.suppress(WebhookError):
        parse(form_request(url, params, None), "key")
