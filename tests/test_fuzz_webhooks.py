"""Fuzzing the webhook route of each carrier provider, *past* the signature check.

The parsers have their own property tests (tests/providers/test_*_webhooks.py) and the route
has one with the mock provider (tests/server/test_properties.py). What was missing: the whole
path — gate, limits, verification, replay cache, parser, manager, store, reply — for Twilio,
Telnyx and Plivo with requests that are *correctly signed*, so hypothesis reaches the parser
and the manager instead of stopping at 401. Most examples are signed, some are tampered with.

Properties: never a 5xx and never an unhandled exception; a refusal (4xx) changes nothing (the
event log and the live calls are as before); an accepted request answers in the carrier's
format. The calls the fuzzer can hit are real records in the store, in live states.

`VC_FUZZ_EXAMPLES` sets the examples per carrier (default 150); docs/fuzzing.md has the long run.
"""

from __future__ import annotations

import base64
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_call.config import parse_config
from voice_call.models import CallRecord, CallState, Direction, Mode
from voice_call.providers.telnyx.webhooks import encode_client_state
from voice_call.runtime import Runtime
from voice_call.security.signatures import plivo as plivo_sig
from voice_call.security.signatures import telnyx as telnyx_sig
from voice_call.security.signatures.twilio import HEADER as TWILIO_HEADER
from voice_call.security.signatures.twilio import compute_signature
from voice_call.server.app import build_app
from voice_call.store.base import LoggedEvent

# Nothing a property sends may be logged at ERROR or with a traceback.
pytestmark = pytest.mark.usefixtures("no_logged_tracebacks")

