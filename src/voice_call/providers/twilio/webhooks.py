"""Twilio webhooks: verify `X-Twilio-Signature`, then turn a request into normalised events.

This is where a Twilio status callback (and every other request Twilio makes of us) becomes a
`CallEvent`: `server/webhook.py` hands the request to `TwilioProvider.parse_webhook`, which
calls `parse` here; `read_hook` reads the query and form fields, `events_for` maps them
(`CallStatus` `ringing` → `call.ringing`, `completed` → `call.ended`, a Gather's
`SpeechResult` → `call.speech`, ...), and the manager applies the events that come back.

Every URL we hand Twilio carries `type` (which of our requests this is), usually `callId` (our
UUID, so no CallSid → call mapping has to live in the provider) and, for listening, the turn
token; Twilio echoes them back in the query, and the signature covers them. A request
without `type` is one Twilio makes on its own: the number's Voice URL (an inbound call) or
its status callback.

`type` values: `status` (StatusCallback), `voice` (an outbound call's Url), `answered` (the
redirect that answers an accepted inbound call), `gather` (a Gather's action), `played` (the
redirect after a notify message: its playback ended), and `hold`,
`listen`, `reprompt` (keep-alive redirects after a pause, after an answer, after silence);
for a transfer, `dialed` (the `<Dial>` action: `DialCallStatus`), `transfer` (the called
party's status callback: it answered, so the caller is with it; `CallSid` is the called
party's, `ParentCallSid` ours) and `whisper` (the called party's TwiML before the bridge).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from pydantic import ValidationError

from voice_call.models import (
    AnsweredBy,
    CallEvent,
    CallState,
    Direction,
    EventType,
    TransferStatus,
)
from voice_call.providers.base import Verification, WebhookError, WebhookRequest, WebhookResult
from voice_call.security.public_url import ForwardingTrust, redact_url, verification_url
from voice_call.security.signatures import twilio as signatures

MAX_FIELDS = 500
DEFAULT_CONFIDENCE = 0.9  # Twilio sometimes omits Confidence; the seed assumed this
HOLD_S = 20  # pause before the greeting is ready
ANSWER_PAUSE_S = 5  # after an answer, how long the bot has to reply before we listen again
GATHER_TIMEOUT_S = 60  # how long a Gather waits for the caller to start speaking
SILENCE_MS = {"hold": HOLD_S * 1000, "listen": ANSWER_PAUSE_S * 1000}
SILENCE_MS["reprompt"] = GATHER_TIMEOUT_S * 1000

END_REASONS = {
    "completed": CallState.COMPLETED,
    "busy": CallState.BUSY,
    "no-answer": CallState.NO_ANSWER,
    "failed": CallState.FAILED,
    "canceled": CallState.HANGUP_BOT,  # only we cancel a call that was never answered
}
_DIRECTIONS = {
    "inbound": Direction.INBOUND,
    "outbound-api": Direction.OUTBOUND,
    "outbound-dial": Direction.OUTBOUND,
}
AMD_WORDS = {"human": AnsweredBy.HUMAN, "fax": AnsweredBy.FAX, "unknown": AnsweredBy.UNKNOWN}
_TWIML_REQUESTS = (
    "voice",
    "answered",
    "hold",
    "listen",
    "reprompt",
    "gather",
    "played",
    "dialed",
    "whisper",
)
# DialCallStatus → how the transfer went (`completed`: the parties talked and one hung up)
DIAL_STATUSES = {
    "completed": TransferStatus.COMPLETED,
    "answered": TransferStatus.COMPLETED,
    "busy": TransferStatus.BUSY,
    "no-answer": TransferStatus.NO_ANSWER,
    "failed": TransferStatus.FAILED,
    "canceled": TransferStatus.FAILED,
}


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Hook:
    """What one Twilio request says, before it becomes events."""

    kind: str  # one of the `type` values, or "inbound" / "status" / "unknown" for Twilio's own
    params: dict[str, str]  # the form (POST) or query (GET) fields, first value of each
    call_id: str | None = None
    turn_token: str | None = None
    flow: str | None = None  # "inline": the call runs TwiML handed over at dial (notify)
    query: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.params.get("CallStatus", "").strip().lower()

    @property
    def direction(self) -> Direction | None:
        return _DIRECTIONS.get(self.params.get("Direction", "").strip().lower())

    @property
    def answers_with_twiml(self) -> bool:
        return self.kind in (*_TWIML_REQUESTS, "inbound", "unknown")


@dataclass
class TwilioResult(WebhookResult):
    """The parse result, carrying the request as read so the reply need not re-read it."""

    hook: Hook | None = None


@functools.lru_cache(maxsize=32)
def _fields(text: str) -> tuple[tuple[str, str], ...]:
    """A form or query string's fields. Memoised: verifying and parsing one request both read
    its body, and a call's callback URLs repeat; the tuple is immutable, so sharing is safe."""
    return form_fields(text)


