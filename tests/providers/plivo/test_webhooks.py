"""Plivo callbacks as units: signatures (official vectors, the official SDK), parsing, replies."""

from __future__ import annotations

import contextlib
import string
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.models import CallState, Direction, EventType
from voice_call.providers.base import WebhookError, WebhookRequest
from voice_call.providers.plivo.provider import PlivoProvider, build
from voice_call.providers.plivo.replies import PlivoWebhookResult
from voice_call.providers.plivo.urls import Callback, Flow, callback_url
from voice_call.providers.plivo.webhooks import form_fields
from voice_call.security.signatures import plivo as signatures

TOKEN = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4"  # the official V3 vector's token
HOOK = "https://voice.example.com/voice/webhook"


def provider(token: str = TOKEN, **overrides: Any) -> PlivoProvider:
    raw = {
        "provider": "plivo",
        "fromNumber": "+15550001000",
        "plivo": {"authId": "MAPLIVOPROVIDER00001", "authToken": token},
        **overrides,
    }
    built = build(parse_config(raw, env={}), RealClock(), Path("/tmp"))
    built.set_webhook_url(HOOK)
    return built


PROVIDER = provider()


def request(
    url: str, params: dict[str, str] | bytes, headers: dict[str, str] | None = None
) -> WebhookRequest:
    body = params if isinstance(params, bytes) else urlencode(params).encode()
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return WebhookRequest(method="POST", url=url, headers=lowered, body=body)


def v3_headers(
    url: str, params: dict[str, str], nonce: str = "1234", token: str = TOKEN
) -> dict[str, str]:
    return {
        "X-Plivo-Signature-V3": signatures.sign_v3(token, url, params, nonce),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


def parse(flow: str | None, params: dict[str, str], **query: str) -> PlivoWebhookResult:
    url = callback_url(HOOK, Callback(flow=flow, **query)) if flow or query else HOOK
    result = PROVIDER.parse_webhook(request(url, params), "key")
    assert isinstance(result, PlivoWebhookResult)
    return result


# --- verification ----------------------------------------------------------------------------

V3_PARAMS = {
    "Direction": "outbound",
    "From": "19792014278",
    "ALegUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallStatus": "in-progress",
    "BillRate": "0.002",
    "ParentAuthID": "MANWVLYTK4ZWU1YTY4QA",
    "To": "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
    "ALegRequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "RequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "SIP-H-To": "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
    "SessionStart": "2020-04-08 11:34:33.238707",
    "Event": "StartApp",
}
VECTOR_URL = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{VECTOR_URL}/?a=b&c=d", "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c="),
        (VECTOR_URL, "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0="),
    ],
)
def test_official_v3_post_vectors_verify(url: str, expected: str) -> None:
    headers = {
        "X-Plivo-Signature-V3": expected,
        "X-Plivo-Signature-V3-Nonce": "31627761595286130198",
    }
    verdict = PROVIDER.verify_webhook(request(url, V3_PARAMS, headers))
    assert verdict.ok and verdict.request_key and verdict.request_key.startswith("plivo:v3:")
    tampered = dict(V3_PARAMS, BillRate="0.003")
    assert not PROVIDER.verify_webhook(request(url, tampered, headers)).ok


def test_official_v2_vector_verifies() -> None:
    headers = {
        "X-Plivo-Signature-V2": "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc=",
        "X-Plivo-Signature-V2-Nonce": "12345",
    }
    # V2 covers only scheme://host/path + nonce: refused unless opted in, and then only for a
    # callback that applies nothing (here one naming no flow and carrying no event).
    nothing = {"CallUUID": "u-1"}
    refused = provider("my_auth_token").verify_webhook(
        request("https://answer.url", nothing, headers)
    )
    assert not refused.ok and "allowV2Signatures" in refused.reason
    opted_in = provider("my_auth_token", plivo=v2_opt_in("my_auth_token"))
    assert opted_in.verify_webhook(request("https://answer.url", nothing, headers)).ok
    wrong_token = provider("my_auth_tokens", plivo=v2_opt_in("my_auth_tokens"))
    assert not wrong_token.verify_webhook(request("https://answer.url", nothing, headers)).ok
    applies = {"CallUUID": "u-1", "CallStatus": "completed"}  # a hang-up: needs V3
    verdict = opted_in.verify_webhook(request("https://answer.url", applies, headers))
    assert not verdict.ok and "needs V3" in verdict.reason


def v2_opt_in(token: str) -> dict[str, Any]:
    return {"authId": "MAPLIVOPROVIDER00001", "authToken": token, "allowV2Signatures": True}


