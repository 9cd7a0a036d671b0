"""Plivo callbacks in: signature verification (V3; V2 only by opt-in) and parsing to events.

Verification (the algorithms are in security/signatures/plivo.py): V3 when any V3 header is
present — `X-Plivo-Signature-V3` or the main-account `X-Plivo-Signature-Ma-V3` (either alone is
enough), with `X-Plivo-Signature-V3-Nonce` — and a present but wrong or incomplete V3 never
falls back to V2. V2 signs only `scheme://host/path` + nonce, neither the query nor the body,
so a captured V2 pair would sign any forged speech, keys or hang-up: it is refused unless
`plivo.allowV2Signatures` is on, and even then only a callback that applies nothing (a transfer
fetching the XML it names) passes with it. The URL is the one the carrier used
(`security.public_url.verification_url`); a refusal names it with every query value hidden (the
turn token and the words to say travel there).

The request key (replay cache, event dedupe keys) is what V3 signed minus the nonce: a Plivo
retry carries a fresh nonce for the same callback and must be applied once.

Parsing reads our own query (flow, callId, turnToken: see urls.py) and Plivo's form fields.
Bodies are form-encoded; `python-multipart` is not a dependency, so `urllib.parse.parse_qsl`.
Anything malformed raises WebhookError (answered 400, nothing applied).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, parse_qsl, urlsplit

from pydantic import ValidationError

from voice_call.models import (
    AnsweredBy,
    CallEvent,
    CallState,
    Direction,
    EventType,
    TransferStatus,
)
from voice_call.providers.base import Verification, WebhookError, WebhookRequest
from voice_call.providers.plivo.urls import BadCallbackQuery, Callback, Flow, read_callback
from voice_call.security.public_url import redact_url
from voice_call.security.signatures import plivo as signatures

MAX_FIELDS = 200
Fields = dict[str, list[str]]

# CallStatus values that mean the call is over (docs/carriers.md §3.3; `cancel` and `machine` [M]).
TERMINAL_STATUSES = frozenset(
    {"completed", "busy", "failed", "timeout", "no-answer", "cancel", "canceled", "machine"}
)
_USER_SOURCES = frozenset({"callee", "caller"})
_BOT_SOURCES = frozenset({"api request", "answer xml"})
_DIGITS = re.compile(r"[^0-9*#A-Da-d]")
_PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")


def form_fields(body: bytes) -> Fields:
    """The form body as name → values, decoded; WebhookError when it is not UTF-8 form data."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookError("body is not UTF-8 form data") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise WebhookError(f"body has more than {MAX_FIELDS} fields") from None
    fields: Fields = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


