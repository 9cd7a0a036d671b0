"""The Plivo provider: Voice API calls, Plivo XML served from our webhook, GetInput speech.

How a call runs (docs/carriers.md §3):
- dial: `POST Call/` with answer, ring and hangup URLs that carry our call id and a `flow`;
  Plivo reports the RequestUUID now and the CallUUID on the first callback, which the manager
  stores as the record's provider call id (the RequestUUID kept as an alias for cancelling a
  call that still rings). Notify calls get their message from the answer URL (Speak, then a
  Redirect back that reports its end; the manager hangs up notifyHangupDelaySec later).
- speak / listen mid-call: transfer the A leg to our webhook; the XML to run is rebuilt from
  the (signed) URL alone, so any instance serves it and nothing is kept in memory here.
  A transfer replaces the running document, so each one says again what the one before may
  not have finished (a listen right after its prompt, a reply streamed sentence by sentence):
  the GetInput nests the prompt, and nothing the caller should hear is cut off.
- inbound: the application's answer URL reaches us with no call id; the manager's policy
  decides, and the reply answers (Redirect back to us, then the greeting) or rejects
  (`<Hangup reason="rejected"/>`).
- every XML reply for a call the store says has ended is `<Hangup/>`: no line is kept open
  for a call we no longer track.

Streaming (`streaming.enabled`): a conversation's answer XML (outbound answer URL; inbound, the
`answered` request after acceptance, whose URL then names our call) is a bidirectional
`<Stream keepCallAlive>` to our media WebSocket, its token in the URL, built from the webhook
as the carrier reached it (any instance); STT and TTS warm from the dial on. We then speak
through the call's MediaSession (our TTS, paced µ-law frames) and hear the caller through
streaming STT; the session reports playback ends and barge-ins itself. A transfer replaces the
running XML and would close the stream (and so end the call), so a streamed call is never
transferred to speak or listen (only to hand the caller to a person, `transfer`, which the
manager guards): listening is a no-op, and the native Speak transfer is used only when no stream
came up at all. Notify calls stay native (Speak from the answer URL): one path, the callee
hears the message once. DTMF goes over REST either way.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.errors import Unavailable
from voice_call.languages import own_language
from voice_call.models import CallRecord, Direction, Mode, Speaker, TranscriptEntry
from voice_call.numbers import our_route, route_for
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
from voice_call.providers.plivo.replies import (
    AMD_WINDOW,
    SPEAK_LEAD_S,
    Replies,
    machine_detection_ms,
)
from voice_call.providers.plivo.rest import PlivoCallGone, PlivoRest
from voice_call.providers.plivo.urls import Callback, Flow, TextTooLong, callback_url, encode_text
from voice_call.providers.plivo.voice import voice_for
from voice_call.providers.plivo.webhooks import parse, verify
from voice_call.providers.streamed_speech import StreamedSpeech
from voice_call.security.exposure import forwarding_trust
from voice_call.security.public_url import verification_url

if TYPE_CHECKING:
    from voice_call.media.registry import MediaSessions

log = logging.getLogger("voice_call.plivo")

CHARS_PER_SECOND = 12.0  # a slow speaking rate, to judge whether a prompt may still be playing
CARRIER_LIMIT_MARGIN_S = 60  # Plivo's time_limit: our own max duration ends the call first
# Our DTMF pause characters in Plivo's spelling (w = 0.5 s, W = 1 s).
_DTMF = str.maketrans({"p": "w", ",": "w", "P": "W"})
_HANGUP_CODES = {
    1000: "canceled",
    3000: "busy",
    3010: "busy",
    3020: "no-answer",
}


class PlivoProvider:
    name = "plivo"
    # V3 or the main account's V3 alone, with the nonce (401 before the body otherwise); the V2
    # pairs only when plivo.allowV2Signatures is on (see webhooks.py).
    required_headers: tuple[tuple[str, ...], ...] = (
        ("x-plivo-signature-v3", "x-plivo-signature-v3-nonce"),
        ("x-plivo-signature-ma-v3", "x-plivo-signature-v3-nonce"),
    )
    _V2_HEADERS = (
        ("x-plivo-signature-v2", "x-plivo-signature-v2-nonce"),
        ("x-plivo-signature-ma-v2", "x-plivo-signature-v2-nonce"),
    )
    delivers_notify_inline = True  # the answer URL's XML says it, then reports its end
    # Plivo reports no greeting end: leave_voicemail's XML waits for the beep itself
    detects_greeting_end = False
    # Each Speak is followed by a Redirect back to us; on a stream the session reports it.
    reports_playback_end = True

    def __init__(self, config: Config, clock: Clock, rest: PlivoRest) -> None:
        self.config = config
        self.clock = clock
        self.rest = rest
        self.auth_token = config.plivo.auth_token if config.plivo else None
        self.allow_v2 = bool(config.plivo and config.plivo.allow_v2_signatures)
        if self.allow_v2:
            self.required_headers = (*self.required_headers, *self._V2_HEADERS)
        self.webhook_url = ""
        self.trust = forwarding_trust(config)
        self.pinned_url = config.public_url
        self.replies = Replies(config)
        self.streamed = StreamedSpeech(config, native_replaces_stream=True)

    @property
    def queues_speech(self) -> bool:
        # A stream queues what we say; a transfer replaces the XML the call is running.
        return self.streamed.enabled

    async def _streamed(self, call: CallRecord) -> bool:
        """The call's audio runs over our media stream: every call once streaming is on, but
        an outbound notify (its message is the answer XML's Speak) unless it streams anyway."""
        if not self.streamed.enabled:
            return False
        notify = call.mode == Mode.NOTIFY and call.direction == Direction.OUTBOUND
        return not notify or await self.streamed.live(call.call_id)

    def _stream_url(self, base: str, call_id: str) -> str:
        url, _token = self.streamed.setup(base, call_id)  # the token rides in the URL
        return url

    # ---------------------------------------------------------------- wiring

    def attach(self, sink: EventSink) -> None:
        return None  # every Plivo event arrives over HTTP

    def attach_media(self, media: MediaSessions) -> None:
        self.streamed.attach(media)
        self.replies.stream_url = self._stream_url if self.streamed.enabled else None
        self.replies.restream_url = self._restream_url if self.streamed.enabled else None

    def _restream_url(self, base: str, call_id: str) -> str:
        """A new stream for a call back from a failed transfer, with a token of its own."""
        assert self.streamed.media is not None
        return self.streamed.media.stream_url(base, call_id, token_in_query=True)

    def set_webhook_url(self, url: str, *, pinned: bool = False) -> None:
        self.webhook_url = url
        self.pinned_url = url if pinned else self.config.public_url

    async def close(self) -> None:
        await self.rest.close()

    def _url(self, callback: Callback, base: str | None = None) -> str:
        return callback_url(base or self.webhook_url, callback)

    # ---------------------------------------------------------------- actions

    async def initiate_call(self, request: DialRequest) -> DialResult:
        base = request.webhook_url or self.webhook_url
        voice = voice_for(
            self.config, route_for(self.config, request.from_number), request.language
        )
        # With detection the message waits for the verdict: the answer only holds the line.
        notify = request.mode == "notify" and bool(request.message) and not request.amd
        answer = Callback(
            flow=Flow.NOTIFY if notify else Flow.ANSWER,
            call_id=request.call_id,
            then=AMD_WINDOW if request.amd else None,
            say=request.message if notify else None,
            voice=voice.voice if notify else None,
            language=voice.language if notify else None,
        )
        try:
            answer_url = self._url(answer, base)
        except TextTooLong as exc:
            raise ProviderError(str(exc)) from None
        body = {
            "from": plivo_number(request.from_number),
            "to": plivo_number(request.to_number),
            "answer_url": answer_url,
            "answer_method": "POST",
            "ring_url": self._url(Callback(flow=Flow.RING, call_id=request.call_id), base),
            "ring_method": "POST",
            "hangup_url": self._url(Callback(flow=Flow.HANGUP, call_id=request.call_id), base),
            "hangup_method": "POST",
            # Not `hangup_on_ring`: that counts from the start of ringing and also cuts an
            # answered call; `ring_timeout` is how long it may ring unanswered.
            "ring_timeout": max(1, math.ceil(self.config.ring_timeout_ms / 1000)),
            "time_limit": min(86_400, self.config.max_duration_seconds + CARRIER_LIMIT_MARGIN_S),
        }
        if request.amd:
            machine = Callback(flow=Flow.MACHINE, call_id=request.call_id)
            body["machine_detection"] = "true"  # not "hangup": the manager decides
            body["machine_detection_time"] = machine_detection_ms(request.amd_timeout_ms)
            body["machine_detection_url"] = self._url(machine, base)
            body["machine_detection_method"] = "POST"
        if request.dtmf_sequence:
            # Plivo presses them once the call is answered (not `send_on_preanswer`).
            body["send_digits"] = request.dtmf_sequence.translate(_DTMF)
        request_uuids = await self.rest.create_call(body)
        if self.streamed.enabled and not notify:
            self.streamed.setup(base, request.call_id)  # STT and TTS warm while it rings
        return DialResult(
            provider_call_id=request_uuids[0],
            status="queued",
            digits_sent=bool(request.dtmf_sequence),
        )

    async def answer(self, call: CallRecord) -> None:
        # The XML our answer URL returns answers it. Its stream token names the CallUUID
        # (replies.py), which the media route finds in the store: nothing to remember here.
        return None

    async def hangup(self, call: CallRecord, reason: str) -> None:
        refused = reason == "inbound-policy" and call.direction == Direction.INBOUND
        if refused and call.answered_at is None:
            return  # the answer URL's reply hangs it up, with a reason
        uuid = call.provider_call_id
        if not uuid:
            return
        await self.streamed.finish(call)  # let the goodbye be heard
        try:
            await self.rest.hangup_call(uuid)
            return
        except PlivoCallGone:
            pass  # not a live call (yet): a request still queued or ringing, or over already
        aliases = call.metadata.get("providerCallIdAliases")
        candidates = [a for a in aliases if isinstance(a, str)] if isinstance(aliases, list) else []
        for request_uuid in dict.fromkeys([*candidates, uuid]):
            try:
                await self.rest.cancel_request(request_uuid)
                return
            except PlivoCallGone:
                continue
        log.info("plivo: nothing to hang up for %s: the call is over", call.call_id)

    async def speak(self, call: CallRecord, text: str) -> str | None:
        """Say `text` over the call's stream, and return what was heard when the caller cut it
        off (None: all of it). Without a stream, transfer the call to a document that says it
        — after whatever we said just before that may not have been played yet (`_unplayed`).
        """
        if await self._streamed(call):
            return await self.streamed.say(call, text, lambda: self._transfer_to_say(call, text))
        await self._transfer_to_say(call, text)
        return None

    async def queue_speech(self, call: CallRecord, text: str) -> Awaitable[str | None] | None:
        if not await self._streamed(call):
            return None
        return await self.streamed.queue(call, text, lambda: self._transfer_to_say(call, text))

    async def _transfer_to_say(self, call: CallRecord, text: str) -> None:
        voice = voice_for(self.config, our_route(self.config, call), own_language(call.metadata))
        # In a conversation the caller may answer what we said, so a Speak not followed by a
        # listen (an agent's plain `speak`) listens once it is over; a notify call just waits.
        talking = call.mode == Mode.CONVERSATION or call.direction == Direction.INBOUND
        speak = Callback(
            flow=Flow.SPEAK,
            call_id=call.call_id,
            voice=voice.voice,
            language=voice.language,
            then="listen" if talking else None,
        )
        url = self._url_saying(speak, [*self._unplayed(call), text])
        if url is None:
            raise ProviderError(_too_long(text))
        await self.rest.transfer(_live_uuid(call), url)

    async def transfer(self, call: CallRecord, request: TransferRequest) -> None:
        """Transfer the A leg to XML that says the announcement and `<Dial>`s the target; a
        warm transfer's summary is the Dial's `confirmSound`, heard by the called party
        before the bridge. The new XML replaces a running `<Stream>`, so the stream ends first
        (the manager keeps the call while the transfer is under way)."""
        await self.streamed.finish(call)  # what the bot was saying is heard to the end
        voice = voice_for(self.config, our_route(self.config, call), own_language(call.metadata))
        target = Callback(
            flow=Flow.TRANSFER,
            call_id=call.call_id,
            say=request.announce,
            voice=voice.voice,
            language=voice.language,
            then=request.mode,
            to=request.target,
            brief=request.summary,
        )
        try:
            url = self._url(target)
        except TextTooLong as exc:
            raise ProviderError(str(exc)) from None
        await self.rest.transfer(_live_uuid(call), url)

    async def transfer_answered(self, call: CallRecord, leg: str, request: TransferRequest) -> None:
        return None  # the Dial's confirmSound briefs the target

    async def transfer_failed(self, call: CallRecord) -> None:
        return None  # the Dial action's reply streams or listens again

    def detection_ms(self, timeout_ms: int) -> int:
        return machine_detection_ms(timeout_ms)  # 2000 to 10000 ms

    async def leave_voicemail(self, call: CallRecord, text: str) -> bool:
        """Transfer to a document that waits for the beep (Plivo reports no greeting end),
        says `text`, then tells us it was said."""
        voice = voice_for(self.config, our_route(self.config, call), own_language(call.metadata))
        voicemail = Callback(
            flow=Flow.VOICEMAIL,
            call_id=call.call_id,
            say=text,
            voice=voice.voice,
            language=voice.language,
        )
        try:
            url = self._url(voicemail)
        except TextTooLong:
            raise ProviderError(_too_long(text)) from None
        await self.rest.transfer(_live_uuid(call), url)
        return False

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        if await self._streamed(call) and await self.streamed.session(call) is not None:
            return  # the stream's speech-to-text is always listening
        voice = voice_for(self.config, our_route(self.config, call), own_language(call.metadata))
        listen = Callback(
            flow=Flow.LISTEN,
            call_id=call.call_id,
            turn_token=turn_token,
            voice=voice.voice,
            language=voice.language,
        )
        url = self._url_saying(listen, self._unplayed(call)) or self._url(listen)
        await self.rest.transfer(_live_uuid(call), url)

    async def stop_listening(self, call: CallRecord) -> None:
        if await self._streamed(call):
            return  # a stream's STT never stops, and a transfer would close the stream
        url = self._url(Callback(flow=Flow.KEEPALIVE, call_id=call.call_id))
        with contextlib.suppress(PlivoCallGone):  # the call is over: nothing is listening
            await self.rest.transfer(_live_uuid(call), url)

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        await self.rest.send_digits(_live_uuid(call), digits.translate(_DTMF))

    async def start_recording(self, call: CallRecord, channels: str) -> None:
        """The Record API on the live call; its callback_url brings the file's URL. Plivo
        records the call's audio in one file (`channels` is Twilio's and Telnyx's choice)."""
        callback = Callback(flow=Flow.RECORDED, call_id=call.call_id)
        await self.rest.record(_live_uuid(call), self._url(callback))

    async def fetch_recording(self, url: str) -> tuple[bytes, str]:
        extension = "mp3" if urlsplit(url).path.endswith(".mp3") else "wav"
        return await self.rest.download(url), extension

    async def get_call_status(self, provider_call_id: str) -> ProviderStatus:
        try:
            live = await self.rest.live_call(provider_call_id)
            status = str(live.get("call_status") or "in-progress").lower()
            return ProviderStatus(status=status, terminal=False)
        except PlivoCallGone:
            pass
        except ProviderError as exc:
            return ProviderStatus(status=f"error: {exc}", terminal=False, unknown=True)
        try:
            detail = await self.rest.call_detail(provider_call_id)
        except PlivoCallGone:
            return ProviderStatus(status="not-found", terminal=True)
        except ProviderError as exc:
            return ProviderStatus(status=f"error: {exc}", terminal=False, unknown=True)
        code = detail.get("hangup_cause_code")
        status = _HANGUP_CODES.get(code, "completed") if isinstance(code, int) else "completed"
        if isinstance(code, int) and 2000 <= code < 3000:
            status = "failed"
        return ProviderStatus(status=status, terminal=True)

    def _url_saying(self, callback: Callback, lines: list[str]) -> str | None:
        """`callback` saying `lines`; the oldest dropped while they do not fit in a URL (the
        newest never is: None when even it alone is too long)."""
        while lines:
            try:
                return self._url(replace(callback, say=" ".join(lines)))
            except TextTooLong:
                lines = lines[1:]
        return None

    def _unplayed(self, call: CallRecord) -> list[str]:
        """What we said last that may not have been played yet, or only in part.

        A transfer replaces the document Plivo runs, and the manager asks for a listen right
        after a prompt, and for one speak per sentence of a streamed reply. So every transfer
        says again what the one it replaces had not finished: each of our lines since the
        caller last spoke, on an estimated schedule (a document starts SPEAK_LEAD_S after its
        transfer; lines last len / CHARS_PER_SECOND, a slow rate, so a line is said again
        rather than lost). Lines that come within the lead of each other are thus heard once,
        whole, from the last document; a line already under way is started over.
        """
        run: list[TranscriptEntry] = []
        for entry in reversed(call.transcript):
            if entry.speaker != Speaker.BOT:
                break
            run.insert(0, entry)
        queue: list[tuple[str, float]] = []  # (line, estimated end) of the running document
        for entry in run:
            lines = [line for line, end in queue if end > entry.at] + [entry.text]
            queue, end = [], entry.at + SPEAK_LEAD_S
            for line in lines:
                end += len(line) / CHARS_PER_SECOND + 0.5
                queue.append((line, end))
        now = self.clock.now()
        return [line for line, end in queue if end > now and line]

    # ---------------------------------------------------------------- webhooks

    def _carrier_url(self, request: WebhookRequest) -> str:
        """The URL the carrier called (publicUrl pinned, or reconstructed as configured)."""
        return verification_url(
            request.url,
            request.headers,
            request.remote,
            public_url=self.pinned_url,
            trust=self.trust,
        )

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        url = self._carrier_url(request)
        return verify(request, self.auth_token, url, allow_v2=self.allow_v2)

    def parse_webhook(
        self, request: WebhookRequest, request_key: str | None = None
    ) -> WebhookResult:
        parsed = parse(request, request_key)
        # Callback URLs in a reply go where the carrier reached us (publicUrl when set).
        parts = urlsplit(self._carrier_url(request))
        base = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else ""
        return self.replies.reply(parsed, base or self.webhook_url)

    def webhook_response(
        self, request: WebhookRequest, result: WebhookResult, outcomes: list[str]
    ) -> WebhookResult:
        return self.replies.after(result, outcomes)


def _too_long(text: str) -> str:
    try:
        encode_text(text)
    except TextTooLong as exc:
        return str(exc)
    return "the text is too long to hand to Plivo"


def _live_uuid(call: CallRecord) -> str:
    if not call.provider_call_id:
        raise ProviderError("Plivo has not reported this call's CallUUID yet")
    return call.provider_call_id


def plivo_number(number: str) -> str:
    """Plivo wants country code and number without the `+`; SIP URIs go as they are."""
    return number[1:] if number.startswith("+") and number[1:].isdigit() else number


def build(config: Config, clock: Clock, home: Path) -> PlivoProvider:
    block = config.plivo
    if block is None or not block.auth_id or not block.auth_token:
        raise Unavailable(
            'provider "plivo" needs plivo.authId and plivo.authToken '
            "(or PLIVO_AUTH_ID / PLIVO_AUTH_TOKEN)"
        )
    rest = PlivoRest(block.auth_id, block.auth_token, block.api_base_url)
    return PlivoProvider(config, clock, rest)