HOOK = "http://test/voice/webhook"
TOKEN = "fuzz-auth-token-0123456789abcdef"
CLOSED = "http://127.0.0.1:9"  # the provider's REST calls fail fast: only the webhook matters
TELNYX_KEY, TELNYX_PUBLIC = telnyx_sig.generate_keypair()
FUZZ = settings(
    max_examples=int(os.environ.get("VC_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIVE = (CallState.RINGING, CallState.ANSWERED, CallState.LISTENING, CallState.SPEAKING)
CALL_IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(len(LIVE))]
SIDS = [f"CA{i:032x}" for i in range(len(LIVE))]

CONFIGS: dict[str, dict[str, Any]] = {
    "twilio": {"twilio": {"accountSid": "AC" + "f" * 32, "authToken": TOKEN, "apiBaseUrl": CLOSED}},
    "telnyx": {
        "telnyx": {
            "apiKey": "KEY-fuzz",
            "connectionId": "conn-fuzz",
            "publicKey": TELNYX_PUBLIC,
            "apiBaseUrl": CLOSED,
        }
    },
    "plivo": {"plivo": {"authId": "MA" + "F" * 18, "authToken": TOKEN, "apiBaseUrl": CLOSED}},
}


@dataclass
class Target:
    carrier: str
    http: httpx.AsyncClient
    runtime: Runtime


async def _seed_calls(runtime: Runtime, carrier: str) -> None:
    for call_id, sid, state in zip(CALL_IDS, SIDS, LIVE, strict=True):
        record = CallRecord(
            call_id=call_id,
            provider=carrier,
            provider_call_id=sid,
            direction=Direction.OUTBOUND,
            mode=Mode.CONVERSATION,
            from_number="+15550001000",
            to_number="+15550002000",
            state=state,
            started_at=time.time(),
            answered_at=None if state == CallState.RINGING else time.time(),
        )
        await runtime.store.save(
            record, LoggedEvent(call_id=call_id, type="call.created", at=time.time())
        )


@pytest.fixture(params=sorted(CONFIGS))
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    carrier: str = request.param
    raw = {
        "provider": carrier,
        "fromNumber": "+15550001000",
        "publicUrl": HOOK,
        "staleCallReaperSeconds": 0,
        "maxConcurrentCalls": 50,
        "responder": {"provider": "echo"},
        **CONFIGS[carrier],
    }
    runtime = Runtime(parse_config(raw, env={}), tmp_path / "home")
    await runtime.store.open()
    await _seed_calls(runtime, carrier)
    await runtime.start()  # restore reconciles the seeded calls: REST fails, so they are kept
    await runtime.manager.settle()
    transport = httpx.ASGITransport(app=build_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Target(carrier, http, runtime)
    finally:
        await runtime.stop()


# ---------------------------------------------------------------------------- requests

text = st.text(max_size=40)
tokens = st.text("abcdef0123456789-:", max_size=40)  # ours are ASCII; client_state needs it
sids = st.sampled_from(SIDS) | text
call_ids = st.sampled_from(CALL_IDS) | text
statuses = st.sampled_from(
    ["queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer",
     "failed", "canceled", "timeout"]
) | text  # fmt: skip


PLIVO_FLOWS = ["answer", "notify", "ring", "hangup", "answered", "speak", "spoken", "listen",
               "relisten", "input", "keepalive"]  # fmt: skip
TELNYX_EVENTS = ["call.initiated", "call.answered", "call.bridged", "call.speak.ended",
                 "call.playback.ended", "call.transcription", "call.dtmf.received",
                 "call.hangup"]  # fmt: skip


def _form(names: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional=names) | st.dictionaries(text, text, max_size=5)


twilio_form = _form(
    {
        "CallSid": sids,
        "CallStatus": statuses,
        "Direction": st.sampled_from(["inbound", "outbound-api"]) | text,
        "From": st.sampled_from(["+15550002000", "anonymous"]) | text,
        "To": st.sampled_from(["+15550001000"]) | text,
        "SpeechResult": st.text(max_size=200),
        "Confidence": st.sampled_from(["0.9", "nan", "-1", "1e999"]) | text,
        "Digits": text,
        "AnsweredBy": st.sampled_from(["human", "machine_start", "fax"]) | text,
        "CallbackSource": st.just("call-progress-events"),
        "SequenceNumber": text,
    }
)
twilio_query = _form(
    {
        "type": st.sampled_from(
            ["status", "voice", "answered", "gather", "hold", "listen", "reprompt"]
        )
        | text,
        "callId": call_ids,
        "turnToken": text,
        "flow": st.just("inline") | text,
        "n": text,
    }
)
plivo_form = _form(
    {
        "CallUUID": sids,
        "RequestUUID": sids,
        "CallStatus": statuses,
        "Direction": st.sampled_from(["inbound", "outbound"]) | text,
        "From": text,
        "To": text,
        "Event": st.sampled_from(["StartApp", "Hangup", "Redirect"]) | text,
        "HangupCause": text,
        "HangupSource": st.sampled_from(["Callee", "Caller", "API Request"]) | text,
        "Speech": st.text(max_size=200),
        "Digits": text,
        "InputType": st.sampled_from(["speech", "dtmf"]) | text,
    }
)
plivo_query = _form(
    {
        "flow": st.sampled_from(PLIVO_FLOWS) | text,
        "callId": call_ids,
        "turnToken": text,
        "say": text,
        "then": text,
    }
)
# JSON may carry escaped lone surrogates ("\ud800"), which json.loads lets through
odd_text = st.text(st.characters(categories=["L", "N", "P", "Zs", "Cs", "Cc"]), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=15,
)
telnyx_payload = st.fixed_dictionaries(
    {},
    optional={
        "call_control_id": sids,
        "call_leg_id": text,
        "client_state": st.builds(
            encode_client_state, st.sampled_from(CALL_IDS), tokens | st.none()
        )
        | st.builds(lambda s: base64.b64encode(s.encode()).decode(), text)
        | json_values,
        "direction": st.sampled_from(["incoming", "outgoing"]) | json_values,
        "from": json_values,
        "to": json_values,
        "hangup_cause": st.sampled_from(["normal_clearing", "busy", "timeout"]) | json_values,
        "digit": json_values,
        "transcription_data": st.fixed_dictionaries(
            {}, optional={"transcript": odd_text | json_values, "is_final": json_values}
        )
        | json_values,
    },
)
telnyx_body = (
    st.fixed_dictionaries(
        {
            "data": st.fixed_dictionaries(
                {
                    "event_type": st.sampled_from(TELNYX_EVENTS) | text,
                    "payload": telnyx_payload | json_values,
                },
                optional={"id": text, "occurred_at": json_values, "record_type": json_values},
            )
        }
    )
    | json_values
)


@st.composite
def requests(draw: st.DrawFn, carrier: str) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) for one webhook, signed as the carrier signs unless tampered."""
    tamper = draw(st.integers(0, 9)) == 0
    if carrier == "telnyx":
        body = json.dumps(draw(telnyx_body)).encode()
        stamp = str(int(time.time()))
        signature = telnyx_sig.sign(TELNYX_KEY, stamp, body)
        if tamper:
            body += b" "
        headers = {
            "content-type": "application/json",
            telnyx_sig.TIMESTAMP_HEADER: stamp,
            telnyx_sig.SIGNATURE_HEADER: signature,
        }
        return HOOK, body, headers
    form = draw(twilio_form if carrier == "twilio" else plivo_form)
    query = draw(twilio_query if carrier == "twilio" else plivo_query)
    url = f"{HOOK}?{urlencode(query)}" if query else HOOK
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if carrier == "twilio":
        headers[TWILIO_HEADER] = compute_signature(TOKEN, url, form)
    else:
        nonce = draw(st.text("0123456789", min_size=1, max_size=20))
        headers[plivo_sig.V3_HEADER] = plivo_sig.sign_v3(TOKEN, url, form, nonce)
        headers[plivo_sig.V3_NONCE_HEADER] = nonce
    body = urlencode(form).encode()
    if tamper:
        body += b"&x=1"
    return url, body, headers


# ---------------------------------------------------------------------------- properties


async def _state(runtime: Runtime) -> tuple[int, list[tuple[str, str]]]:
    active = await runtime.manager.active()
    return await runtime.store.last_seq(), [(c.call_id, c.state.value) for c in active]


@FUZZ
@given(data=st.data())
async def test_signed_webhooks_never_5xx_and_a_refusal_changes_nothing(
    target: Target, data: st.DataObject
) -> None:
    url, body, headers = data.draw(requests(target.carrier))
    await target.runtime.manager.settle()  # effects of earlier examples land before "before"
    before = await _state(target.runtime)
    response = await target.http.post(url, content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.status_code in (400, 401, 404, 409, 413), response.status_code
        assert isinstance(response.json()["error"], str)
        assert await _state(target.runtime) == before
        return
    if target.carrier in ("twilio", "plivo"):
        assert "xml" in response.headers["content-type"]
        ET.fromstring(response.text)  # a well-formed document for the carrier to run
