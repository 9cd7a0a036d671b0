"""Telnyx webhook verification and parsing: vectors, every mapping, and hostile bodies."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.models import CallState, Direction, EventType
from voice_call.providers.base import WebhookError, WebhookRequest
from voice_call.providers.telnyx import webhooks as hooks
from voice_call.security.signatures import telnyx as signatures

# docs/carriers.md §5.3: X1 (telnyx-php's fixed key pair) and X4 (a vector derived from it).
X1_PUBLIC = "+7E99DXiiQXvceNX4nHm3Lbm5mqPWad5RhDr2ufuCik="
X1_SECRET = (
    "p68GNpDl9oAQohBiK0MEOFIjxnoFnz0uGGeJqxQ5PSb7sT30NeKJBe9x41ficebctubmao9Zp3lGEOva5+4KKQ=="
)
X4_TIMESTAMP = "1700000000"
X4_BODY = b'{"data":{"event_type":"message.received","id":"test-123"}}'
X4_SIGNATURE = (
    "tMXRZyBL2gkwrgKp6CTDXTO/K+DVq0ZKEFB3tSdfBwqZGC3K/Hr7TCW+jY7RdWrAiKXEckI3tsHEpdz7lS/MDA=="
)
CALL_ID = "6f1c2b9e-4a7d-4e0f-9c3b-2d8e5f7a1b3c"
PID = "v3:abcDEF123_-"


def request(
    body: bytes, timestamp: str | None, signature: str | None, url: str = "https://x/hook"
) -> WebhookRequest:
    headers = {}
    if timestamp is not None:
        headers[signatures.TIMESTAMP_HEADER] = timestamp
    if signature is not None:
        headers[signatures.SIGNATURE_HEADER] = signature
    return WebhookRequest(method="POST", url=url, headers=headers, body=body)


# -- verification ---------------------------------------------------------------------------


def test_x1_key_pair_is_consistent() -> None:
    assert signatures.public_key_b64(X1_SECRET) == X1_PUBLIC


def test_x4_vector_verifies_and_its_variants_do_not() -> None:
    key = signatures.load_public_key(X1_PUBLIC)
    now = 1_700_000_000.0
    ok = hooks.verify(key, request(X4_BODY, X4_TIMESTAMP, X4_SIGNATURE), now=now)
    assert ok.ok and ok.request_key and ok.request_key.startswith("telnyx:")
    assert signatures.sign(X1_SECRET, X4_TIMESTAMP, X4_BODY) == X4_SIGNATURE
    tampered = hooks.verify(key, request(X4_BODY + b" ", X4_TIMESTAMP, X4_SIGNATURE), now=now)
    later = hooks.verify(key, request(X4_BODY, "1700000001", X4_SIGNATURE), now=now)
    assert not tampered.ok and not later.ok
    no_pipe = base64.b64encode(
        signatures.load_private_key(X1_SECRET).sign(X4_TIMESTAMP.encode() + X4_BODY)
    ).decode()
    assert not hooks.verify(key, request(X4_BODY, X4_TIMESTAMP, no_pipe), now=now).ok


def test_base64url_signature_is_the_same_request() -> None:
    key = signatures.load_public_key(X1_PUBLIC)
    url_safe = X4_SIGNATURE.replace("+", "-").replace("/", "_").rstrip("=")
    a = hooks.verify(key, request(X4_BODY, X4_TIMESTAMP, X4_SIGNATURE), now=1_700_000_000)
    b = hooks.verify(key, request(X4_BODY, X4_TIMESTAMP, url_safe), now=1_700_000_000)
    assert a.ok and b.ok and a.request_key == b.request_key


@pytest.mark.parametrize(
    ("skew", "ok"), [(-299, True), (299, True), (-301, False), (301, False), (-400, False)]
)
def test_timestamp_window_is_300_seconds_both_ways(skew: int, ok: bool) -> None:
    key = signatures.load_public_key(X1_PUBLIC)
    now = 1_700_000_000 - skew  # now - timestamp = -skew ... i.e. the request is `skew` s off
    assert hooks.verify(key, request(X4_BODY, X4_TIMESTAMP, X4_SIGNATURE), now=now).ok is ok


def test_no_key_fails_closed_and_the_reason_redacts_the_query() -> None:
    result = hooks.verify(
        None,
        request(X4_BODY, X4_TIMESTAMP, X4_SIGNATURE, url="https://h/hook?token=s3cret"),
        now=1_700_000_000,
    )
    assert not result.ok and "no Telnyx public key" in result.reason
    assert "s3cret" not in result.reason and "token=***" in result.reason
    key = signatures.load_public_key(X1_PUBLIC)
    bad = hooks.verify(key, request(X4_BODY, X4_TIMESTAMP, None, url="https://h/?a=b"), now=0)
    assert not bad.ok and "a=***" in bad.reason


# -- client_state -----------------------------------------------------------------------------


def test_client_state_round_trip() -> None:
    assert hooks.decode_client_state(hooks.encode_client_state(CALL_ID)) == (CALL_ID, None)
    token = "0123abcd" * 4
    assert hooks.decode_client_state(hooks.encode_client_state(CALL_ID, token)) == (CALL_ID, token)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        5,
        "not base64!",
        base64.b64encode(b"has space").decode(),
        base64.b64encode(b"id:").decode(),
        base64.b64encode(b":token").decode(),
        base64.b64encode("é".encode()).decode(),
        base64.urlsafe_b64encode(b"\xfb\xff" + CALL_ID.encode()).decode(),
        base64.b64encode(b"call-12").decode().rstrip("="),  # unpadded: not our exact encoding
        base64.b64encode(b"a" * 200).decode(),
    ],
)
def test_foreign_client_states_name_no_call(value: object) -> None:
    assert hooks.decode_client_state(value) is None


# -- parsing ----------------------------------------------------------------------------------


def body(event_type: str, our_state: str | None = None, **payload: Any) -> bytes:
    data = {
        "record_type": "event",
        "event_type": event_type,
        "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
        "occurred_at": "2024-03-15T07:41:09.931675Z",
        "payload": {
            "call_control_id": PID,
            "client_state": hooks.encode_client_state(CALL_ID) if our_state is None else our_state,
            **payload,
        },
    }
    return json.dumps({"data": data, "meta": {"attempt": 1}}).encode()


def test_outbound_initiated_is_ringing_with_our_call_id() -> None:
    [event] = hooks.parse(body("call.initiated", direction="outgoing", state="bridging"), "k")
    assert event.type == EventType.RINGING
    assert (event.call_id, event.provider_call_id) == (CALL_ID, PID)
    assert event.direction == Direction.OUTBOUND
    assert event.dedupe_key == "telnyx:event:0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"
    assert event.timestamp == pytest.approx(1710488469.931675)


def test_inbound_initiated_carries_numbers_and_no_call_id() -> None:
    raw = json.loads(
        body("call.initiated", direction="incoming", **{"from": "+1555", "to": "+1666"})
    )
    raw["data"]["payload"]["client_state"] = None
    [event] = hooks.parse(json.dumps(raw).encode())
    assert event.type == EventType.INITIATED
    assert event.direction == Direction.INBOUND
    assert event.call_id is None and event.provider_call_id == PID
    assert (event.from_number, event.to_number) == ("+1555", "+1666")


def test_inbound_from_a_long_sip_uri_is_kept_out_rather_than_refused() -> None:
    uri = "sip:" + "a" * 80 + "@example.com"
    [event] = hooks.parse(body("call.initiated", direction="incoming", **{"from": uri}))
    assert event.from_number is None


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("call.answered", EventType.ANSWERED),
        ("call.bridged", EventType.ACTIVE),
        ("call.speak.ended", EventType.PLAYBACK_ENDED),
        ("call.playback.ended", EventType.PLAYBACK_ENDED),
    ],
)
def test_simple_events(kind: str, expected: EventType) -> None:
    [event] = hooks.parse(body(kind, status="completed"))
    assert event.type == expected and event.call_id == CALL_ID


@pytest.mark.parametrize(
    "kind",
    ["call.speak.started", "streaming.started", "call.gather.ended", "call.cost", "x.y"],
)
def test_events_we_do_not_act_on_yield_nothing(kind: str) -> None:
    assert hooks.parse(body(kind)) == []


@pytest.mark.parametrize(("cause", "state"), sorted(hooks.HANGUP_CAUSES.items()))
def test_hangup_causes(cause: str, state: CallState) -> None:
    [event] = hooks.parse(body("call.hangup", hangup_cause=cause, hangup_source="callee"))
    assert event.type == EventType.ENDED and event.reason == state


def test_hangup_key_causes_from_the_issue() -> None:
    causes = hooks.HANGUP_CAUSES
    assert causes["user_busy"] == CallState.BUSY
    assert causes["timeout"] == CallState.NO_ANSWER
    assert causes["normal_clearing"] == CallState.COMPLETED
    assert causes["originator_cancel"] == CallState.HANGUP_BOT
    assert causes["machine_detected"] == CallState.VOICEMAIL


def test_unknown_hangup_cause_is_completed() -> None:
    [event] = hooks.parse(body("call.hangup", hangup_cause="solar_flare"))
    assert event.reason == CallState.COMPLETED


def test_final_transcription_with_turn_token() -> None:
    state = hooks.encode_client_state(CALL_ID, "tok123")
    data = {
        "transcript": "Tuesday",
        "confidence": 0.93,
        "is_final": True,
        "transcription_track": "inbound",
    }
    [event] = hooks.parse(body("call.transcription", our_state=state, transcription_data=data))
    assert event.type == EventType.SPEECH
    assert (event.transcript, event.is_final, event.confidence) == ("Tuesday", True, 0.93)
    assert event.turn_token == "tok123"


def test_partials_only_when_wanted_and_never_the_bots_own_track() -> None:
    partial = {"transcript": "Tues", "is_final": False}
    assert hooks.parse(body("call.transcription", transcription_data=partial)) == []
    [event] = hooks.parse(body("call.transcription", transcription_data=partial), partials=True)
    assert event.is_final is False
    ours = {"transcript": "Hello", "is_final": True, "transcription_track": "outbound"}
    assert hooks.parse(body("call.transcription", transcription_data=ours)) == []
    blank = {"transcript": "  ", "is_final": True}
    assert hooks.parse(body("call.transcription", transcription_data=blank)) == []


def test_odd_confidence_is_dropped_not_fatal() -> None:
    for confidence in (1.5, -1, True, "high", None):
        data = {"transcript": "hi", "confidence": confidence}
        [event] = hooks.parse(body("call.transcription", transcription_data=data))
        assert event.confidence is None


def test_dtmf() -> None:
    [event] = hooks.parse(body("call.dtmf.received", digit="#"))
    assert event.type == EventType.DTMF and event.digits == "#"


def test_dedupe_key_falls_back_to_the_request_key() -> None:
    raw = json.loads(body("call.answered"))
    del raw["data"]["id"]
    [event] = hooks.parse(json.dumps(raw).encode(), "telnyx:abc")
    assert event.dedupe_key == "telnyx:abc:0"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "envelope"),
        (b'{"data": 1}', "envelope"),
        (b'{"data": {"event_type": 5}}', "event_type"),
        (b'{"data": {"event_type": "call.answered"}}', "payload"),
        (b'{"data": {"event_type": "call.answered", "payload": {}}}', "call_control_id"),
        (b"\xff\xfe", "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_bodies_are_webhook_errors(raw: bytes, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        hooks.parse(raw)


# -- property tests ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
event_types = st.sampled_from([*hooks._HANDLERS, "call.speak.started", "other"])
payload_keys = st.sampled_from(
    [
        "call_control_id",
        "client_state",
        "direction",
        "from",
        "to",
        "hangup_cause",
        "digit",
        "transcription_data",
        "transcription",
        "status",
    ]
)
payloads = st.dictionaries(payload_keys, json_values | st.text(max_size=300), max_size=8)
transcriptions = st.fixed_dictionaries(
    {},
    optional={
        "transcript": json_values,
        "is_final": json_values,
        "confidence": json_values | st.floats(),
        "transcription_track": st.sampled_from(["inbound", "outbound", 3]),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_webhook_error(raw: bytes) -> None:
    with contextlib.suppress(WebhookError):
        hooks.parse(raw, "k")


@settings(max_examples=400, deadline=None)
@given(
    event_types,
    payloads,
    transcriptions,
    st.one_of(st.none(), st.text(max_size=300), json_values),
    st.one_of(st.none(), st.text(max_size=70), json_values),
)
def test_envelope_shaped_bodies_raise_only_webhook_error(
    event_type: str, payload: dict[str, Any], data: dict[str, Any], event_id: Any, at: Any
) -> None:
    if payload.get("transcription_data") is not None or event_type == "call.transcription":
        payload = {**payload, "transcription_data": data}
    envelope = {
        "data": {"event_type": event_type, "id": event_id, "occurred_at": at, "payload": payload}
    }
    try:
        events = hooks.parse(json.dumps(envelope).encode(), "k")
    except WebhookError:
        return
    for event in events:
        assert event.provider_call_id == payload["call_control_id"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), json_values))
def test_client_state_decoding_never_raises(value: Any) -> None:
    decoded = hooks.decode_client_state(value)
    if decoded is not None:
        assert hooks.encode_client_state(*decoded) == value
