"""The Provider protocol: intentions out (dial, speak, listen, hang up), normalised events in.

A provider keeps no call state of its own that is not also in the store, so any instance can
serve any webhook. Carrier-specific shapes never leave this package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from voice_call.models import CallEvent, CallRecord

if TYPE_CHECKING:
    from voice_call.media.registry import MediaSessions

EventSink = Callable[[CallEvent], Awaitable[object]]


@dataclass(frozen=True)
class DialRequest:
    call_id: str
    from_number: str
    to_number: str
    webhook_url: str
    mode: str
    message: str | None = None
    # keys to press once the callee answers (`dtmfSequence`: 0-9 * # w W, checked already)
    dtmf_sequence: str | None = None
    # answering-machine detection: "detect" | "voicemail-drop" (None: off), and how long the
    # carrier may listen before it answers "unknown"
    amd: str | None = None
    amd_timeout_ms: int = 30_000
    # the call's own language (initiate's `language`), over the route's/carrier's/top level
    language: str | None = None


@dataclass(frozen=True)
class DialResult:
    provider_call_id: str
    status: str = "initiated"  # or "queued"
    # The carrier presses `dtmf_sequence` itself once the call connects (Twilio SendDigits,
    # Plivo send_digits); False: the manager sends them with `send_dtmf` on answer.
    digits_sent: bool = False


@dataclass(frozen=True)
class ProviderStatus:
    """What the carrier says about a call, used to reconcile on restore."""

    status: str
    terminal: bool
    unknown: bool = False  # a transient error: keep the call and re-arm its timers


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    url: str  # the URL as received (scheme://host/path?query)
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    remote: str | None = None


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str = ""
    request_key: str | None = None  # stable id of the verified request, for the replay cache


@dataclass
class WebhookResult:
    events: list[CallEvent] = field(default_factory=list)
    status_code: int = 200
    body: str = "OK"
    content_type: str = "text/plain"


class WebhookError(ValueError):
    """A webhook body that cannot be parsed: answered 400 with this reason, nothing applied."""


class ProviderError(RuntimeError):
    """A carrier refused or failed an action."""


@runtime_checkable
class SpeechQueue(Protocol):
    """Optional: a provider that can queue speech and report later what was heard (a media
    stream). The manager then hands a reply's next sentence over while the one before is
    still playing, so its synthesis overlaps that playback (no silent gap at each sentence)."""

    async def queue_speech(self, call: CallRecord, text: str) -> Awaitable[str | None] | None:
        """Queue `text` behind what is playing; an awaitable settling once it played (None)
        or was cut off (what was heard). None: cannot queue now (no stream) — use `speak`.
        The awaitable raises ProviderError when the speech failed after audio went out."""
        ...


@dataclass(frozen=True)
class TransferRequest:
    """Hand the caller to `target` (E.164 or a SIP URI, checked already). Cold: say
    `announce` to the caller first, then connect them. Warm: the target hears `summary`
    before the two are bridged. Either way the bot leaves the call once they are connected."""

    target: str
    mode: str  # "cold" | "warm"
    announce: str | None = None
    summary: str | None = None


@runtime_checkable
class Transfers(Protocol):
    """Optional: a provider that can transfer a call to a person. It reports the outcome as
    `call.transfer` events (bridged, or busy / no-answer / failed, which hand the caller back
    to the bot); a media stream it carried ends first."""

    async def transfer(self, call: CallRecord, request: TransferRequest) -> None:
        """Start the transfer; returns once the carrier accepted it (ProviderError if not)."""
        ...

    async def transfer_answered(self, call: CallRecord, leg: str, request: TransferRequest) -> None:
        """The target answered a warm transfer on its own `leg` (a `call.transfer` event that
        names one): brief it with `request.summary`, then connect it to the caller. Only a
        carrier whose events name the leg is asked (Telnyx); the others brief by markup."""
        ...

    async def transfer_failed(self, call: CallRecord) -> None:
        """The caller is back with the bot: give back what the transfer took (a stream)."""
        ...


@runtime_checkable
class Voicemails(Protocol):
    """Optional: a provider that dials with the carrier's answering-machine detection
    (`DialRequest.amd`) and reports its verdict as `call.amd` events."""

    # True: the carrier reports the end of a machine's greeting (the beep) as
    # `call.machine-greeting-ended`; False: `leave_voicemail` waits for the beep itself.
    detects_greeting_end: bool

    def detection_ms(self, timeout_ms: int) -> int:
        """How long the carrier listens at most, asked for `outbound.amd.timeoutMs` (its own
        range may be narrower): a verdict is owed by then."""
        ...

    async def leave_voicemail(self, call: CallRecord, text: str) -> bool:
        """Say `text` to the machine. True: it was said in full (a stream waited for it);
        False: the carrier reports its end (`call.playback-ended`) or hangs up after it."""
        ...


@runtime_checkable
class Recordings(Protocol):
    """Optional: a provider whose carrier records calls. The file's URL, duration and status
    come back as `call.recording` events (after the call, as a rule)."""

    async def start_recording(self, call: CallRecord, channels: str) -> None:
        """Record the answered call from now on; `channels`: "mono" or "dual" (each party on
        its own channel). Returns once the carrier accepted (ProviderError if not)."""
        ...

    async def fetch_recording(self, url: str) -> tuple[bytes, str]:
        """The file a `call.recording` event named, fetched as the carrier requires (its
        credentials go only to its own API host); (audio, file extension)."""
        ...


class Provider(Protocol):
    name: str
    # Headers that must be present before the body is read (pre-auth gate); empty for mock.
    required_headers: tuple[tuple[str, ...], ...]
    # The carrier says the notify message itself, handed over at dial (Twilio's inline TwiML,
    # Plivo's answer XML): the manager then does not speak it again. Such a carrier reports the
    # message's end (`call.playback-ended`), so the hang-up follows notifyHangupDelaySec later.
    delivers_notify_inline: bool
    # The carrier reports when playback ends (`call.playback-ended`): notify calls hang up
    # after that instead of a fixed delay after the speak request.
    reports_playback_end: bool

    # A new `speak` queues behind what is playing (Telnyx, streams, mock). False when it
    # replaces it (a live TwiML update, a Plivo transfer): the manager then speaks a streamed
    # reply in one piece instead of sentence by sentence. Read-only: a provider may decide it
    # per configuration (Twilio queues once its calls speak over a media stream).
    @property
    def queues_speech(self) -> bool: ...

    def attach(self, sink: EventSink) -> None:
        """Where the provider reports events that do not arrive over HTTP (mock callee)."""
        ...

    def attach_media(self, media: MediaSessions) -> None:
        """The Runtime's media streams, when `streaming.enabled`: a provider that can carry
        a call's audio over a stream speaks and listens through them (no-op elsewhere)."""
        ...

    def set_webhook_url(self, url: str, *, pinned: bool = False) -> None:
        """The URL the carrier reaches us at: for the callback URLs a provider puts in REST
        calls and TwiML/XML. `pinned`: it is the public URL carriers sign over (publicUrl or
        an open tunnel), so signatures are verified against it rather than a URL rebuilt
        from the request."""
        ...

    async def initiate_call(self, request: DialRequest) -> DialResult: ...

    async def answer(self, call: CallRecord) -> None: ...

    async def hangup(self, call: CallRecord, reason: str) -> None: ...

    async def speak(self, call: CallRecord, text: str) -> str | None:
        """Say `text`; returns once the carrier accepted it (playback may continue).

        A provider that waits for playback (a media stream) returns what the caller heard
        when they cut it off, for the transcript; None: `text`, as far as we know."""
        ...

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None: ...

    async def stop_listening(self, call: CallRecord) -> None: ...

    async def send_dtmf(self, call: CallRecord, digits: str) -> None: ...

    async def get_call_status(self, provider_call_id: str) -> ProviderStatus: ...

    def verify_webhook(self, request: WebhookRequest) -> Verification: ...

    def parse_webhook(
        self, request: WebhookRequest, request_key: str | None = None
    ) -> WebhookResult:
        """Raise WebhookError for a malformed body. `request_key` seeds event dedupe keys."""
        ...

    def webhook_response(
        self, request: WebhookRequest, result: WebhookResult, outcomes: list[str]
    ) -> WebhookResult:
        """The reply to the carrier once the parsed events were applied, given their outcomes
        (`accepted`, `rejected: ...`, `duplicate`, ...). Most providers return `result`."""
        ...

    async def close(self) -> None: ...
