"""Telnyx webhooks in: Ed25519 verification, `client_state`, and envelopes → normalised events.

Pure functions (no I/O, no call state), so any instance can verify and parse any webhook.

`client_state` is how a webhook finds its call without provider memory: Telnyx echoes it in
every later webhook of the leg, and any command may replace it. We set it to base64 of our
call id at dial (outbound) or answer (inbound); `transcription_start` for a `continue` turn sets
base64 of `<call id>:<turn token>`, so a transcript that reaches a later turn carries the token
it was listened for and a stale one changes nothing (like Twilio's Gather action URL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from voice_call.models import AnsweredBy, CallEvent, CallState, Direction, EventType
from voice_call.providers.base import Verification, WebhookError, WebhookRequest
from voice_call.providers.telnyx import transfer_legs
from voice_call.security.public_url import redact_url
from voice_call.security.signatures import telnyx as signatures

log = logging.getLogger("voice_call.telnyx")

Payload = dict[str, Any]

_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # our call ids are UUIDs; never ':' inside
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_MAX_CLIENT_STATE = 1024
_MAX_ID = 256
_MAX_NUMBER = 64
_MAX_TRANSCRIPT = 8000

# docs/carriers.md §2.2 enum plus the causes the seed mapped. The party is
# not named reliably (hangup_source depends on who dialled), so a normal clearing is `completed`.
HANGUP_CAUSES: dict[str, CallState] = {
    "normal_clearing": CallState.COMPLETED,
    "normal_unspecified": CallState.COMPLETED,
    "unspecified": CallState.COMPLETED,
    "originator_cancel": CallState.HANGUP_BOT,
    "call_rejected": CallState.BUSY,
    "user_busy": CallState.BUSY,
    "timeout": CallState.NO_ANSWER,
    "no_answer": CallState.NO_ANSWER,
    "no_user_response": CallState.NO_ANSWER,
    "time_limit": CallState.TIMEOUT,
    "not_found": CallState.FAILED,
    "destination_out_of_order": CallState.FAILED,
    "network_out_of_order": CallState.FAILED,
    "service_unavailable": CallState.FAILED,
    "recovery_on_timer_expire": CallState.FAILED,
    "machine_detected": CallState.VOICEMAIL,
    "fax_detected": CallState.VOICEMAIL,
    "user_hangup": CallState.HANGUP_USER,
    "subscriber_absent": CallState.HANGUP_USER,
}

# -- client_state ---------------------------------------------------------------------------


def encode_client_state(call_id: str, turn_token: str | None = None) -> str:
    text = call_id if turn_token is None else f"{call_id}:{turn_token}"
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def decode_client_state(value: object) -> tuple[str, str | None] | None:
    """(call id, turn token) from a `client_state` we set; None for anything else (absent,
    not canonical base64, or not our shape), so a foreign state never names a call."""
    if not isinstance(value, str) or not value or len(value) > _MAX_CLIENT_STATE:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != value:  # the exact round trip we produce
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    call_id, sep, token = text.partition(":")
    if not _CALL_ID.fullmatch(call_id) or (sep and not _TOKEN.fullmatch(token)):
        return None
    return call_id, token if sep else None


# -- verification ---------------------------------------------------------------------------


def verify(
    public_key: Ed25519PublicKey | None,
    request: WebhookRequest,
    *,
    now: float,
    tolerance_s: float = signatures.DEFAULT_TOLERANCE_S,
) -> Verification:
    """Ed25519 over `timestamp|raw body`; fails closed without a key. The replay key names the
    signed content (timestamp and body), so a base64url re-encoding of the same signature is
    still the same request."""
    where = redact_url(request.url)
    if public_key is None:
        return Verification(ok=False, reason=f"no Telnyx public key configured ({where})")
    timestamp = request.headers.get(signatures.TIMESTAMP_HEADER)
    ok, why = signatures.verify(
        public_key,
        request.headers.get(signatures.SIGNATURE_HEADER),
        timestamp,
        request.body,
        now=now,
        tolerance_s=tolerance_s,
    )
    if not ok or timestamp is None:
        return Verification(ok=False, reason=f"Telnyx signature rejected: {why} ({where})")
    digest = hashlib.sha256(timestamp.encode("ascii") + b"\n" + request.body).hexdigest()
    return Verification(ok=True, request_key=f"telnyx:{digest}")


# -- parsing --------------------------------------------------------------------------------


def parse(
    body: bytes, request_key: str | None = None, *, partials: bool = False
) -> list[CallEvent]:
    """The normalised events of one webhook body; raises WebhookError for a malformed one.

    Event types we do not act on (streaming.*, call.gather.ended, call.cost, …) yield nothing.
    """
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, huge ints, deep nesting
        raise WebhookError(f"body is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        raise WebhookError('body must be a Telnyx envelope: {"data": {...}}')
    data: Payload = envelope["data"]
    event_type = data.get("event_type")
    if not isinstance(event_type, str):
        raise WebhookError("data.event_type must be a string")
    handler = _HANDLERS.get(event_type)
    if handler is None:
        return []
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise WebhookError(f"{event_type}: data.payload must be an object")
    base = _base(data, payload, request_key)
    tag = base.get("turn_token")
    if isinstance(tag, str) and transfer_legs.is_target_leg(tag):
        # a transfer target's own leg: what it means for the transfer, not for our leg
        fields = transfer_legs.event_fields(event_type, payload, tag)
    else:
        fields = handler(payload, partials)
    if fields is None:
        return []
    try:
        return [CallEvent.model_validate({**base, **fields})]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WebhookError(f"{event_type}: {where}: {err['msg']}") from None


def _base(data: Payload, payload: Payload, request_key: str | None) -> Payload:
    pid = payload.get("call_control_id")
    if not isinstance(pid, str) or not pid or len(pid) > _MAX_ID:
        raise WebhookError("data.payload.call_control_id must be a non-empty string")
    base: Payload = {"provider_call_id": pid}
    state = payload.get("client_state")
    decoded = decode_client_state(state)
    if decoded is not None:
        base["call_id"], base["turn_token"] = decoded
    elif state is not None:
        log.warning("ignoring a client_state we did not set on %s", pid[:40])
    # Telnyx keeps `id` across delivery retries (only meta.attempt changes), so a retried event
    # is recognised even though its signed body differs; fall back to the request key.
    event_id = data.get("id")
    if isinstance(event_id, str) and 0 < len(event_id) <= _MAX_ID:
        base["dedupe_key"] = f"telnyx:event:{event_id}"
    elif request_key:
        base["dedupe_key"] = f"{request_key}:0"
    at = _epoch(data.get("occurred_at"))
    if at is not None:
        base["timestamp"] = at
    return base


def _epoch(value: object) -> float | None:
    """`occurred_at` (ISO 8601 with a zone) as Unix seconds; None when absent or odd."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
        stamp = moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return stamp if moment.tzinfo is not None and math.isfinite(stamp) else None


