"""The XML we answer each Plivo callback with, rebuilt from the callback alone (any instance).

parse_webhook picks the document assuming the call is still ours; once the manager has applied
the events, `after` overrides it from the outcomes: an inbound call is answered or refused by
policy, a call the store no longer runs gets `<Hangup/>` instead of a keep-alive, and with
streaming on a live conversation's answer (outbound `answer`, inbound `answered`) becomes the
`<Stream>` to our media WebSocket — only then, so no stream token is minted and no STT
pre-warmed for a call that is over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voice_call.config import Config
from voice_call.models import EventType
from voice_call.providers.base import WebhookResult
from voice_call.providers.plivo import markup
from voice_call.providers.plivo.urls import Callback, Flow, callback_url
from voice_call.providers.plivo.voice import voice_for
from voice_call.providers.plivo.webhooks import Parsed
from voice_call.providers.speech_end import speech_end_seconds
from voice_call.providers.voices import CarrierVoice

# Seconds of silence a speak transfer starts with: a listen (or the next sentence) that follows
# at once replaces it before a word is played, and says it again, whole.
SPEAK_LEAD_S = 1
# A SPOKEN callback's `then` after a notify message: hold the line, the manager hangs up.
NOTIFIED = "hangup"
# How much longer than notifyHangupDelaySec the line is held after a notify message before
# Plivo hangs up by itself (our own hang-up, at the delay, normally comes first).
NOTIFY_BACKSTOP_S = 30
# An answer_url's `then` when machine detection runs: hold the line through its window, then
# come back (NO_MACHINE): no `Machine=true` by then means a person answered.
AMD_WINDOW = "amd"
AMD_WINDOW_MARGIN_S = 1


def machine_detection_ms(timeout_ms: int) -> int:
    """outbound.amd.timeoutMs as Plivo's machine_detection_time: 2000 to 10000 ms."""
    return min(10_000, max(2_000, timeout_ms))


MAX_STREAM_TIMEOUT_S = 86_400  # Plivo's default and ceiling for <Stream streamTimeout>
STREAM_TIMEOUT_MARGIN_S = 60  # the stream outlives our own max duration, which ends the call

# (webhook base as the carrier reached it, our call id) → the wss:// URL, token in its query
StreamUrl = Callable[[str, str], str]


@dataclass
class PlivoWebhookResult(WebhookResult):
    """What parse_webhook decided, kept for webhook_response (which may not raise)."""

    inbound_answer: bool = False
    base: str = ""  # our webhook as the carrier reached it: callbacks in the reply go there
    call_uuid: str = ""
    serves_xml: bool = True
    stream_call_id: str | None = None  # a conversation's answer: stream it once it is live