def form_fields(text: str) -> tuple[tuple[str, str], ...]:
    """`parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)`, same pairs and
    errors, without its per-field calls: only fields with a `+` or `%` are decoded."""
    if not text:
        return ()
    if text.count("&") >= MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    plain = "%" not in text and "+" not in text
    out: list[tuple[str, str]] = []
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if not plain:
            if "%" in name or "+" in name:
                name = _decoded(name)
            if "%" in value or "+" in value:
                value = _decoded(value)
        out.append((name, value))
    return tuple(out)


def _decoded(text: str) -> str:
    """`unquote(text.replace("+", " "))`; ASCII text (the usual) skips unquote's regex split."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if text.isascii():
        return unquote_to_bytes(text).decode("utf-8", "replace")
    return unquote(text)


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    try:
        return list(_fields(text))
    except ValueError as exc:
        raise WebhookError(f"{what} could not be parsed: {exc}") from None


def _body_params(request: WebhookRequest) -> list[tuple[str, str]]:
    if request.method.upper() == "GET" or not request.body:
        return []
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookError("body is not UTF-8") from None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise WebhookError("body is not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise WebhookError("a JSON body must be an object of strings")
        return [(str(k), v) for k, v in data.items()]
    return _pairs(text, "form body")


def _bounded(value: str | None, limit: int, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise WebhookError(f"{name} is longer than {limit} characters")
    return value


def _query(url: str) -> str:
    try:
        return urlsplit(url).query
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        raise WebhookError("the request URL could not be parsed") from None


def read_hook(request: WebhookRequest) -> Hook:
    query = dict(_pairs(_query(request.url), "query string"))
    pairs = _body_params(request) or (
        list(query.items()) if request.method.upper() == "GET" else []
    )
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    kind = query.get("type", "")
    if kind not in ("status", "transfer", "amd", "recording", *_TWIML_REQUESTS):
        kind = _own_kind(params)
    return Hook(
        kind=kind,
        params=params,
        call_id=_bounded(query.get("callId"), 128, "callId"),
        turn_token=_bounded(query.get("turnToken"), 128, "turnToken"),
        flow=query.get("flow"),
        query=query,
    )


def _own_kind(params: Mapping[str, str]) -> str:
    """A request Twilio makes on its own (no `type` of ours): status callback or Voice URL."""
    status = params.get("CallStatus", "").strip().lower()
    if params.get("CallbackSource") or status in END_REASONS:
        return "status"
    if params.get("Direction", "").strip().lower() == "inbound":
        return "inbound"
    return "unknown"


# ---------------------------------------------------------------------------- events


def _confidence(raw: str | None) -> float:
    try:
        value = float(raw) if raw is not None else DEFAULT_CONFIDENCE
    except ValueError:
        return DEFAULT_CONFIDENCE
    return value if math.isfinite(value) and 0 <= value <= 1 else DEFAULT_CONFIDENCE


def _party(value: str | None) -> str | None:
    """A caller/callee as Twilio wrote it (E.164, `client:…`, `anonymous`); too long: unknown."""
    value = (value or "").strip()
    return value if value and len(value) <= 64 else None


def _machine(params: Mapping[str, str]) -> bool:
    answered_by = params.get("AnsweredBy", "").strip().lower()
    return answered_by.startswith("machine") or answered_by == "fax"


def _verdict(answered_by: str) -> list[dict[str, object]]:
    """`AnsweredBy` as `call.amd`; a `machine_end_*` also says the greeting is over."""
    word = answered_by.strip().lower()
    verdict = AnsweredBy.MACHINE if word.startswith("machine") else AMD_WORDS.get(word)
    out: list[dict[str, object]] = [
        {"type": EventType.AMD, "answered_by": verdict or AnsweredBy.UNKNOWN}
    ]
    if word.startswith("machine_end"):
        out.append({"type": EventType.MACHINE_GREETING_ENDED})
    return out


def events_for(hook: Hook) -> list[dict[str, object]]:
    """The normalised events of one request, as keyword arguments for CallEvent."""
    p, status = hook.params, hook.status
    out: list[dict[str, object]] = []
    if hook.kind in ("transfer", "whisper"):
        return _transfer_events(hook)  # the called party's: never our call's own status
    if hook.kind == "recording":  # RecordingStatusCallback: the file, after the call
        return [_recording_event(p)]
    if hook.kind == "dialed":
        dialed = DIAL_STATUSES.get(p.get("DialCallStatus", "").strip().lower())
        out.append({"type": EventType.TRANSFER, "transfer_status": dialed or "failed"})
    if hook.kind == "inbound" and status not in END_REASONS:
        # The number's Voice URL: a new call. Answering is returning TwiML, which the reply
        # does (a redirect that comes back as `answered`) once the manager has screened it.
        out.append(
            {
                "type": EventType.INITIATED,
                "direction": Direction.INBOUND,
                "from_number": _party(p.get("From")),
                "to_number": _party(p.get("To")),
            }
        )
    elif hook.kind == "gather":
        speech = " ".join(p.get("SpeechResult", "").split())[:8000]
        digits = p.get("Digits", "").strip()[:64]
        if speech:
            out.append(
                {
                    "type": EventType.SPEECH,
                    "transcript": speech,
                    "is_final": True,
                    "confidence": _confidence(p.get("Confidence")),
                    "turn_token": hook.turn_token,
                }
            )
        if digits:
            out.append({"type": EventType.DTMF, "digits": digits})
        if not out and status not in END_REASONS:
            out.append({"type": EventType.SILENCE, "duration_ms": GATHER_TIMEOUT_S * 1000})
    elif hook.kind == "amd":  # AsyncAmdStatusCallback: the verdict, after the answer
        out.extend(_verdict(p.get("AnsweredBy", "")))
    elif status in END_REASONS:
        pass  # the end, below
    elif _machine(p) and status == "in-progress":
        out.append({"type": EventType.ENDED, "reason": CallState.VOICEMAIL})
    elif hook.kind == "status":
        if status in ("initiated", "queued"):
            out.append({"type": EventType.INITIATED})
        elif status == "ringing":
            out.append({"type": EventType.RINGING})
        elif status == "in-progress" and hook.flow == "inline":
            # Only a call whose TwiML came with the dial learns its answer here; the others
            # learn it from Twilio's request for their TwiML, so nothing we send in reply
            # races the call's first document.
            out.append({"type": EventType.ANSWERED})
    elif hook.kind in ("voice", "answered", "unknown"):
        out.append({"type": EventType.ANSWERED})
    elif hook.kind == "played":
        out.append({"type": EventType.PLAYBACK_ENDED})
    elif hook.kind in SILENCE_MS:
        out.append({"type": EventType.SILENCE, "duration_ms": SILENCE_MS[hook.kind]})
    if status in END_REASONS:
        out.append({"type": EventType.ENDED, "reason": END_REASONS[status]})
    return out


def _whole(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9


def _recording_event(p: Mapping[str, str]) -> dict[str, object]:
    duration = p.get("RecordingDuration", "").strip()
    return {
        "type": EventType.RECORDING,
        "recording_url": p.get("RecordingUrl", "").strip() or None,
        "recording_duration_s": int(duration) if _whole(duration) else None,
        "recording_status": p.get("RecordingStatus", "").strip().lower() or None,
    }


def _transfer_events(hook: Hook) -> list[dict[str, object]]:
    """The called party answered (`transfer`): on a cold transfer the caller is with it now;
    on a warm one it first hears the whisper, and the Dial's action says how it ended."""
    if hook.kind == "transfer" and hook.status == "in-progress":
        target = hook.params.get("To", "").strip()[:256] or None
        warm = hook.query.get("mode") == "warm"
        status = TransferStatus.ANSWERED if warm else TransferStatus.BRIDGED
        return [{"type": EventType.TRANSFER, "transfer_status": status, "transfer_target": target}]
    return []