def _text(payload: Payload, name: str, limit: int) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _direction(payload: Payload) -> Direction | None:
    value = payload.get("direction")
    if value in ("incoming", "inbound"):
        return Direction.INBOUND
    if value in ("outgoing", "outbound"):
        return Direction.OUTBOUND
    return None


def _initiated(payload: Payload, partials: bool) -> Payload:
    direction = _direction(payload)
    fields: Payload = {"direction": direction}
    if direction == Direction.INBOUND:
        # Parked until we answer; an unknown call with this direction runs the inbound policy.
        fields["type"] = EventType.INITIATED
        # SIP URIs or "anonymous" longer than a number: screened as "no caller id".
        fields["from"] = _text(payload, "from", _MAX_NUMBER)
        fields["to"] = _text(payload, "to", _MAX_NUMBER)
    else:
        # Outbound "bridging": Telnyx is placing the call. It sends no separate ringing event.
        fields["type"] = EventType.RINGING
    return fields


def _fixed(kind: EventType) -> Callable[[Payload, bool], Payload]:
    return lambda payload, partials: {"type": kind}


def _transcription(payload: Payload, partials: bool) -> Payload | None:
    data = payload.get("transcription_data")
    if data is None and isinstance(payload.get("transcription"), str):
        data = {"transcript": payload["transcription"]}  # an older payload shape
    if not isinstance(data, dict):
        raise WebhookError("call.transcription: transcription_data must be an object")
    if data.get("transcription_track") == "outbound":
        return None  # the bot's own words (tracks "both"): not the caller
    transcript = data.get("transcript")
    if not isinstance(transcript, str) or not transcript.strip():
        return None
    final = data.get("is_final", True)
    if not isinstance(final, bool):
        raise WebhookError("call.transcription: is_final must be true or false")
    if not final and not partials:
        return None
    confidence = _unit_interval(data.get("confidence"))
    return {
        "type": EventType.SPEECH,
        "transcript": transcript[:_MAX_TRANSCRIPT],
        "is_final": final,
        "confidence": confidence,
    }


