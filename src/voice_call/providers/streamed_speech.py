"""What every carrier provider does with a call's media stream, in one place.

With `streaming.enabled` a provider hands the carrier a stream URL (TwiML `<Connect><Stream>`,
Telnyx `stream_url` on dial/answer, Plivo `<Stream>`) and then speaks through the call's
MediaSession instead of the carrier's own voice. With `realtime.enabled` the same machinery
carries the call to a speech-to-speech model: the URL points at `realtime.streamPath` and the
session is a realtime bridge, whose `speak` has the model say the text verbatim.

This helper holds the provider's side of that: pre-warming while the phone rings, the stream
URL and its token, speaking over the session with
the one-path rule (the carrier's voice only when the stream failed before any audio left), and
letting the goodbye finish before a hang-up, and keys sent as in-band tones on carriers
whose stream has no DTMF message (audio/dtmf.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from voice_call.config import Config
from voice_call.models import CallRecord
from voice_call.providers.base import ProviderError

if TYPE_CHECKING:
    from voice_call.media.playback import PlaybackResult
    from voice_call.media.registry import LiveSession, MediaSessions

STREAM_WAIT_S = 5.0  # how long a speak waits for the call's media stream to start
FINISH_PLAYBACK_S = 10.0  # a goodbye still playing may finish before the hang-up


Native = Callable[[], Awaitable[str | None]]
MAX_MISSING = 1000


class StreamedSpeech:
    def __init__(self, config: Config, *, native_replaces_stream: bool = False) -> None:
        """`native_replaces_stream`: the carrier's own voice would replace the call's stream
        (a Twilio live update, a Plivo transfer), so once a stream is up it is never used."""
        self.config = config
        self.native_replaces_stream = native_replaces_stream
        self.media: MediaSessions | None = None
        # Calls whose stream never came: later speech falls back at once, not after another
        # STREAM_WAIT_S each time (a cache; a stream that does come still wins).
        self._missing: dict[str, None] = {}

    def attach(self, media: MediaSessions) -> None:
        streams = self.config.streaming.enabled or self.config.realtime.enabled
        self.media = media if streams else None

    @property
    def enabled(self) -> bool:
        return self.media is not None

    async def live(self, call_id: str) -> bool:
        """The call's stream is up now (its STT is listening), here or, in a cluster, at the
        instance that holds it."""
        return self.media is not None and await self.media.find(call_id) is not None

    def setup(
        self,
        webhook_url: str,
        call_id: str,
        record: CallRecord | None = None,
        *,
        min_ttl_s: float = 0,
    ) -> tuple[str, str]:
        """(stream URL on the webhook's host, token) of the call's answer stream; STT and TTS
        warm from now on, while the phone rings. Carriers that take the token in the query
        (Telnyx, Plivo) find it in the URL already. `call_id` is ours, or the carrier's when
        the request being answered does not name ours (the media route looks it up). Asked
        again for the same call (a retried answer), the same URL and token: one answer stream
        per call, its token good once (media/registry.py)."""
        assert self.media is not None
        return self.media.answer_stream(webhook_url, call_id, record, min_ttl_s=min_ttl_s)

    async def session(self, call: CallRecord) -> LiveSession | None:
        if self.media is None:
            return None
        session = await self.media.find(call.call_id)
        if session is None and call.call_id not in self._missing:
            session = await self.media.wait_for(call.call_id, STREAM_WAIT_S)
            if session is None:
                if len(self._missing) >= MAX_MISSING:
                    del self._missing[next(iter(self._missing))]
                self._missing[call.call_id] = None
        return None if session is None or session.closed else session

    async def queue(
        self, call: CallRecord, text: str, native: Native
    ) -> Awaitable[str | None] | None:
        """Queue `text` on the call's stream behind what is playing (its synthesis starts while
        that plays); an awaitable of what was heard (None: all of it). `native` says it with
        the carrier's voice if the stream fails before any of its audio went out.

        None: the call has no stream (say it natively now).
        """
        from voice_call.media.playback import PlaybackQueueFull, SessionClosed

        session = await self.session(call)
        if session is None:
            return None
        protect = self.config.streaming.protect_greeting
        greeting = call.metadata.get("initialMessage") == text
        try:
            queued = session.speak(text, interruptible=not (protect and greeting))
        except PlaybackQueueFull as exc:
            raise ProviderError(str(exc)) from None
        except SessionClosed:
            return None
        return self._settle(session, queued, native)

    async def _settle(
        self, session: LiveSession, queued: asyncio.Future[PlaybackResult], native: Native
    ) -> str | None:
        from voice_call.media.playback import PlaybackQueueFull, PlaybackStatus

        # Shielded: a reply dropped on barge-in must not cancel the job; the session
        # settles it (cut, skipped) and reports what was heard.
        try:
            result = await asyncio.shield(queued)
        except PlaybackQueueFull as exc:  # a stream held by another instance says so late
            raise ProviderError(str(exc)) from None
        if result.status != PlaybackStatus.FAILED:
            return self.heard(result)
        if result.audio_sent:
            raise ProviderError(f"speech synthesis failed mid-sentence: {result.error}")
        if self.native_replaces_stream and not session.closed:
            # The carrier's voice would end the stream, and with it the call.
            raise ProviderError(f"speech synthesis failed: {result.error}")
        return await native()

    async def say(self, call: CallRecord, text: str, native: Native) -> str | None:
        """Say `text` (over the stream when there is one, else `native`) and wait until it
        was heard; what was heard when cut off, None when heard whole."""
        queued = await self.queue(call, text, native)
        return await (queued if queued is not None else native())

    @staticmethod
    def heard(result: PlaybackResult) -> str | None:
        """What `speak` returns to the manager: None when played whole, else what was heard."""
        from voice_call.media.playback import PlaybackStatus

        return None if result.status == PlaybackStatus.PLAYED else result.heard_text

    async def send_digits(self, call: CallRecord, digits: str) -> bool:
        """Play `digits` as touch tones into the live stream (after what is queued) and wait
        until they have played; False when the call has no live stream."""
        from voice_call.audio.dtmf import dtmf_ulaw
        from voice_call.media.playback import PlaybackQueueFull, PlaybackStatus

        session = await self.media.find(call.call_id) if self.media is not None else None
        if session is None or session.closed:
            return False
        try:
            result = await asyncio.shield(session.play(dtmf_ulaw(digits), f"[DTMF {digits}]"))
        except PlaybackQueueFull as exc:
            raise ProviderError(str(exc)) from None
        if result.status != PlaybackStatus.PLAYED:
            raise ProviderError(f"the digits were not all played ({result.status.value})")
        return True

    async def finish(self, call: CallRecord) -> None:
        """Let what is still playing (the goodbye) be heard before the carrier hangs up."""
        session = await self.media.find(call.call_id) if self.media is not None else None
        if session is not None and not session.closed:
            await session.finish_playback(FINISH_PLAYBACK_S)