def parse(request: WebhookRequest, request_key: str | None) -> TwilioResult:
    hook = read_hook(request)
    # The called party's requests name its own CallSid; ours is its ParentCallSid.
    field_name = "ParentCallSid" if hook.kind in ("transfer", "whisper") else "CallSid"
    sid = _bounded(hook.params.get(field_name, "").strip(), 256, field_name)
    if sid is None:
        raise WebhookError(f"{field_name} is missing")
    events: list[CallEvent] = []
    for index, fields in enumerate(events_for(hook)):
        try:
            event = CallEvent(
                call_id=hook.call_id,
                provider_call_id=sid,
                dedupe_key=f"{request_key}:{index}" if request_key else None,
                **fields,
            )
        except ValidationError as exc:
            raise WebhookError(f"event {index}: {exc.errors()[0]['msg']}") from None
        events.append(event)
    return TwilioResult(events=events, content_type="application/xml", body="", hook=hook)


# ---------------------------------------------------------------------------- verification


def request_key(signed: str) -> str:
    """Stable id of a verified request: the string its signature covers, nothing else.

    Twilio signs the sorted set of form pairs, so a delivery with an empty pair (`&=`) added, a
    pair repeated or the pairs reordered, or the URL with the other port spelling, verifies with
    the same signature: it is the same request (a replay), not a new one to apply again.
    """
    return "twilio:" + hashlib.sha256(signed.encode()).hexdigest()