class Replies:
    def __init__(self, config: Config) -> None:
        self.default_voice = voice_for(config, None)
        # GetInput waits 5–60 s for speech; a silent turn is asked again (RELISTEN), so the
        # transcript timeout, not this, decides how long a turn waits.
        self.listen_timeout_s = int(min(60, max(5, config.transcript_timeout_ms // 1000)))
        self.speech_end_timeout = str(speech_end_seconds(config.silence_timeout_ms, 2, 10))
        self.notify_hold_s = config.outbound.notify_hangup_delay_sec + NOTIFY_BACKSTOP_S
        limit = config.max_duration_seconds + STREAM_TIMEOUT_MARGIN_S
        self.stream_timeout_s = min(MAX_STREAM_TIMEOUT_S, limit)
        self.stream_url: StreamUrl | None = None  # set when the provider streams its calls
        # after a failed transfer: a fresh stream (the answer stream's token is spent)
        self.restream_url: StreamUrl | None = None
        self.dial_timeout_s = int(min(600, max(5, config.ring_timeout_ms // 1000)))
        amd = config.outbound.amd
        self.amd_window_s = machine_detection_ms(amd.timeout_ms) // 1000 + AMD_WINDOW_MARGIN_S
        self.beep_wait_s = amd.timeout_ms // 1000  # a voicemail's longest wait for the beep

    def reply(self, parsed: Parsed, base: str) -> PlivoWebhookResult:
        """`base`: our webhook URL as the carrier reached it; callbacks in the reply go there."""
        return PlivoWebhookResult(
            events=parsed.events,
            body=self._document(parsed, base),
            content_type=markup.CONTENT_TYPE,
            inbound_answer=parsed.inbound_answer,
            base=base,
            call_uuid=parsed.get("CallUUID"),
            serves_xml=parsed.callback.flow
            not in (Flow.RING, Flow.HANGUP, Flow.MACHINE, Flow.DIAL_EVENT),
            stream_call_id=self._streams(parsed),
        )

    def _streams(self, parsed: Parsed) -> str | None:
        """What the stream token names when this request answers a conversation that streams
        its audio: our call id, else (an inbound call's `answered`) the CallUUID, which the
        media route finds in the store, so a retried answer on any instance streams the call."""
        cb = parsed.callback
        answering = cb.flow in (Flow.ANSWER, Flow.ANSWERED)
        ended = any(e.type == EventType.ENDED for e in parsed.events)
        if self.stream_url is None or not answering or ended:
            return None
        return cb.call_id or parsed.get("CallUUID") or None

    def after(self, result: WebhookResult, outcomes: list[str]) -> WebhookResult:
        """The reply once the events were applied. An accepted inbound call's `answered`
        request names no call of ours: its stream token names the CallUUID instead."""
        if not isinstance(result, PlivoWebhookResult) or not result.serves_xml:
            return result
        # The manager's outcome strings: "rejected: <why>" for a refused inbound call, and
        # "unknown-call" / "ignored: call already ended" for a call it does not (or no longer)
        # run, which must not be kept open by a keep-alive.
        refused = any(o.startswith("rejected") for o in outcomes)
        over = any(o == "unknown-call" or o.startswith("ignored: call already") for o in outcomes)
        if result.inbound_answer:
            if refused or over:
                result.body = markup.hangup("rejected")
            else:
                answered = Callback(flow=Flow.ANSWERED)
                result.body = markup.inbound_accept(callback_url(result.base, answered))
        elif over:
            result.body = markup.hangup()
        elif result.stream_call_id and self.stream_url is not None:
            url = self.stream_url(result.base, result.stream_call_id)
            result.body = markup.stream(url, self.stream_timeout_s)
        return result

    def _transfer_document(self, parsed: Parsed, voice: CarrierVoice, base: str) -> str:
        """A transfer's XML: the Dial (TRANSFER), the called party's briefing (WHISPER), and
        after the Dial (DIALED): hang up once the parties talked, else back to the bot."""
        cb = parsed.callback
        if cb.flow == Flow.WHISPER:
            return markup.whisper(cb.say or "", voice)
        if cb.flow == Flow.DIALED:
            if parsed.get("DialStatus").lower() == "completed":
                return markup.hangup()
            if self.restream_url is not None and cb.call_id:
                return markup.stream(self.restream_url(base, cb.call_id), self.stream_timeout_s)
            relisten = Callback(flow=Flow.RELISTEN, call_id=cb.call_id)
            return markup.keep_alive(callback_url(base, relisten))
        whisper = None
        if cb.brief:
            briefing = Callback(flow=Flow.WHISPER, call_id=cb.call_id, say=cb.brief)
            whisper = callback_url(base, briefing)
        return markup.dial(
            cb.to or "",
            announce=cb.say,
            voice=voice,
            action_url=callback_url(base, Callback(flow=Flow.DIALED, call_id=cb.call_id)),
            callback_url=callback_url(
                base, Callback(flow=Flow.DIAL_EVENT, call_id=cb.call_id, then=cb.then)
            ),
            timeout_s=self.dial_timeout_s,
            caller_id=None,
            whisper_url=whisper,
        )

    def _document(self, parsed: Parsed, base: str) -> str:
        cb, flow = parsed.callback, parsed.callback.flow
        ended = any(e.type == EventType.ENDED for e in parsed.events)
        if ended or parsed.inbound_answer or flow in (Flow.RING, Flow.HANGUP, Flow.MACHINE):
            return markup.empty()  # ignored by Plivo, or chosen once the policy has spoken
        voice = CarrierVoice(
            cb.voice or self.default_voice.voice, cb.language or self.default_voice.language
        )
        if flow == Flow.NOTIFY and cb.say:
            spoken = Callback(flow=Flow.SPOKEN, call_id=cb.call_id, then=NOTIFIED)
            return markup.notify(cb.say, voice, callback_url(base, spoken))
        if flow == Flow.ANSWER and cb.then == AMD_WINDOW:
            window_over = Callback(flow=Flow.NO_MACHINE, call_id=cb.call_id)
            return markup.wait_then(self.amd_window_s, callback_url(base, window_over))
        if flow == Flow.VOICEMAIL and cb.say:
            spoken = Callback(flow=Flow.SPOKEN, call_id=cb.call_id, then=NOTIFIED)
            return markup.voicemail(cb.say, voice, self.beep_wait_s, callback_url(base, spoken))
        if flow in (Flow.TRANSFER, Flow.WHISPER, Flow.DIALED):
            return self._transfer_document(parsed, voice, base)
        if flow == Flow.SPOKEN and cb.then == NOTIFIED:
            return markup.hold_then_hangup(self.notify_hold_s)
        if flow == Flow.SPEAK and cb.say:
            spoken = Callback(
                flow=Flow.SPOKEN,
                call_id=cb.call_id,
                voice=cb.voice,
                language=cb.language,
                then=cb.then,
            )
            return markup.speak(cb.say, voice, SPEAK_LEAD_S, callback_url(base, spoken))
        listens = flow in (Flow.LISTEN, Flow.RELISTEN) or (
            flow == Flow.SPOKEN and cb.then == "listen"
        )
        if listens or (flow == Flow.INPUT and not parsed.heard):
            prompt = cb.say if flow == Flow.LISTEN else None
            return self._listen(cb, voice, base, prompt)
        if flow is None and not parsed.events:
            return markup.empty()  # a URL we did not write, about nothing we know
        keep_alive = Callback(flow=Flow.KEEPALIVE, call_id=cb.call_id)
        return markup.keep_alive(callback_url(base, keep_alive))

    def _listen(self, cb: Callback, voice: CarrierVoice, base: str, prompt: str | None) -> str:
        action = Callback(flow=Flow.INPUT, call_id=cb.call_id, turn_token=cb.turn_token)
        again = Callback(
            flow=Flow.RELISTEN,
            call_id=cb.call_id,
            turn_token=cb.turn_token,
            voice=cb.voice,
            language=cb.language,
        )
        listen = markup.Listen(
            action=callback_url(base, action),
            language=voice.language,
            execution_timeout_s=self.listen_timeout_s,
            speech_end_timeout=self.speech_end_timeout,
        )
        return markup.listen(listen, prompt, voice, callback_url(base, again))