def _query(url: str) -> dict[str, str]:
    try:
        pairs = parse_qs(urlsplit(url).query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise WebhookError(f"the URL has more than {MAX_FIELDS} query params") from None
    return {name: values[0] for name, values in pairs.items()}


def _signed_params(request: WebhookRequest) -> Fields:
    # GET callbacks carry Plivo's params in the query, which the base string already covers.
    return {} if request.method.upper() == "GET" else form_fields(request.body)


def verify(
    request: WebhookRequest, auth_token: str | None, url: str, *, allow_v2: bool = False
) -> Verification:
    """Check the signature over `url` (the URL the carrier used)."""
    if not auth_token:
        return Verification(ok=False, reason="plivo.authToken is not configured: cannot verify")
    headers = request.headers
    v3 = [headers.get(signatures.V3_HEADER.lower(), ""), headers.get(V3_MA, "")]
    if any(v3) or headers.get(V3_NONCE):  # V3 decides: never a fallback to the weaker V2
        return _verify_v3(request, auth_token, url, [given for given in v3 if given])
    v2 = [headers.get(signatures.V2_HEADER.lower(), ""), headers.get(V2_MA, "")]
    if not any(v2):
        return Verification(ok=False, reason="missing Plivo signature headers (V3 with nonce)")
    if not allow_v2:
        return Verification(
            ok=False,
            reason="Plivo V2 signatures are not accepted: they cover neither the query nor the "
            "body (V3 is required; plivo.allowV2Signatures opts in for callbacks that apply "
            "nothing)",
        )
    return _verify_v2(request, auth_token, url, [given for given in v2 if given])


V3_MA = signatures.V3_MA_HEADER.lower()
V3_NONCE = signatures.V3_NONCE_HEADER.lower()
V2_MA = signatures.V2_MA_HEADER.lower()
V2_NONCE = signatures.V2_NONCE_HEADER.lower()


def _verify_v3(
    request: WebhookRequest, auth_token: str, url: str, given: list[str]
) -> Verification:
    nonce = request.headers.get(V3_NONCE, "")
    if not nonce or not given:
        return Verification(ok=False, reason="a Plivo V3 signature needs its nonce")
    method = request.method.upper()
    try:
        params = _signed_params(request)
    except WebhookError as exc:
        return Verification(ok=False, reason=f"cannot verify: {exc}")
    if any(signatures.validate_v3(auth_token, url, params, nonce, g, method) for g in given):
        return Verification(ok=True, request_key=signatures.v3_request_key(url, params, method))
    return Verification(ok=False, reason=f"invalid Plivo V3 signature for {redact_url(url)}")


def _verify_v2(
    request: WebhookRequest, auth_token: str, url: str, given: list[str]
) -> Verification:
    nonce = request.headers.get(V2_NONCE, "")
    if not nonce or not any(signatures.validate_v2(auth_token, url, nonce, g) for g in given):
        return Verification(ok=False, reason=f"invalid Plivo V2 signature for {redact_url(url)}")
    if not _applies_nothing(request):
        return Verification(
            ok=False,
            reason="a Plivo V2 signature covers neither the query nor the body: this callback "
            "changes the call, so it needs V3",
        )
    return Verification(ok=True, request_key=signatures.v2_request_key(url, nonce))


def _applies_nothing(request: WebhookRequest) -> bool:
    """True when the callback, as it reads, changes no call: no event, no inbound call."""
    try:
        parsed = parse(request, None)
    except WebhookError:
        return False
    return not parsed.events and not parsed.inbound_answer


@dataclass
class Parsed:
    """One callback: our query, Plivo's fields, the events it means."""

    callback: Callback
    fields: Mapping[str, list[str]]
    events: list[CallEvent] = field(default_factory=list)
    inbound_answer: bool = False  # the first request of an inbound call (policy decides)
    heard: bool = False  # a GetInput action that carried speech or keys

    def get(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else ""


def parse(request: WebhookRequest, request_key: str | None) -> Parsed:
    query = _query(request.url)
    try:
        callback = read_callback(query)
    except BadCallbackQuery as exc:
        raise WebhookError(str(exc)) from None
    if request.method.upper() == "GET":
        fields: Fields = {name: [value] for name, value in query.items()}
    else:
        fields = form_fields(request.body)
    parsed = Parsed(callback, fields)
    raw = _events(parsed)
    try:
        parsed.events = [
            CallEvent.model_validate(
                {**item, "dedupe_key": f"{request_key}:{i}" if request_key else None}
            )
            for i, item in enumerate(raw)
        ]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WebhookError(f"callback field {where}: {err['msg']}") from None
    return parsed


EventData = dict[str, object]


def _events(p: Parsed) -> list[EventData]:
    cb = p.callback
    if cb.flow == Flow.RECORDED:
        return [_recorded(p)]
    call_uuid = p.get("CallUUID") or p.get("ALegUUID")
    base: EventData = {"call_id": cb.call_id, "provider_call_id": call_uuid or None}
    if not (cb.call_id or call_uuid):
        raise WebhookError("callback names no call: CallUUID is missing")
    if cb.flow in _TRANSFER_FLOWS:
        return _transfer_events(p, base)
    status = p.get("CallStatus").lower()
    if (
        cb.flow == Flow.HANGUP
        or p.get("Event").lower() == "hangup"
        or p.get("HangupCause")
        or status in TERMINAL_STATUSES
    ):
        # What a caller said just before hanging up still counts.
        heard = _input_events(p, base) if cb.flow in (Flow.INPUT, None) else []
        return [*heard, {**base, "type": EventType.ENDED, "reason": end_reason(p)}]
    flow = cb.flow
    if flow == Flow.RING:
        return [{**base, "type": EventType.RINGING}]
    if flow in (Flow.ANSWER, Flow.NOTIFY, Flow.ANSWERED):
        return [{**base, "type": EventType.ANSWERED}]
    if flow == Flow.SPOKEN:
        return [{**base, "type": EventType.PLAYBACK_ENDED}]
    if flow == Flow.KEEPALIVE or flow == Flow.RELISTEN:
        return [{**base, "type": EventType.SILENCE}]
    if flow == Flow.MACHINE:  # machine_detection_url: Machine=true
        machine = p.get("Machine").lower() == "true"
        return [{**base, "type": EventType.AMD, "answered_by": _VERDICT[machine]}]
    if flow == Flow.NO_MACHINE:  # the detection window passed without `Machine=true`
        return [{**base, "type": EventType.AMD, "answered_by": AnsweredBy.HUMAN}]
    if flow in (Flow.SPEAK, Flow.LISTEN, Flow.VOICEMAIL):
        return []  # a transfer fetching the XML we asked for: nothing new about the call
    if flow == Flow.INPUT:
        heard = _input_events(p, base)
        p.heard = bool(heard)
        return heard or [{**base, "type": EventType.SILENCE}]
    if flow is not None:
        raise WebhookError(f"unknown flow {flow!r}")
    # Not a URL we wrote: Plivo application URLs (inbound), or a hand-configured callback.
    if not cb.call_id and p.get("Direction").lower() == "inbound" and call_uuid:
        p.inbound_answer = True
        return [
            {
                **base,
                "type": EventType.RINGING,
                "direction": Direction.INBOUND,
                "from_number": phone(p.get("From")) or None,
                "to_number": phone(p.get("To")) or None,
            }
        ]
    heard = _input_events(p, base)
    if heard:
        return heard
    if status == "ringing":
        return [{**base, "type": EventType.RINGING}]
    if status == "in-progress" and p.get("Event").lower() == "startapp":
        return [{**base, "type": EventType.ANSWERED}]
    return []


_VERDICT = {True: AnsweredBy.MACHINE, False: AnsweredBy.HUMAN}
_TRANSFER_FLOWS = (Flow.TRANSFER, Flow.DIALED, Flow.DIAL_EVENT, Flow.WHISPER)
# DialStatus → how the transfer ended (`completed`: the parties talked, then one hung up)
DIAL_STATUSES = {
    "completed": TransferStatus.COMPLETED,
    "busy": TransferStatus.BUSY,
    "no-answer": TransferStatus.NO_ANSWER,
    "timeout": TransferStatus.NO_ANSWER,
    "failed": TransferStatus.FAILED,
}


def _transfer_events(p: Parsed, base: EventData) -> list[EventData]:
    """A transfer's callbacks. The Dial action: how it ended (and the caller may have hung up
    meanwhile); the callbackUrl's `DialAction=answer`: the called party is on the line —
    with the caller at once on a cold transfer, after the confirmSound on a warm one."""
    flow = p.callback.flow
    out: list[EventData] = []
    if flow == Flow.DIALED:
        dialed = DIAL_STATUSES.get(p.get("DialStatus").lower(), TransferStatus.FAILED)
        out.append({**base, "type": EventType.TRANSFER, "transfer_status": dialed})
        if p.get("CallStatus").lower() in TERMINAL_STATUSES:
            out.append({**base, "type": EventType.ENDED, "reason": end_reason(p)})
    elif flow == Flow.DIAL_EVENT and p.get("DialAction").lower() == "answer":
        # the caller's leg is the A leg (CallUUID may name the called party's)
        base = {**base, "provider_call_id": p.get("DialALegUUID") or base["provider_call_id"]}
        warm = p.callback.then == "warm"
        status = TransferStatus.ANSWERED if warm else TransferStatus.BRIDGED
        target = phone(p.get("DialBLegTo")) or None
        out.append(
            {
                **base,
                "type": EventType.TRANSFER,
                "transfer_status": status,
                "transfer_target": target,
            }
        )
    return out  # TRANSFER and WHISPER fetch the XML we asked for: nothing new about the call


def _whole(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12


def _recorded(p: Parsed) -> EventData:
    """The Record API's callback (snake_case fields, unlike the call's own callbacks)."""
    call_uuid = p.get("call_uuid")
    if not (p.callback.call_id or call_uuid):
        raise WebhookError("recording callback names no call: call_uuid is missing")
    millis, seconds = p.get("recording_duration_ms"), p.get("recording_duration")
    duration = int(millis) / 1000 if _whole(millis) else int(seconds) if _whole(seconds) else None
    return {
        "call_id": p.callback.call_id,
        "provider_call_id": call_uuid or None,
        "type": EventType.RECORDING,
        "recording_url": p.get("record_url") or None,
        "recording_duration_s": duration,
        "recording_status": "completed" if p.get("record_url") else "failed",
    }


def _input_events(p: Parsed, base: EventData) -> list[EventData]:
    """GetInput results: speech (the first non-blank transcript field) and/or keys."""
    events: list[EventData] = []
    transcript = next(
        (
            p.get(name)
            for name in ("Speech", "SpeechResult", "Transcription", "TranscriptionText", "Text")
            if p.get(name)
        ),
        "",
    )
    if transcript:
        events.append(
            {
                **base,
                "type": EventType.SPEECH,
                "transcript": transcript[:8000],
                "is_final": True,
                "confidence": confidence(p.get("SpeechConfidenceScore")),
                "turn_token": p.callback.turn_token,
            }
        )
    digits = _DIGITS.sub("", p.get("Digits"))[:64]
    if digits:
        events.append({**base, "type": EventType.DTMF, "digits": digits})
    return events


def confidence(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return min(1.0, max(0.0, value)) if math.isfinite(value) else None


def phone(raw: str) -> str:
    """Plivo writes numbers as bare digits: give them back their `+`; SIP URIs stay as sent."""
    raw = raw.strip()
    if _PHONE.match(raw):
        return raw if raw.startswith("+") else f"+{raw}"
    return raw[:64]


def end_reason(p: Parsed) -> CallState:
    """How the call ended, from CallStatus, HangupCause and HangupSource.

    docs/carriers.md §3.3 (the fields) and §4 (the Plivo lifecycle).
    """
    status = p.get("CallStatus").lower()
    cause = p.get("HangupCause").upper()
    source = p.get("HangupSource").lower()
    if status == "busy" or cause == "USER_BUSY":
        return CallState.BUSY
    if status in ("no-answer", "timeout") or cause in ("NO_ANSWER", "NO_USER_RESPONSE"):
        return CallState.NO_ANSWER
    if status == "failed":
        return CallState.FAILED
    if status == "machine":
        return CallState.VOICEMAIL
    if status in ("cancel", "canceled") or cause == "ORIGINATOR_CANCEL":
        if source in _BOT_SOURCES:
            return CallState.HANGUP_BOT
        if source == "caller":
            return CallState.HANGUP_USER  # an inbound caller gave up before we answered
        return CallState.NO_ANSWER  # the carrier stopped the ringing
    if source in _USER_SOURCES:
        return CallState.HANGUP_USER
    if source in _BOT_SOURCES:
        return CallState.HANGUP_BOT
    return CallState.COMPLETED