def _shown(url: str) -> str:
    try:
        return redact_url(url)
    except ValueError:  # e.g. a port that is not a number
        return "an unparsable URL"


def verify(
    request: WebhookRequest,
    auth_token: str | None,
    *,
    public_url: str | None,
    trust: ForwardingTrust,
) -> Verification:
    if not auth_token:
        return Verification(ok=False, reason="twilio.authToken is not configured")
    signature = request.headers.get("x-twilio-signature", "")
    if not signature:
        return Verification(ok=False, reason="missing X-Twilio-Signature")
    try:
        url = verification_url(
            request.url, request.headers, request.remote, public_url=public_url, trust=trust
        )
        hashed_body = "bodySHA256=" in urlsplit(url).query
    except ValueError:
        return Verification(ok=False, reason="the request URL could not be parsed")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    signed: str | None
    if request.method.upper() == "GET":
        signed = signatures.signed_string(auth_token, url, None, signature)
    elif ctype == "application/json" or hashed_body:
        signed = signatures.signed_string(auth_token, url, request.body, signature)
    else:
        try:
            pairs = _fields(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Verification(ok=False, reason="body is not a form Twilio signed")
        signed = signatures.signed_form_string(auth_token, url, pairs, signature)
    if signed is None:
        return Verification(ok=False, reason=f"invalid X-Twilio-Signature for {_shown(url)}")
    return Verification(ok=True, request_key=request_key(signed))
