"""MediaSessions: the Runtime's registry of live media streams, one per call, by call id.

It is also where the pieces around a stream meet: the stream-token signer (providers mint
tokens and build stream URLs here; the media route checks them here), pre-warming (STT and TTS
connections opened while the phone rings, so the first turn is not slower than the others),
the speech stack, and the drop grace — a stream that ends without another one starting for the
same call within `streaming.dropGraceMs` ends the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from voice_call.clock import Clock, Timer
from voice_call.config import Config
from voice_call.errors import VoiceCallError
from voice_call.media.lateness import LatenessStats
from voice_call.media.pacer import SlotScheduler
from voice_call.media.session import EventSink, MediaSession
from voice_call.media.stream_protocols import protocol_for
from voice_call.models import CallRecord, CallState
from voice_call.numbers import screened_route
from voice_call.security.stream_tokens import StreamTokens
from voice_call.speech.stack import Speech, SpeechStack, Voice
from voice_call.speech.stt.base import SttSession
from voice_call.tunnel.resolve import stream_url

log = logging.getLogger("voice_call.media")

EndCall = Callable[[str, CallState], Awaitable[object]]


class MediaSessions:
    def __init__(
        self,
        config: Config,
        *,
        sink: EventSink,
        end_call: EndCall,
        clock: Clock,
        speech: Speech | None = None,
        tokens: StreamTokens | None = None,
        stats: LatenessStats | None = None,
    ) -> None:
        streaming = config.streaming
        self.config = config
        self.sink = sink
        self._end_call = end_call
        self._clock = clock
        self.tokens = tokens or StreamTokens(
            streaming.token_secret, ttl_s=streaming.token_ttl_seconds
        )
        self.stats = stats or LatenessStats()
        self.scheduler = SlotScheduler()  # one clock for every stream's pacer
        # Built now when streaming is on, so a missing key or espeak-ng fails at start.
        self._speech = speech or (SpeechStack(config) if streaming.enabled else None)
        self._sessions: dict[str, MediaSession] = {}
        self._prewarmed: dict[str, tuple[SttSession, Timer]] = {}
        self._grace: dict[str, Timer] = {}
        self._waiters: dict[str, list[asyncio.Future[MediaSession]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def speech(self) -> Speech:
        if self._speech is None:
            self._speech = SpeechStack(self.config)
        return self._speech

    # ------------------------------------------------------------------ for providers

    def stream_url(
        self,
        webhook_url: str,
        call_id: str,
        *,
        token_in_query: bool | None = None,
        min_ttl_s: float = 0,
    ) -> str:
        """The wss:// URL a carrier should open for `call_id`, on the webhook's host.

        Telnyx and Plivo get the token in the query (living at least `min_ttl_s`: a Telnyx
        Dial's socket opens only once the phone is answered); for Twilio (no query allowed)
        put `token(call_id)` in a `<Parameter name="token">` instead.
        """
        if token_in_query is None:
            token_in_query = protocol_for(self.config.provider).token_in_query
        url = stream_url(webhook_url, self.config.serve.path, self.config.streaming.stream_path)
        if token_in_query:
            url += "?" + urlencode({"token": self.token(call_id, min_ttl_s)})
        return url

    def token(self, call_id: str, min_ttl_s: float = 0) -> str:
        return self.tokens.mint(call_id, max(self.tokens.ttl_s, min_ttl_s))

    def prewarm(self, call_id: str, record: CallRecord | None = None, *, keep_s: float = 0) -> None:
        """Open STT (and the TTS connection) now, while the phone rings; idempotent. Unused,
        it is closed when the call ends or after the token lifetime (at least `keep_s`)."""
        if call_id in self._prewarmed or call_id in self._sessions:
            return
        stt = self.speech.new_stt()
        voice = self.voice_for(record)
        expire = self._clock.call_later(
            max(float(self.config.streaming.token_ttl_seconds), keep_s),
            lambda: self._spawn(self._drop_prewarmed(call_id)),
        )
        self._prewarmed[call_id] = (stt, expire)
        self._spawn(self._warm(call_id, stt, voice))

    async def _warm(self, call_id: str, stt: SttSession, voice: Voice) -> None:
        results = await asyncio.gather(stt.connect(), voice.engine.warm(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning(
                    "call %s: pre-warm failed (%s); retrying at stream start", call_id, result
                )

    async def _drop_prewarmed(self, call_id: str) -> None:
        entry = self._prewarmed.pop(call_id, None)
        if entry is not None:
            await entry[0].close()

    def call_ended(self, call_id: str) -> None:
        """The call is over: STT warmed for it is closed now, not when its token expires (a
        dial nobody answered would otherwise hold a speech-to-text socket for minutes)."""
        entry = self._prewarmed.get(call_id)
        if entry is not None:
            entry[1].cancel()
            self._spawn(self._drop_prewarmed(call_id))

    # ------------------------------------------------------------------ for the media route

    def take_stt(self, call_id: str) -> SttSession:
        """The pre-warmed STT session for the call, else a new (unconnected) one."""
        entry = self._prewarmed.pop(call_id, None)
        if entry is None:
            return self.speech.new_stt()
        entry[1].cancel()
        return entry[0]

    def voice_for(self, record: CallRecord | None) -> Voice:
        """The call's voice: the number route's `tts` over the plugin's over the global one."""
        route_tts: Mapping[str, Any] | None = None
        route = screened_route(self.config, record) if record is not None else None
        if route is not None:
            route_tts = route.tts
        return self.speech.voice(route_tts)

    def get(self, call_id: str) -> MediaSession | None:
        return self._sessions.get(call_id)

    async def wait_for(self, call_id: str, timeout_s: float) -> MediaSession | None:
        """The call's session once its stream has started, or None after `timeout_s`."""
        session = self._sessions.get(call_id)
        if session is not None:
            return session
        waiter: asyncio.Future[MediaSession] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(call_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(call_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(call_id, None)

    def register(self, session: MediaSession) -> None:
        """`session` now carries the call's audio (a reconnect replaces the old stream)."""
        timer = self._grace.pop(session.call_id, None)
        if timer is not None:
            timer.cancel()
        old = self._sessions.get(session.call_id)
        self._sessions[session.call_id] = session
        if old is not None and old is not session:
            self._spawn(old.close())
        for waiter in self._waiters.pop(session.call_id, []):
            if not waiter.done():
                waiter.set_result(session)

    def stream_ended(self, session: MediaSession, reason: CallState) -> None:
        """The socket of `session` is gone; the call ends unless a new one starts in time."""
        if self._closed or self._sessions.get(session.call_id) is not session:
            return  # shutting down, or already replaced by a newer stream
        del self._sessions[session.call_id]
        call_id = session.call_id
        grace_s = self.config.streaming.drop_grace_ms / 1000
        self._grace[call_id] = self._clock.call_later(
            grace_s, lambda: self._spawn(self._lost(call_id, reason))
        )

    async def _lost(self, call_id: str, reason: CallState) -> None:
        self._grace.pop(call_id, None)
        if call_id in self._sessions:
            return
        log.info("call %s: media stream gone for good; ending the call (%s)", call_id, reason)
        try:
            await self._end_call(call_id, reason)
        except VoiceCallError as exc:
            log.info("call %s: not ended after the stream dropped: %s", call_id, exc.message)

    # ------------------------------------------------------------------ lifecycle

    @property
    def live(self) -> int:
        return len(self._sessions)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media background task failed: %r", task.exception())

    async def close(self) -> None:
        self._closed = True
        for timer in self._grace.values():
            timer.cancel()
        self._grace.clear()
        sessions, self._sessions = list(self._sessions.values()), {}
        prewarmed, self._prewarmed = list(self._prewarmed.values()), {}
        for stt, timer in prewarmed:
            timer.cancel()
            with contextlib.suppress(Exception):
                await stt.close()
        for session in sessions:
            await session.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._speech is not None:
            await self._speech.close()