def test_signature_forms_and_request_keys() -> None:
    url = f"{HOOK}?flow=answer&callId=abc"
    params = {"CallUUID": "u-1", "CallStatus": "in-progress"}
    headers = v3_headers(url, params)
    first = PROVIDER.verify_webhook(request(url, params, headers))
    assert first.ok
    # Canonicalised base64: no padding, URL-safe alphabet, spaces: still the same digest.
    sig = headers["X-Plivo-Signature-V3"]
    for variant in (sig.rstrip("="), sig.replace("+", "-").replace("/", "_"), f" {sig} "):
        same = PROVIDER.verify_webhook(
            request(url, params, dict(headers, **{"X-Plivo-Signature-V3": variant}))
        )
        assert same.ok and same.request_key == first.request_key
    # Another nonce is Plivo's retry of the same callback (the same key: applied once); another
    # callback (a changed body, our URLs' `n`) is another key; a changed query is refused.
    again = PROVIDER.verify_webhook(request(url, params, v3_headers(url, params, "5678")))
    assert again.ok and again.request_key == first.request_key
    other_params = dict(params, CallStatus="completed")
    other = PROVIDER.verify_webhook(request(url, other_params, v3_headers(url, other_params)))
    assert other.ok and other.request_key != first.request_key
    moved = f"{HOOK}?flow=answer&callId=abd"
    refused = PROVIDER.verify_webhook(request(moved, params, headers))
    assert not refused.ok and "callId=***" in refused.reason and "abd" not in refused.reason
    missing = PROVIDER.verify_webhook(request(url, params, {}))
    assert not missing.ok and "missing" in missing.reason


def test_public_url_pins_what_is_verified() -> None:
    pinned = provider(publicUrl="https://public.example.net/hooks/plivo")
    public = "https://public.example.net/hooks/plivo?flow=ring&callId=c1"
    params = {"CallUUID": "u-1", "CallStatus": "ringing"}
    local = WebhookRequest(
        method="POST",
        url="http://127.0.0.1:3334/voice/webhook?flow=ring&callId=c1",
        headers={k.lower(): v for k, v in v3_headers(public, params).items()},
        body=urlencode(params).encode(),
    )
    assert pinned.verify_webhook(local).ok
    assert not PROVIDER.verify_webhook(local).ok


_key = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
_value = st.text(st.characters(exclude_categories=["Cs"]), max_size=16)
_ascii = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.lists(_key, max_size=3),
    query=st.dictionaries(_key, _ascii, max_size=3),
    params=st.dictionaries(_key, _value, max_size=8),
    nonce=st.text(string.digits, min_size=1, max_size=20),
    data=st.data(),
)
def test_requests_signed_by_the_official_sdk_verify(
    path: list[str], query: dict[str, str], params: dict[str, str], nonce: str, data: Any
) -> None:
    url = f"https://app.example.com/{'/'.join(path)}" + (f"?{urlencode(query)}" if query else "")
    base = construct_post_url(url, dict(params)).decode("utf-8")
    signature = get_signature_v3(TOKEN.encode(), base, nonce.encode()).decode()
    headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
    body = urlencode(params).encode()
    assert PROVIDER.verify_webhook(request(url, body, headers)).ok
    if not body:
        return
    at = data.draw(st.integers(0, len(body) - 1))
    byte = data.draw(st.sampled_from(b"aZ7").filter(lambda b: b != body[at]))
    changed = body[:at] + bytes([byte]) + body[at + 1 :]
    try:
        same = form_fields(changed) == form_fields(body)
    except WebhookError:
        same = False
    assume(not same)
    assert not PROVIDER.verify_webhook(request(url, changed, headers)).ok


# --- parsing ---------------------------------------------------------------------------------


