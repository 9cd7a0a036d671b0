"""The Twilio provider: Programmable Voice over REST, TwiML, and signed webhooks.

Notify calls hand Twilio the whole message at dial (inline TwiML: `<Say>`, then a `<Redirect>`
back to us once it was said), so the callee hears it exactly once; that request reports the end
of playback, and the manager hangs up `outbound.notifyHangupDelaySec` later, as on every
carrier (the reply holds the line meanwhile, with a `<Hangup/>` after a generous pause in case
we never do). Conversation calls get
a keep-alive document from their Url and are then driven by live updates: each thing the bot
says is a `<Gather>` whose prompt is the `<Say>`, followed by a `<Redirect>` back to us, so
silence re-prompts instead of ending the call. A Gather's action reply replaces the running
document, so it is never empty while the call should stay up.

Stateless: every URL we give Twilio carries what a later request needs (our call id, the turn
token, what the request is for, a nonce that keeps each document's requests distinct), and
everything else comes from the call record the manager passes in.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.languages import own_language
from voice_call.models import CallRecord, Direction, EventType, Mode, Speaker
from voice_call.numbers import screened_key
from voice_call.providers.base import (
    DialRequest,
    DialResult,
    EventSink,
    ProviderError,
    ProviderStatus,
    TransferRequest,
    Verification,
    WebhookRequest,
    WebhookResult,
)
from voice_call.providers.speech_end import speech_end_seconds
from voice_call.providers.streamed_speech import StreamedSpeech
from voice_call.providers.twilio.markup import MAX_INLINE_TWIML, Twiml, empty, twilio_digits
from voice_call.providers.twilio.rest import TwilioRest, api_base
from voice_call.providers.twilio.voice import speech_for
from voice_call.providers.twilio.webhooks import (
    ANSWER_PAUSE_S,
    GATHER_TIMEOUT_S,
    HOLD_S,
    Hook,
    TwilioResult,
    parse,
    read_hook,
    verify,
)
from voice_call.providers.voices import CarrierVoice
from voice_call.security.exposure import forwarding_trust

if TYPE_CHECKING:
    from voice_call.media.registry import MediaSessions

CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# The carrier's own backstop: Twilio ends a call this long after our maxDurationSeconds even
# if we are down and never hang it up.
TIME_LIMIT_SLACK_S = 60
REJECTED = "rejected"
# After a notify message: how much longer than notifyHangupDelaySec the line is held before
# Twilio hangs up by itself (our own hang-up, at the delay, normally comes first).
NOTIFY_BACKSTOP_S = 30
# MachineDetectionTimeout: whole seconds, 3 to 59
AMD_TIMEOUT_MIN_S = 3
AMD_TIMEOUT_MAX_S = 59
MAX_WHISPER = 500  # a warm transfer's summary rides in the whisper URL's query


class TwilioProvider:
    name = "twilio"
    required_headers: tuple[tuple[str, ...], ...] = (("x-twilio-signature",),)
    delivers_notify_inline = True
    reports_playback_end = False
    detects_greeting_end = True  # MachineDetection=DetectMessageEnd: machine_end_beep

    def __init__(self, config: Config, clock: Clock, rest: TwilioRest | None = None) -> None:
        twilio = config.twilio
        if twilio is None or not twilio.account_sid or not twilio.auth_token:
            raise ProviderError("twilio.accountSid and twilio.authToken are required")
        self.config = config
        self.auth_token = twilio.auth_token
        self.rest = rest or TwilioRest(
            twilio.account_sid,
            twilio.auth_token,
            api_base(twilio.region, twilio.api_base_url),
            sleep=clock.sleep,
        )
        self.trust = forwarding_trust(config)
        self.webhook_url = config.public_url or ""
        self.pinned_url = config.public_url
        self.streamed = StreamedSpeech(config, native_replaces_stream=True)
        # Gather speechTimeout: a positive whole number of seconds (docs/carriers.md §1.3)
        self.speech_timeout_s = speech_end_seconds(config.silence_timeout_ms, 1, GATHER_TIMEOUT_S)

    @property
    def queues_speech(self) -> bool:
        # A stream queues what we say; a live TwiML update replaces what is playing.
        return self.streamed.enabled

    def _stream_name(self, hook: Hook) -> str | None:
        """What the call's stream token names, when the call streams: our id when the request
        carries it, else Twilio's CallSid (an inbound call's Voice URL request never names ours;
        the media route finds the call by either in the store, so a retried request answered by
        any instance streams to the same call)."""
        if not self.streamed.enabled:
            return None
        return hook.call_id or hook.params.get("CallSid", "").strip() or None

    # ---------------------------------------------------------------- wiring

    def attach(self, sink: EventSink) -> None:
        return None  # everything Twilio says arrives as a webhook

    def attach_media(self, media: MediaSessions) -> None:
        self.streamed.attach(media)

    def set_webhook_url(self, url: str, *, pinned: bool = False) -> None:
        self.webhook_url = url
        self.pinned_url = url if pinned else self.config.public_url

    async def close(self) -> None:
        await self.rest.close()

    def _url(self, kind: str, call_id: str | None = None, **extra: str | None) -> str:
        """A URL of ours for Twilio to call: the webhook plus what the request is for."""
        parts = urlsplit(self.webhook_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {"type": kind, "callId": call_id, **extra, "n": secrets.token_hex(6)}
        query += [(k, v) for k, v in ours.items() if v]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    def _speech(self, call: CallRecord) -> CarrierVoice:
        return speech_for(
            self.config,
            call.direction,
            call.to_number,
            screened_key(call),
            own_language(call.metadata),
        )

    # ---------------------------------------------------------------- documents

    def _listen(
        self,
        doc: Twiml,
        call_id: str | None,
        speech: CarrierVoice,
        turn_token: str | None,
        prompt: str | None = None,
    ) -> Twiml:
        """Listen (saying `prompt` first, interruptible), then come back if nothing was said."""
        action = self._url("gather", call_id, turnToken=turn_token)
        gather = doc.gather(action, speech, GATHER_TIMEOUT_S, self.speech_timeout_s)
        if prompt:
            doc.say(prompt, speech, parent=gather)
        return doc.redirect(self._url("reprompt", call_id, turnToken=turn_token))

    def _hold(self, call_id: str | None, seconds: int, then: str, token: str | None) -> str:
        doc = Twiml().pause(seconds)
        return doc.redirect(self._url(then, call_id, turnToken=token)).render()

    def notify_twiml(self, message: str, speech: CarrierVoice, call_id: str) -> str:
        """Say the message, then tell us it was said (a `played` request)."""
        return Twiml().say(message, speech).redirect(self._url("played", call_id)).render()

    def _after_notify(self) -> str:
        """The reply to `played`: hold the line while the manager waits notifyHangupDelaySec
        before it hangs up, then hang up here anyway (we may be gone)."""
        hold = self.config.outbound.notify_hangup_delay_sec + NOTIFY_BACKSTOP_S
        return Twiml().pause(hold).hangup().render()

    # ---------------------------------------------------------------- calls

    async def initiate_call(self, request: DialRequest) -> DialResult:
        if urlsplit(self.webhook_url).scheme not in ("http", "https"):
            raise ProviderError("no webhook URL for Twilio to call back yet: set publicUrl")
        speech = speech_for(
            self.config, Direction.OUTBOUND, request.to_number, None, request.language
        )
        form: dict[str, str | list[str]] = {
            "To": request.to_number,
            "From": request.from_number,
            "StatusCallbackEvent": list(CALL_EVENTS),
            "StatusCallbackMethod": "POST",
            "Timeout": str(min(600, max(1, math.ceil(self.config.ring_timeout_ms / 1000)))),
            "TimeLimit": str(self.config.max_duration_seconds + TIME_LIMIT_SLACK_S),
        }
        if request.amd:
            form.update(self._amd_form(request))
        if request.mode == Mode.NOTIFY.value and request.message and not request.amd:
            twiml = self.notify_twiml(request.message, speech, request.call_id)
            if len(twiml) > MAX_INLINE_TWIML:
                raise ProviderError(
                    f"the notify message is too long for Twilio ({len(twiml)} characters of "
                    f"TwiML, at most {MAX_INLINE_TWIML}): shorten it"
                )
            form["Twiml"] = twiml
            form["StatusCallback"] = self._url("status", request.call_id, flow="inline")
        else:
            form["Url"] = self._url("voice", request.call_id)
            form["Method"] = "POST"
            form["StatusCallback"] = self._url("status", request.call_id)
        if request.dtmf_sequence:
            # Twilio presses them once the call connects; its only pause is `w` (0.5 s).
            form["SendDigits"] = twilio_digits(request.dtmf_sequence)
        body = await self.rest.create_call(form)
        status = "queued" if body.get("status") == "queued" else "initiated"
        return DialResult(
            provider_call_id=str(body["sid"]),
            status=status,
            digits_sent=bool(request.dtmf_sequence),
        )

    def _amd_form(self, request: DialRequest) -> dict[str, str]:
        """Async AMD: the call runs its Url meanwhile; the verdict comes to an `amd` request.
        voicemail-drop waits for the end of the greeting (`machine_end_beep`, ...)."""
        detection = "DetectMessageEnd" if request.amd == "voicemail-drop" else "Enable"
        timeout_s = self.detection_ms(request.amd_timeout_ms) // 1000
        return {
            "MachineDetection": detection,
            "AsyncAmd": "true",
            "AsyncAmdStatusCallback": self._url("amd", request.call_id),
            "AsyncAmdStatusCallbackMethod": "POST",
            "MachineDetectionTimeout": str(timeout_s),
        }

    def detection_ms(self, timeout_ms: int) -> int:
        """MachineDetectionTimeout: whole seconds, 3 to 59."""
        return min(AMD_TIMEOUT_MAX_S, max(AMD_TIMEOUT_MIN_S, timeout_ms // 1000)) * 1000

    async def leave_voicemail(self, call: CallRecord, text: str) -> bool:
        """Say it natively (a live update: a stream, if any, ends), then a `played` request
        reports its end; the manager hangs up then."""
        await self._update(
            call, self.notify_twiml(text, self._speech(call), call.call_id), "leave voicemail"
        )
        return False

    async def answer(self, call: CallRecord) -> None:
        # Twilio answers an inbound call when it gets TwiML that is not <Reject>: the reply.
        return None

    async def hangup(self, call: CallRecord, reason: str) -> None:
        if call.provider_call_id is None:
            return
        if reason == "inbound-policy" and call.direction == Direction.INBOUND:
            return  # refused while ringing: the reply to its request is <Reject>
        await self.streamed.finish(call)  # let the goodbye be heard
        await self.rest.hangup(call.provider_call_id)

    async def _update(self, call: CallRecord, twiml: str, what: str) -> None:
        if call.provider_call_id is None:
            raise ProviderError(f"cannot {what}: the call has no Twilio sid yet")
        await self.rest.update_call(call.provider_call_id, {"Twiml": twiml}, what=what)

    async def speak(self, call: CallRecord, text: str) -> str | None:
        """Say `text`: over the call's media stream when it has one (returns once heard;
        what was heard when the caller cut it off), else as the prompt of a Gather."""
        if call.mode == Mode.NOTIFY and call.direction == Direction.OUTBOUND:
            await self._update(
                call, self.notify_twiml(text, self._speech(call), call.call_id), "speak"
            )
            return None
        return await self.streamed.say(call, text, lambda: self._say_natively(call, text))

    async def queue_speech(self, call: CallRecord, text: str) -> Awaitable[str | None] | None:
        if call.mode == Mode.NOTIFY and call.direction == Direction.OUTBOUND:
            return None
        return await self.streamed.queue(call, text, lambda: self._say_natively(call, text))

    async def _say_natively(self, call: CallRecord, text: str) -> None:
        """`text` as the prompt of a Gather, so the caller may answer (or interrupt) it.

        A live update replaces whatever the call is running, and the manager asks us to listen
        right after it asks us to speak: so speaking already ends in listening, and
        `start_listening` leaves a fresh prompt alone rather than cut it off mid-sentence.
        The turn token therefore has to be known here: it is read from the record
        (`metadata["turnToken"]`) when the manager puts it there; without it the Gather carries
        no token, and a transcript without one answers whichever turn is waiting.
        """
        token = call.metadata.get("turnToken")  # set by a manager that persists the turn
        turn = token if isinstance(token, str) else None
        doc = self._listen(Twiml(), call.call_id, self._speech(call), turn, text)
        await self._update(call, doc.render(), "speak")

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        if await self.streamed.live(call.call_id):
            return  # the stream's speech-to-text is always listening
        if call.transcript and call.transcript[-1].speaker == Speaker.BOT:
            return  # the prompt just spoken is already followed by its Gather
        doc = self._listen(Twiml(), call.call_id, self._speech(call), turn_token)
        await self._update(call, doc.render(), "listen")

    async def stop_listening(self, call: CallRecord) -> None:
        return None  # a Gather ends by itself (a stream's STT never stops); nothing to do

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        # A live update would replace the <Connect><Stream>: on a streamed call the keys go
        # into the stream as touch tones instead, as a handset would send them.
        if await self.streamed.send_digits(call, digits):
            return
        doc = Twiml().play_digits(digits)
        self._listen(doc, call.call_id, self._speech(call), None)
        await self._update(call, doc.render(), "send digits")

    async def transfer(self, call: CallRecord, request: TransferRequest) -> None:
        """A live update to `<Say>` (the announcement) and `<Dial>`: the caller goes to the
        target; a warm transfer's summary is the called party's whisper (`<Number url>`),
        said to them before the bridge. The update replaces a running `<Connect><Stream>`,
        so the stream ends first (the manager keeps the call while the transfer is under
        way). Outcomes: the called party's `answered` (bridged; on a warm transfer only
        answered, the whisper comes first) and the Dial action (busy, ..., completed)."""
        await self.streamed.finish(call)  # what the bot was saying is heard to the end
        speech = self._speech(call)
        doc = Twiml()
        if request.announce:
            doc.say(request.announce, speech)
        whisper = None
        if request.summary:
            whisper = self._url("whisper", call.call_id, say=request.summary[:MAX_WHISPER])
        doc.dial(
            request.target,
            action=self._url("dialed", call.call_id),
            timeout_s=min(600, max(5, math.ceil(self.config.ring_timeout_ms / 1000))),
            caller_id=call.to_number if call.direction == Direction.INBOUND else call.from_number,
            status_callback=self._url("transfer", call.call_id, mode=request.mode),
            whisper=whisper,
        )
        await self._update(call, doc.render(), "transfer")

    async def start_recording(self, call: CallRecord, channels: str) -> None:
        """The Recordings API on the live call; its status callback brings the file's URL."""
        if not call.provider_call_id:
            raise ProviderError("the call has no Twilio CallSid yet")
        form = {
            "RecordingChannels": channels,
            "RecordingStatusCallback": self._url("recording", call.call_id),
            "RecordingStatusCallbackEvent": "completed absent",
        }
        await self.rest.start_recording(call.provider_call_id, form)

    async def fetch_recording(self, url: str) -> tuple[bytes, str]:
        return await self.rest.fetch_recording(url), "wav"

    async def transfer_answered(self, call: CallRecord, leg: str, request: TransferRequest) -> None:
        return None  # the whisper (<Number url>) briefs the target

    async def transfer_failed(self, call: CallRecord) -> None:
        return None  # the Dial action's reply streams or listens again

    async def get_call_status(self, provider_call_id: str) -> ProviderStatus:
        try:
            body = await self.rest.fetch_call(provider_call_id)
        except ProviderError as exc:
            if getattr(exc, "status", None) == 404:
                return ProviderStatus(status="not-found", terminal=True)
            return ProviderStatus(status=f"error: {exc}", terminal=False, unknown=True)
        status = str(body.get("status") or "").lower()
        if not status:
            return ProviderStatus(status="unknown", terminal=False, unknown=True)
        return ProviderStatus(status=status, terminal=status in TERMINAL_STATUSES)

    # ---------------------------------------------------------------- webhooks

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return verify(request, self.auth_token, public_url=self.pinned_url, trust=self.trust)

    def parse_webhook(
        self, request: WebhookRequest, request_key: str | None = None
    ) -> WebhookResult:
        return parse(request, request_key)

    def webhook_response(
        self, request: WebhookRequest, result: WebhookResult, outcomes: list[str]
    ) -> WebhookResult:
        hook = result.hook if isinstance(result, TwilioResult) else None
        ended_here = any(
            event.type == EventType.ENDED and outcome == "applied"
            for event, outcome in zip(result.events, outcomes, strict=False)
        )
        result.body = self.reply(hook or read_hook(request), outcomes, ended_here)
        result.content_type = "application/xml"
        return result

    def reply(self, hook: Hook, outcomes: list[str], ended_here: bool = False) -> str:
        """The TwiML for a request, once its events were applied with these outcomes."""
        if not hook.answers_with_twiml:
            return empty()  # status callbacks need no TwiML
        if hook.kind == "whisper":  # the called party hears the summary, then is connected
            return Twiml().say(hook.query.get("say", ""), self._hook_speech(hook)).render()
        if any(o.startswith(REJECTED) for o in outcomes):
            return Twiml().reject(REJECTED).render()
        if not outcomes or all(o == "unknown-call" for o in outcomes):
            return empty()  # not a call of ours: an empty document ends it
        if ended_here or "ignored: call already ended" in outcomes:
            return Twiml().hangup().render()  # over for us (voicemail, max duration, ...)
        if hook.kind == "inbound":
            # Accepted: answer now (a Redirect is TwiML that is not <Reject>) and come straight
            # back, so the greeting's live update reaches a call that is already in progress.
            return Twiml().redirect(self._url("answered", hook.call_id)).render()
        stream_name = self._stream_name(hook)
        if hook.kind in ("voice", "answered") and stream_name:
            return self._stream_twiml(stream_name)
        if hook.kind == "played":
            return self._after_notify()
        if hook.kind == "dialed":
            return self._after_dial(hook)
        if hook.kind == "gather":
            # Replaces the running document: hold while the bot replies, then listen again.
            return self._hold(hook.call_id, ANSWER_PAUSE_S, "listen", hook.turn_token)
        if hook.kind in ("listen", "reprompt"):
            speech = self._hook_speech(hook)
            return self._listen(Twiml(), hook.call_id, speech, hook.turn_token).render()
        return self._hold(hook.call_id, HOLD_S, "hold", None)

    def _after_dial(self, hook: Hook) -> str:
        """The `<Dial>` ended: the parties talked (hang up), or the target was not reached
        and the caller is back with the bot (its stream again, or a hold while it speaks)."""
        if hook.params.get("DialCallStatus", "").strip().lower() in ("completed", "answered"):
            return Twiml().hangup().render()
        media = self.streamed.media
        if self._stream_name(hook) and hook.call_id and media is not None:
            # a new stream (the answer stream's token is spent): the bot speaks on it again
            url = media.stream_url(self.webhook_url, hook.call_id, token_in_query=False)
            return Twiml().stream(url, {"token": media.token(hook.call_id)}).render()
        return self._hold(hook.call_id, HOLD_S, "hold", None)

    def _stream_twiml(self, call_id: str) -> str:
        """Connect the call to our media WebSocket, STT and TTS warming while it connects."""
        url, token = self.streamed.setup(self.webhook_url, call_id)
        return Twiml().stream(url, {"token": token}).render()

    def _hook_speech(self, hook: Hook) -> CarrierVoice:
        return speech_for(self.config, hook.direction, hook.params.get("To"), None)


def build(config: Config, clock: Clock, home: Path) -> TwilioProvider:
    return TwilioProvider(config, clock)
