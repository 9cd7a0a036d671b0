"""The Telnyx provider: Call Control v2 calls, spoken by Telnyx or over our media stream.

Outbound: dial with `client_state` = base64 of our call id; on `call.answered` the manager
speaks (notify) or speaks and listens (conversation, `transcription_start`). Inbound: Telnyx
parks the call and sends `call.initiated`; the manager screens it and we really `answer`
(the seed's calls rang forever) or `reject` it. Telnyx reports `call.speak.ended`, so a
notify call hangs up after the message was heard whole, never after a blind delay.

Streaming (`streaming.enabled`): the Dial (outbound) or the answer (inbound) carries
`stream_url` with the call's token in its query (stream_fields.py), and STT and TTS
warm while the phone rings. Once Telnyx opens the socket, everything is said as our own TTS
audio over it and heard through its speech-to-text: no `speak`, no `transcription_start`. The
media session reports `call.playback-ended` itself, so a notify call still hangs up right
after its message. Telnyx's own voice is the fallback only when the stream never came or
failed before any audio left; DTMF stays the REST `send_dtmf`.

Nothing about a call is kept here: webhooks name their call through `client_state`, and
everything else is in the store, so any instance serves any webhook. Shapes: REST in
rest.py, webhooks in webhooks.py, voices and text in voice.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voice_call.clock import Clock
from voice_call.config import Config, ConfigError, TelnyxConfig
from voice_call.models import CallRecord, Direction
from voice_call.numbers import routes
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
from voice_call.providers.streamed_speech import StreamedSpeech
from voice_call.providers.telnyx import voice as speech
from voice_call.providers.telnyx import webhooks as hooks
from voice_call.providers.telnyx.rest import TelnyxApiError, TelnyxRest
from voice_call.providers.telnyx.stream_fields import stream_fields
from voice_call.providers.telnyx.transfer_legs import COLD, WARM, bridge_request, brief_tag
from voice_call.security.signatures import telnyx as signatures

if TYPE_CHECKING:
    from voice_call.media.registry import MediaSessions

log = logging.getLogger("voice_call.telnyx")

MIN_RING_S, MAX_RING_S = 5, 600  # Dial `timeout_secs` bounds
WARM_MODE = "warm"


class TelnyxProvider:
    name = "telnyx"
    required_headers: tuple[tuple[str, ...], ...] = (
        (signatures.SIGNATURE_HEADER, signatures.TIMESTAMP_HEADER),
    )
    delivers_notify_inline = False
    # call.speak.ended → call.playback-ended; over a stream the media session reports it.
    reports_playback_end = True
    # Telnyx queues speak commands (each has its own speak.ended); a stream's session queues.
    queues_speech = True
    detects_greeting_end = True  # detect_beep: call.machine.greeting.ended

    def __init__(
        self,
        config: Config,
        clock: Clock,
        rest: TelnyxRest,
        public_key: Ed25519PublicKey | None,
        *,
        partials: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rest = rest
        self.public_key = public_key
        self.partials = partials  # pass interim transcripts on (logged, never a turn)
        self.connection_id = (config.telnyx or TelnyxConfig()).connection_id or ""
        self.webhook_url = ""
        self.streamed = StreamedSpeech(config)
        self._tasks: set[asyncio.Future[None]] = set()  # bridges started from a webhook

    def attach(self, sink: EventSink) -> None:
        return None  # every Telnyx event arrives over HTTP

    def attach_media(self, media: MediaSessions) -> None:
        self.streamed.attach(media)

    def set_webhook_url(self, url: str, *, pinned: bool = False) -> None:
        self.webhook_url = url  # Ed25519 signs the body, not the URL: nothing to pin

    # -- calls ------------------------------------------------------------------------------

    async def initiate_call(self, request: DialRequest) -> DialResult:
        ring_s = min(MAX_RING_S, max(MIN_RING_S, round(self.config.ring_timeout_ms / 1000)))
        webhook_url = request.webhook_url or self.webhook_url
        body: dict[str, object] = {
            "connection_id": self.connection_id,
            "to": request.to_number,
            "from": request.from_number,
            "webhook_url": webhook_url,
            "webhook_url_method": "POST",
            "client_state": hooks.encode_client_state(request.call_id),
            "timeout_secs": ring_s,
            # Derived from our id: a Dial retried after a lost answer is not placed twice.
            "command_id": f"dial-{request.call_id}",
        }
        if self.streamed.enabled:  # the socket opens once answered: its token outlasts ringing
            body |= stream_fields(self.streamed, webhook_url, request.call_id, ring_s=ring_s)
        if request.amd:
            # voicemail-drop listens on for the beep after calling it a machine
            beep = request.amd == "voicemail-drop"
            body["answering_machine_detection"] = "detect_beep" if beep else "detect"
            body["answering_machine_detection_config"] = {
                "total_analysis_time_millis": request.amd_timeout_ms
            }
        data = await self.rest.dial(body)
        pid = data.get("call_control_id")
        if not isinstance(pid, str) or not pid:
            raise ProviderError("Telnyx dial failed: the answer has no call_control_id")
        return DialResult(provider_call_id=pid)

    async def answer(self, call: CallRecord) -> None:
        # client_state from here on names our call in every webhook of this leg.
        body: dict[str, object] = {"client_state": hooks.encode_client_state(call.call_id)}
        if self.streamed.enabled:
            body |= stream_fields(self.streamed, self.webhook_url, call.call_id, record=call)
        await self._command(call, "answer", body)

    async def hangup(self, call: CallRecord, reason: str) -> None:
        if not call.provider_call_id:
            return
        refuse = (
            reason == "inbound-policy"
            and call.direction == Direction.INBOUND
            and call.answered_at is None
        )
        if not refuse:
            await self.streamed.finish(call)  # let the goodbye be heard
        try:
            if refuse:  # a parked call we will not take: decline it rather than answer+hang up
                try:
                    await self._command(call, "reject", {"cause": "CALL_REJECTED"})
                    return
                except TelnyxApiError as exc:
                    if exc.call_gone:
                        raise
                    log.info("reject of %s refused (%s): hanging up instead", call.call_id, exc)
            await self._command(call, "hangup", {})
        except TelnyxApiError as exc:
            if not exc.call_gone:
                raise
            log.info("hang-up of %s: the call had already ended", call.call_id)

    async def speak(self, call: CallRecord, text: str) -> str | None:
        """Say `text`: over the call's stream when it has one (returns once played; what was
        heard when the caller cut it off), else as Telnyx `speak` commands (returns once
        accepted; Telnyx queues them)."""
        return await self.streamed.say(call, text, lambda: self._speak_natively(call, text))

    async def queue_speech(self, call: CallRecord, text: str) -> Awaitable[str | None] | None:
        return await self.streamed.queue(call, text, lambda: self._speak_natively(call, text))

    async def _speak_natively(self, call: CallRecord, text: str) -> None:
        voice, language = speech.voice_and_language(self.config, call)
        # Longer than one speak allows: Telnyx queues the pieces and plays them in order.
        for piece in speech.chunks(text):
            await self._command(
                call,
                "speak",
                {"payload": piece, "payload_type": "text", "voice": voice, "language": language},
            )

    def detection_ms(self, timeout_ms: int) -> int:
        return timeout_ms  # answering_machine_detection_config.total_analysis_time_millis

    async def leave_voicemail(self, call: CallRecord, text: str) -> bool:
        """Telnyx `speak`, streamed call or not: its call.speak.ended says it was said."""
        await self._speak_natively(call, text)
        return False

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        if await self._streamed(call):
            return  # the stream's speech-to-text is always listening
        language = speech.transcription_language(self.config, call)
        body: dict[str, object] = {
            "language": language,
            "transcription_tracks": "inbound",
            # Transcripts from now on carry this turn's token back (stale ones are ignored).
            "client_state": hooks.encode_client_state(call.call_id, turn_token),
        }
        silence_ms = self.config.silence_timeout_ms
        body |= speech.listening_fields(language, silence_ms, interim=self.partials)
        await self._command(call, "transcription_start", body)

    async def stop_listening(self, call: CallRecord) -> None:
        if await self.streamed.live(call.call_id):
            return  # a stream's speech-to-text never stops; Telnyx's was never started
        await self._command(call, "transcription_stop", {})

    async def _streamed(self, call: CallRecord) -> bool:
        """The call's audio is on our stream: waits for one that is still opening (right
        after the answer), so Telnyx's transcription never doubles the stream's."""
        return self.streamed.enabled and await self.streamed.session(call) is not None

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        await self._command(call, "send_dtmf", {"digits": speech.telnyx_digits(digits)})

    # -- transfer ---------------------------------------------------------------------------

    async def transfer(self, call: CallRecord, request: TransferRequest) -> None:
        """Cold: `actions/transfer` (Telnyx dials the target and bridges it on answer; a
        target not reached leaves our leg as it was). Warm: dial the target ourselves, its
        leg linked to the caller's; once it answers, `transfer_answered` briefs and bridges.
        The target's leg is told apart by its client_state (transfer_legs.py). A stream is
        stopped first (our leg's audio goes to the target, not to us)."""
        if not call.provider_call_id:
            raise ProviderError("Telnyx transfer: the call has no call_control_id yet")
        if await self.streamed.live(call.call_id):
            await self.streamed.finish(call)  # what the bot was saying is heard to the end
            await self._command(call, "streaming_stop", {})
        if request.announce:
            await self._speak_natively(call, request.announce)
        ring_s = min(MAX_RING_S, max(MIN_RING_S, round(self.config.ring_timeout_ms / 1000)))
        ours = call.to_number if call.direction == Direction.INBOUND else call.from_number
        if request.mode == WARM_MODE:
            await self.rest.dial(
                {
                    "connection_id": self.connection_id,
                    "to": request.target,
                    "from": ours,
                    "webhook_url": self.webhook_url,
                    "webhook_url_method": "POST",
                    "client_state": hooks.encode_client_state(call.call_id, WARM),
                    "timeout_secs": ring_s,
                    "link_to": call.provider_call_id,
                }
            )
            return
        body: dict[str, object] = {
            "to": request.target,
            "from": ours,
            "timeout_secs": ring_s,
            "target_leg_client_state": hooks.encode_client_state(call.call_id, COLD),
        }
        await self._command(call, "transfer", body)

    async def transfer_answered(self, call: CallRecord, leg: str, request: TransferRequest) -> None:
        """Brief the warm target on its own leg; its call.speak.ended then bridges it."""
        tag = brief_tag(call.provider_call_id or "")
        if tag is None:
            raise ProviderError("Telnyx transfer: the caller's call_control_id is too long")
        voice, language = speech.voice_and_language(self.config, call)
        body = {
            "payload": (request.summary or "Transferring a call to you.")[:3000],
            "payload_type": "text",
            "voice": voice,
            "language": language,
            "client_state": hooks.encode_client_state(call.call_id, tag),
        }
        await self.rest.command(leg, "speak", body)

    async def transfer_failed(self, call: CallRecord) -> None:
        """Back from a target not reached: a streamed call streams again, on a new token."""
        media = self.streamed.media
        if media is None or not call.provider_call_id:
            return
        url = media.stream_url(self.webhook_url, call.call_id, token_in_query=True)
        fields: dict[str, object] = {
            "stream_url": url,
            "stream_track": "inbound_track",
            "stream_codec": "PCMU",
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": "PCMU",
        }
        await self._command(call, "streaming_start", fields)

    async def _bridge(self, caller: str, target: str) -> None:
        try:
            await self.rest.command(caller, "bridge", {"call_control_id": target})
        except ProviderError as exc:
            log.warning("Telnyx could not bridge the transfer target: %s", exc)

    async def get_call_status(self, provider_call_id: str) -> ProviderStatus:
        """`GET /calls/{id}`: `is_alive` decides; no such call = ended; anything else
        (a missing field, an outage) = unknown, so restore keeps the call."""
        try:
            data = await self.rest.retrieve(provider_call_id)
        except TelnyxApiError as exc:
            if exc.status == 404:
                return ProviderStatus(status="not-found", terminal=True)
            return ProviderStatus(status=f"error: {exc}", terminal=False, unknown=True)
        alive = data.get("is_alive")
        if alive is True:
            return ProviderStatus(status="in-progress", terminal=False)
        if alive is False:
            return ProviderStatus(status="completed", terminal=True)
        return ProviderStatus(status="unknown", terminal=False, unknown=True)

    async def start_recording(self, call: CallRecord, channels: str) -> None:
        """`record_start`; `call.recording.saved` brings the file's URLs once the call ends."""
        body: dict[str, object] = {
            "format": "wav",
            "channels": "dual" if channels == "dual" else "single",
            "client_state": hooks.encode_client_state(call.call_id),
        }
        await self._command(call, "record_start", body)

    async def fetch_recording(self, url: str) -> tuple[bytes, str]:
        """The `recording_urls` are pre-signed: fetched without our API key, which never
        leaves for a host a webhook named."""
        return await self.rest.download(url)

    async def _command(self, call: CallRecord, action: str, body: dict[str, object]) -> None:
        if not call.provider_call_id:
            raise ProviderError(f"Telnyx {action}: the call has no call_control_id yet")
        await self.rest.command(call.provider_call_id, action, body)

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return hooks.verify(self.public_key, request, now=self.clock.now())

    def parse_webhook(
        self, request: WebhookRequest, request_key: str | None = None
    ) -> WebhookResult:
        events = hooks.parse(request.body, request_key, partials=self.partials)
        # Telnyx only needs a 2xx; the JSON outcomes help whoever reads the delivery log.
        return WebhookResult(events=events, body="", content_type="application/json")

    def webhook_response(
        self, request: WebhookRequest, result: WebhookResult, outcomes: list[str]
    ) -> WebhookResult:
        legs = bridge_request(request.body, hooks.decode_client_state)
        if legs is not None:  # a warm target heard its briefing: connect it to the caller
            task = asyncio.ensure_future(self._bridge(*legs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return result  # answering or rejecting an inbound call is a REST command, not a reply

    async def close(self) -> None:
        await self.rest.close()


SKIP_WARNING = (
    "SECURITY WARNING: skipSignatureVerification is on and telnyx.publicKey is not set — "
    "anyone who can reach the webhook URL can forge Telnyx events. Local development only."
)


def _warn_languages_without_end_of_speech(config: Config) -> None:
    """silenceTimeoutMs rides on Deepgram; a language it lacks is transcribed without it."""
    block = config.telnyx or TelnyxConfig()
    languages = {block.language or speech.DEFAULT_TRANSCRIPTION_LANGUAGE}
    languages |= {route.language for _, route in routes(config) if route.language}
    for language in sorted(languages - speech.DEEPGRAM_LANGUAGES):
        log.warning(
            "telnyx: language %r is transcribed by Telnyx's Google engine, which has no "
            "end-of-speech setting, so silenceTimeoutMs does not apply to it — use a language "
            "Deepgram nova-3 takes (%s) for it to apply",
            language,
            ", ".join(sorted(speech.DEEPGRAM_LANGUAGES)),
        )


def build(config: Config, clock: Clock, home: Path) -> TelnyxProvider:
    block = config.telnyx or TelnyxConfig()
    problems = [
        f'telnyx.{key}: required when provider is "telnyx" — set it in the config or {env}'
        for key, env, value in (
            ("apiKey", "TELNYX_API_KEY", block.api_key),
            ("connectionId", "TELNYX_CONNECTION_ID", block.connection_id),
        )
        if not value
    ]
    public_key: Ed25519PublicKey | None = None
    if block.public_key:
        try:
            public_key = signatures.load_public_key(block.public_key)
        except ValueError as exc:
            problems.append(
                f"telnyx.publicKey: not an Ed25519 public key ({exc}) — paste the public key "
                "from Mission Control (base64, base64url, PEM or DER)"
            )
    elif config.skip_signature_verification:
        log.warning(SKIP_WARNING)
    else:
        # Fail closed (the seed once accepted unsigned webhooks when the key was missing).
        problems.append(
            'telnyx.publicKey: required when provider is "telnyx" — set it or TELNYX_PUBLIC_KEY '
            "(without it no webhook can be verified)"
        )
    if problems:
        raise ConfigError(problems)
    _warn_languages_without_end_of_speech(config)
    assert block.api_key is not None
    return TelnyxProvider(config, clock, TelnyxRest(block.api_key, block.api_base_url), public_key)