def test_outbound_callbacks_become_events_matched_by_our_call_id() -> None:
    base = {"CallUUID": "call-1", "RequestUUID": "req-1", "Direction": "outbound"}
    ring = parse(Flow.RING, dict(base, CallStatus="ringing", Event="Ring"), call_id="c1")
    assert [(e.type, e.call_id, e.provider_call_id) for e in ring.events] == [
        (EventType.RINGING, "c1", "call-1")
    ]
    assert ring.events[0].dedupe_key == "key:0"
    answer = parse(
        Flow.ANSWER, dict(base, CallStatus="in-progress", Event="StartApp"), call_id="c1"
    )
    assert [e.type for e in answer.events] == [EventType.ANSWERED]
    assert [c.tag for c in ET.fromstring(answer.body)] == ["Wait", "Redirect"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {"CallStatus": "completed", "HangupCause": "NORMAL_CLEARING", "HangupSource": "Callee"},
            CallState.HANGUP_USER,
        ),
        ({"CallStatus": "completed", "HangupSource": "Caller"}, CallState.HANGUP_USER),
        ({"CallStatus": "completed", "HangupSource": "API Request"}, CallState.HANGUP_BOT),
        ({"CallStatus": "completed", "HangupSource": "Answer XML"}, CallState.HANGUP_BOT),
        ({"CallStatus": "completed", "HangupSource": "Plivo"}, CallState.COMPLETED),
        ({"CallStatus": "busy", "HangupCause": "USER_BUSY"}, CallState.BUSY),
        ({"CallStatus": "no-answer", "HangupCause": "NO_ANSWER"}, CallState.NO_ANSWER),
        ({"CallStatus": "timeout"}, CallState.NO_ANSWER),
        ({"CallStatus": "failed"}, CallState.FAILED),
        ({"CallStatus": "cancel", "HangupSource": "API Request"}, CallState.HANGUP_BOT),
        ({"CallStatus": "cancel", "HangupSource": "Plivo"}, CallState.NO_ANSWER),
        ({"CallStatus": "machine"}, CallState.VOICEMAIL),
    ],
)
def test_hangup_causes(fields: dict[str, str], reason: CallState) -> None:
    result = parse(Flow.HANGUP, dict(fields, CallUUID="call-1", Event="Hangup"), call_id="c1")
    assert [(e.type, e.reason) for e in result.events] == [(EventType.ENDED, reason)]
    assert ET.fromstring(result.body).tag == "Response" and len(ET.fromstring(result.body)) == 0


def test_getinput_speech_digits_and_silence() -> None:
    fields = {"CallUUID": "call-1", "CallStatus": "in-progress", "InputType": "speech"}
    heard = parse(
        Flow.INPUT,
        dict(fields, Speech="  I have a question ", SpeechConfidenceScore="0.92", Digits=""),
        call_id="c1",
        turn_token="t1",
    )
    (speech,) = heard.events
    assert (speech.type, speech.transcript, speech.confidence, speech.turn_token) == (
        EventType.SPEECH,
        "I have a question",
        0.92,
        "t1",
    )
    assert [c.tag for c in ET.fromstring(heard.body)] == ["Wait", "Redirect"]
    keys = parse(Flow.INPUT, dict(fields, InputType="dtmf", Digits="12#x"), call_id="c1")
    assert [(e.type, e.digits) for e in keys.events] == [(EventType.DTMF, "12#")]
    nothing = parse(Flow.INPUT, dict(fields, Speech=""), call_id="c1", turn_token="t1")
    assert [e.type for e in nothing.events] == [EventType.SILENCE]
    again = ET.fromstring(nothing.body)
    assert [c.tag for c in again] == ["GetInput", "Redirect"]  # listen again, same turn
    assert "turnToken=t1" in again[0].attrib["action"]
    last_words = parse(
        Flow.INPUT,
        dict(fields, Speech="bye", CallStatus="completed", HangupSource="Caller"),
        call_id="c1",
    )
    assert [e.type for e in last_words.events] == [EventType.SPEECH, EventType.ENDED]
    odd = parse(Flow.INPUT, dict(fields, Speech="hi", SpeechConfidenceScore="nan"), call_id="c1")
    assert odd.events[0].confidence is None


def test_inbound_answer_reply_follows_the_policy() -> None:
    fields = {
        "CallUUID": "in-1",
        "From": "15550003000",
        "To": "15550001000",
        "Direction": "inbound",
        "CallStatus": "ringing",
        "Event": "StartApp",
    }
    req = request(HOOK, fields)
    result = PROVIDER.parse_webhook(req, "key")
    (event,) = result.events
    assert (event.type, event.direction, event.from_number, event.to_number, event.call_id) == (
        EventType.RINGING,
        Direction.INBOUND,
        "+15550003000",
        "+15550001000",
        None,
    )
    accepted = ET.fromstring(PROVIDER.webhook_response(req, result, ["accepted"]).body)
    assert [c.tag for c in accepted] == ["Redirect"] and "flow=answered" in str(accepted[0].text)
    result = PROVIDER.parse_webhook(req, "key")
    refused = ET.fromstring(PROVIDER.webhook_response(req, result, ["rejected: no"]).body)
    assert [(c.tag, c.attrib) for c in refused] == [("Hangup", {"reason": "rejected"})]


def test_a_call_we_no_longer_track_is_hung_up_not_kept_alive() -> None:
    fields = {"CallUUID": "call-1", "CallStatus": "in-progress"}
    url = callback_url(HOOK, Callback(flow=Flow.KEEPALIVE, call_id="c1"))
    req = request(url, fields)
    for outcome in ("ignored: call already ended", "unknown-call"):
        result = PROVIDER.parse_webhook(req, "key")
        reply = ET.fromstring(PROVIDER.webhook_response(req, result, [outcome]).body)
        assert [c.tag for c in reply] == ["Hangup"]
    kept = PROVIDER.webhook_response(req, PROVIDER.parse_webhook(req, "key"), ["applied"])
    assert [c.tag for c in ET.fromstring(kept.body)] == ["Wait", "Redirect"]