def _unit_interval(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 1 else None  # NaN fails the comparison too


def _dtmf(payload: Payload, partials: bool) -> Payload | None:
    digit = _text(payload, "digit", _MAX_NUMBER)
    return None if digit is None else {"type": EventType.DTMF, "digits": digit}


def _hangup(payload: Payload, partials: bool) -> Payload:
    cause = payload.get("hangup_cause")
    reason = HANGUP_CAUSES.get(cause) if isinstance(cause, str) else None
    if reason is None:
        log.warning("unknown Telnyx hangup_cause %r: recorded as completed", str(cause)[:40])
        reason = CallState.COMPLETED
    return {"type": EventType.ENDED, "reason": reason}


# call.machine[.premium].detection.ended `result`; anything else (not_sure, silence): unknown
AMD_RESULTS = {
    "human": AnsweredBy.HUMAN,
    "human_residence": AnsweredBy.HUMAN,
    "human_business": AnsweredBy.HUMAN,
    "machine": AnsweredBy.MACHINE,
    "fax_detected": AnsweredBy.FAX,
}


def _verdict(payload: Payload, partials: bool) -> Payload:
    result = payload.get("result")
    answered_by = AMD_RESULTS.get(result) if isinstance(result, str) else None
    return {"type": EventType.AMD, "answered_by": answered_by or AnsweredBy.UNKNOWN}


def _recording(payload: Payload, partials: bool) -> Payload:
    """call.recording.saved: the file (WAV asked for; MP3 if that is all there is)."""
    urls = payload.get("recording_urls")
    urls = urls if isinstance(urls, dict) else {}
    url = urls.get("wav") or urls.get("mp3")
    started = _epoch(payload.get("recording_started_at"))
    ended = _epoch(payload.get("recording_ended_at"))
    seconds = round(ended - started, 3) if started is not None and ended is not None else None
    return {
        "type": EventType.RECORDING,
        "recording_url": url if isinstance(url, str) and url else None,
        "recording_duration_s": seconds if seconds is not None and seconds >= 0 else None,
        "recording_status": "completed",
    }


def _recording_error(payload: Payload, partials: bool) -> Payload:
    return {"type": EventType.RECORDING, "recording_status": "failed"}


_HANDLERS: Mapping[str, Callable[[Payload, bool], Payload | None]] = {
    "call.recording.saved": _recording,
    "call.recording.error": _recording_error,
    "call.machine.detection.ended": _verdict,
    "call.machine.premium.detection.ended": _verdict,
    # beep_detected, ended, no_beep_detected, not_sure: the greeting is over either way
    "call.machine.greeting.ended": _fixed(EventType.MACHINE_GREETING_ENDED),
    "call.machine.premium.greeting.ended": _fixed(EventType.MACHINE_GREETING_ENDED),
    "call.initiated": _initiated,
    "call.answered": _fixed(EventType.ANSWERED),
    "call.bridged": _fixed(EventType.ACTIVE),
    # speak.started is not mapped: the manager already knows when it speaks, and a late
    # started-event would flip a listening call back to "speaking".
    "call.speak.ended": _fixed(EventType.PLAYBACK_ENDED),
    "call.playback.ended": _fixed(EventType.PLAYBACK_ENDED),
    "call.transcription": _transcription,
    "call.dtmf.received": _dtmf,
    "call.hangup": _hangup,
}