def test_transfer_targets_rebuild_their_xml_from_the_url_alone() -> None:
    fields = {"CallUUID": "call-1", "CallStatus": "in-progress", "Event": "Transfer"}
    speak = parse(
        Flow.SPEAK, fields, call_id="c1", say="Ready <now> & then", voice="MAN", language="fr-FR"
    )
    assert speak.events == []
    root = ET.fromstring(speak.body)
    assert [c.tag for c in root] == ["Wait", "Speak", "Redirect"]
    assert root[1].text == "Ready <now> & then" and root[1].attrib == {
        "voice": "MAN",
        "language": "fr-FR",
    }
    assert "flow=spoken" in str(root[2].text)
    listen = ET.fromstring(
        parse(Flow.LISTEN, fields, call_id="c1", turn_token="t9", say="Your name?").body
    )
    get_input = listen[0]
    assert get_input.attrib["inputType"] == "speech" and get_input.attrib["redirect"] == "true"
    assert (
        get_input.attrib["executionTimeout"] == "60" and get_input.attrib["speechEndTimeout"] == "2"
    )
    assert [c.text for c in get_input] == ["Your name?"]
    assert "flow=relisten" in str(listen[1].text) and "say=" not in str(listen[1].text)
    spoken = parse(Flow.SPOKEN, fields, call_id="c1")
    assert [e.type for e in spoken.events] == [EventType.PLAYBACK_ENDED]
    assert [c.tag for c in ET.fromstring(spoken.body)] == ["Wait", "Redirect"]  # notify: wait
    talking = parse(Flow.SPOKEN, fields, call_id="c1", then="listen")
    assert [c.tag for c in ET.fromstring(talking.body)] == ["GetInput", "Redirect"]
    talk = ET.fromstring(parse(Flow.SPEAK, fields, call_id="c1", say="Hi", then="listen").body)
    assert "then=listen" in str(talk[2].text)


@pytest.mark.parametrize(
    ("url", "body", "match"),
    [
        (HOOK, b"\xff\xfe", "UTF-8"),
        (f"{HOOK}?flow=teleport&callId=c1", b"CallUUID=x", "unknown flow"),
        (f"{HOOK}?flow=speak&callId=c1&say=%%%", b"CallUUID=x", "say"),
        (f"{HOOK}?flow=ring&callId={'x' * 200}", b"CallUUID=x", "callId"),
        (f"{HOOK}?flow=ring", b"CallStatus=ringing", "CallUUID"),
        (HOOK, "&".join(f"k{i}=v" for i in range(300)).encode(), "fields"),
        (f"{HOOK}?flow=ring&callId=c1", f"CallUUID={'u' * 300}".encode(), "provider_call_id"),
    ],
)
def test_malformed_callbacks_are_webhook_errors(url: str, body: bytes, match: str) -> None:
    with pytest.raises(WebhookError, match=match):
        PROVIDER.parse_webhook(request(url, body), "key")


_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "CallUUID",
            "ALegUUID",
            "CallStatus",
            "Direction",
            "From",
            "To",
            "Event",
            "HangupCause",
            "HangupSource",
            "Speech",
            "SpeechConfidenceScore",
            "Digits",
            "Text",
        ]
    ),
    st.text(max_size=80),
)
_QUERY = st.dictionaries(
    st.sampled_from(["flow", "callId", "turnToken", "say", "voice", "lang", "then", "provider"]),
    st.one_of(
        st.sampled_from([f for f in vars(Flow).values() if isinstance(f, str)]),
        st.text(max_size=40),
    ),
)


@settings(max_examples=300, deadline=None)
@given(fields=_FIELDS, query=_QUERY, outcomes=st.lists(st.text(max_size=30), max_size=3))
def test_any_callback_parses_or_is_a_webhook_error(
    fields: dict[str, str], query: dict[str, str], outcomes: list[str]
) -> None:
    req = request(f"{HOOK}?{urlencode(query)}", fields)
    try:
        result = PROVIDER.parse_webhook(req, "key")
    except WebhookError:
        return
    reply = PROVIDER.webhook_response(req, result, outcomes)
    ET.fromstring(reply.body)  # always a well-formed document


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), query=st.text(max_size=100))
def test_arbitrary_bytes_never_raise_anything_but_webhook_error(body: bytes, query: str) -> None:
    with contextlib.suppress(WebhookError):
        PROVIDER.parse_webhook(request(f"{HOOK}?{query}", body), "key")
