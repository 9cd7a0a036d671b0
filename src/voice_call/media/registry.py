"""MediaSessions: the Runtime's registry of live media streams, one per call, by call id.

It is also where the pieces around a stream meet: the stream-token signer (providers mint
tokens and build stream URLs here; the media route checks them here), pre-warming (STT and TTS
connections opened while the phone rings, so the first turn is not slower than the others),
the speech stack, and the drop grace — a stream that ends without another one starting for the
same call within `streaming.dropGraceMs` ends the call.

One stream per call: a socket for a call whose stream is live (or being admitted) here is
refused, never swapped in (`reserve`), and a token opens one stream only (`spend`, through the
manager into the store, see security/stream_tokens.py). A call's answer stream is handed out
once (`answer_stream`): an answer the carrier asks for again (a retry, a duplicate delivery)
gets the same URL and token while it is valid, and STT is not warmed a second time.

With `realtime.enabled` the streams are realtime voice bridges (realtime/bridge.py) on
`realtime.streamPath`: what warms while the phone rings is the call's model session (its
`ModelSource`, realtime/factory.py), handed to the media route with `take_model`; no STT or
TTS is built at all.

In a cluster (`shared`, cluster/streams.py) a stream is held by the instance its socket reached:
registering it records this instance as the call's holder, its end drops that, and a call whose
stream another live instance holds is found as a proxy to it (`find`, `wait_for`), so speech
works wherever the command arrived. Listening in works only where the stream is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from voice_call.clock import Clock, Timer
from voice_call.config import Config
from voice_call.errors import VoiceCallError
from voice_call.languages import own_language
from voice_call.media.events import EventSink
from voice_call.media.lateness import LatenessStats
from voice_call.media.pacer import SlotScheduler
from voice_call.media.playback import PlaybackResult
from voice_call.media.recorder import WavRecorder
from voice_call.media.stream_protocols import protocol_for
from voice_call.media.tap import MediaTap, TapListener
from voice_call.models import CallEvent, CallRecord, CallState, EventType
from voice_call.numbers import routes, screened_route
from voice_call.realtime.model import RealtimeModel, SessionSetup
from voice_call.security.stream_tokens import ANSWER, StreamTokens, spent_key
from voice_call.speech.stack import Speech, SpeechStack, Voice
from voice_call.speech.stt.base import SttSession
from voice_call.tunnel.resolve import stream_url

log = logging.getLogger("voice_call.media")

EndCall = Callable[[str, CallState], Awaitable[object]]
MAX_ANSWERS = 10_000  # answer streams remembered for retried answers (oldest forgotten first)
REUSE_MARGIN_S = 5.0  # an answer token closer than this to expiry is minted anew
HOLDER_POLL_S = 0.1  # a cluster's wait for a stream also looks for it at other instances


class LiveSession(Protocol):
    """A call's live stream as the registry and the providers drive it: a MediaSession, or a
    realtime voice bridge (realtime/bridge.py), which has the same command surface."""

    @property
    def call_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    def speak(self, text: str, *, interruptible: bool = True) -> asyncio.Future[PlaybackResult]: ...

    def play(self, ulaw: bytes, label: str) -> asyncio.Future[PlaybackResult]: ...

    def clear(self) -> None: ...

    async def finish_playback(self, timeout_s: float | None = None) -> None: ...

    async def close(self) -> None: ...

    tap: MediaTap | None  # who listens to its frames (media/tap.py), None while nobody does


class SharedStreams(Protocol):
    """The streams of a cluster (cluster/streams.py `ClusterStreams`): where this registry
    records the streams it holds and reaches those other instances hold."""

    def serve(self, local: Callable[[str], LiveSession | None]) -> None:
        """Serve other instances' commands on the streams `local` finds live here."""

    async def hold(self, call_id: str) -> None: ...

    async def drop(self, call_id: str) -> None: ...

    async def holder_elsewhere(self, call_id: str) -> str | None:
        """The other live instance holding the call's stream, if any."""

    async def remote(self, call_id: str) -> LiveSession | None:
        """A proxy to the call's stream when another live instance holds it."""


class ModelSource(Protocol):
    """Realtime voice models for calls (realtime/factory.py `RealtimeFactory`)."""

    def new_model(self) -> RealtimeModel: ...

    def setup(self, record: CallRecord | None) -> SessionSetup: ...


class _WarmModel:
    """A call's model session opened while its phone rings, until its stream takes it."""

    def __init__(self, model: RealtimeModel, setup: SessionSetup, expire: Timer) -> None:
        self.model = model
        self.setup = setup
        self.expire = expire


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
        models: ModelSource | None = None,
        recordings: Path | None = None,
        shared: SharedStreams | None = None,
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
        self.models = models  # realtime voice: the streams are model bridges
        self.recordings = recordings  # where `recording.enabled` writes each stream's WAV
        self._sessions: dict[str, LiveSession] = {}
        self._prewarmed: dict[str, tuple[SttSession, Timer]] = {}
        self._warm_models: dict[str, _WarmModel] = {}
        self._grace: dict[str, Timer] = {}
        self._let_go: set[str] = set()  # calls whose stream we ended on purpose (let_go)
        self._waiters: dict[str, list[asyncio.Future[LiveSession]]] = {}
        self._starting: set[str] = set()  # calls whose stream is being admitted
        # call → (url, token, expiry) of its answer stream, for a retried answer
        self._answers: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.shared = shared
        # hold / drop of the shared holder records, run one after another in the order asked
        self._holding = asyncio.Lock()
        if shared is not None:
            shared.serve(self.get)

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
        return self._url(webhook_url, self.token(call_id, min_ttl_s), token_in_query)

    def _url(self, webhook_url: str, token: str, token_in_query: bool | None = None) -> str:
        if token_in_query is None:
            token_in_query = protocol_for(self.config.provider).token_in_query
        url = stream_url(webhook_url, self.config.serve.path, self.stream_path)
        if token_in_query:
            url += "?" + urlencode({"token": token})
        return url

    @property
    def stream_path(self) -> str:
        """Where carriers open this service's streams: the realtime path for model bridges."""
        if self.models is not None and self.config.realtime.stream_path:
            return self.config.realtime.stream_path
        return self.config.streaming.stream_path

    def token(self, call_id: str, min_ttl_s: float = 0, *, grant: str | None = None) -> str:
        """A token for one stream of `call_id` (see security/stream_tokens.py for `grant`)."""
        return self.tokens.mint(call_id, max(self.tokens.ttl_s, min_ttl_s), grant=grant)

    def answer_stream(
        self,
        webhook_url: str,
        call_id: str,
        record: CallRecord | None = None,
        *,
        min_ttl_s: float = 0,
    ) -> tuple[str, str]:
        """(stream URL, token) of the call's answer stream; STT and TTS warm from now on.

        Asked again for the same call (the carrier retried its answer request), the same URL
        and token while the token is valid, without warming anything again; either way the
        token's grant is ANSWER, so only one answer stream per call is ever admitted.
        """
        now = time.time()
        cached = self._answers.get(call_id)
        if cached is not None and cached[2] - REUSE_MARGIN_S > now:
            return cached[0], cached[1]
        if cached is None:
            self.prewarm(call_id, record, keep_s=min_ttl_s)
        ttl_s = max(self.tokens.ttl_s, min_ttl_s)
        token = self.token(call_id, ttl_s, grant=ANSWER)
        url = self._url(webhook_url, token)
        self._answers[call_id] = (url, token, now + ttl_s)
        self._answers.move_to_end(call_id)
        while len(self._answers) > MAX_ANSWERS:
            self._answers.popitem(last=False)
        return url, token

    def prewarm(self, call_id: str, record: CallRecord | None = None, *, keep_s: float = 0) -> None:
        """Open STT (and the TTS connection) now, while the phone rings; idempotent. Unused,
        it is closed when the call ends or after the token lifetime (at least `keep_s`)."""
        if call_id in self._prewarmed or call_id in self._sessions or call_id in self._starting:
            return
        if self.models is not None:
            self._prewarm_model(call_id, record, keep_s)
            return
        stt = self.speech.new_stt(_own_language(record))
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

    def _prewarm_model(self, call_id: str, record: CallRecord | None, keep_s: float) -> None:
        """Open the call's model session now; dropped if no stream takes it in time. Not
        when the call is unknown here and a number route could change its instructions."""
        if call_id in self._warm_models or (record is None and self._routes_shape_sessions()):
            return
        assert self.models is not None
        model, setup = self.models.new_model(), self.models.setup(record)
        expire = self._clock.call_later(
            max(float(self.config.streaming.token_ttl_seconds), keep_s),
            lambda: self._spawn(self._drop_prewarmed(call_id)),
        )
        self._warm_models[call_id] = _WarmModel(model, setup, expire)
        self._spawn(self._connect(call_id, model, setup))

    async def _connect(self, call_id: str, model: RealtimeModel, setup: SessionSetup) -> None:
        try:
            await model.connect(setup)
        except Exception as exc:
            log.warning(
                "call %s: model pre-warm failed (%s); retrying at stream start", call_id, exc
            )

    def _routes_shape_sessions(self) -> bool:
        return any(
            route.response_system_prompt or route.language or route.realtime
            for _, route in routes(self.config)
        )

    def take_model(
        self, call_id: str, record: CallRecord | None
    ) -> tuple[RealtimeModel, SessionSetup]:
        """The call's pre-warmed model session (connected, or connecting), else a new one."""
        assert self.models is not None
        warm = self._warm_models.pop(call_id, None)
        if warm is None:
            return self.models.new_model(), self.models.setup(record)
        warm.expire.cancel()
        return warm.model, warm.setup

    async def _drop_prewarmed(self, call_id: str) -> None:
        entry = self._prewarmed.pop(call_id, None)
        if entry is not None:
            await entry[0].close()
        warm = self._warm_models.pop(call_id, None)
        if warm is not None:
            await warm.model.close()

    def call_ended(self, call_id: str) -> None:
        """The call is over: STT (or the model session) warmed for it is closed now, not when
        its token expires (a dial nobody answered would otherwise hold a socket for minutes)."""
        self._let_go.discard(call_id)
        entry = self._prewarmed.get(call_id)
        warm = self._warm_models.get(call_id)
        if entry is not None:
            entry[1].cancel()
        if warm is not None:
            warm.expire.cancel()
        if entry is not None or warm is not None:
            self._spawn(self._drop_prewarmed(call_id))

    # ------------------------------------------------------------------ for the media route

    def reserve(self, call_id: str) -> bool:
        """Hold the call for a stream being admitted; False when its stream is live here or
        another one is being admitted (a second socket is refused, never swapped in)."""
        if call_id in self._sessions or call_id in self._starting:
            return False
        self._starting.add(call_id)
        return True

    def release(self, call_id: str) -> None:
        """The stream held by `reserve` was not admitted, or has been registered."""
        self._starting.discard(call_id)

    async def spend(self, call_id: str, grant: str) -> bool:
        """Mark the token's grant used, in the store (through the manager, whose dedupe keys
        are unique there); False when it was used before, by any instance."""
        event = CallEvent(
            call_id=call_id,
            type=EventType.STREAM_STARTED,
            dedupe_key=spent_key(call_id, grant),
        )
        return await self.sink(event) != "duplicate"

    def take_stt(self, call_id: str, record: CallRecord | None = None) -> SttSession:
        """The pre-warmed STT session for the call, else a new (unconnected) one."""
        entry = self._prewarmed.pop(call_id, None)
        if entry is None:
            return self.speech.new_stt(_own_language(record))
        entry[1].cancel()
        return entry[0]

    def voice_for(self, record: CallRecord | None) -> Voice:
        """The call's voice: the number route's `tts` over the plugin's over the global one."""
        route = screened_route(self.config, record) if record is not None else None
        return self.speech.voice(route.tts if route is not None else None, _own_language(record))

    def get(self, call_id: str) -> LiveSession | None:
        """The call's stream when it is live here."""
        return self._sessions.get(call_id)

    async def find(self, call_id: str) -> LiveSession | None:
        """The call's stream: live here, else (in a cluster) held by another live instance."""
        session = self._sessions.get(call_id)
        if session is not None or self.shared is None or call_id in self._let_go:
            return session
        return await self.shared.remote(call_id)

    async def held_elsewhere(self, call_id: str) -> str | None:
        """The other instance holding the call's stream (a cluster), else None."""
        if self.shared is None or call_id in self._sessions:
            return None
        return await self.shared.holder_elsewhere(call_id)

    def let_go(self, call_id: str) -> LiveSession | None:
        """Forget the call's stream, which we are about to end on purpose (the carrier's own
        voice takes over the call): its end is then not a dropped stream that ends the call,
        and speech on the call goes to the carrier at once rather than wait for a stream."""
        self._let_go.add(call_id)
        return self._sessions.pop(call_id, None)

    async def wait_for(self, call_id: str, timeout_s: float) -> LiveSession | None:
        """The call's session once its stream has started, or None after `timeout_s`. In a
        cluster the stream may start at another instance: its holder record is polled too."""
        session = await self.find(call_id)
        if session is not None or call_id in self._let_go:
            return session
        waiter: asyncio.Future[LiveSession] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(call_id, []).append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                while self.shared is not None and not waiter.done():
                    done, _ = await asyncio.wait({waiter}, timeout=HOLDER_POLL_S)
                    remote = None if done else await self.shared.remote(call_id)
                    if remote is not None:
                        return remote
                return await waiter
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(call_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(call_id, None)

    def register(self, session: LiveSession) -> None:
        """`session` now carries the call's audio (the route admits it only when none is live)."""
        self.release(session.call_id)
        if self.config.recording.enabled and self.recordings is not None:
            self._record(session, self.recordings)
        timer = self._grace.pop(session.call_id, None)
        if timer is not None:
            timer.cancel()
        old = self._sessions.get(session.call_id)
        self._sessions[session.call_id] = session
        if self.shared is not None:
            self._spawn(self._record_holder(session.call_id, hold=True))
        if old is not None and old is not session:
            self._spawn(old.close())
        for waiter in self._waiters.pop(session.call_id, []):
            if not waiter.done():
                waiter.set_result(session)

    def stream_ended(self, session: LiveSession, reason: CallState) -> None:
        """The socket of `session` is gone; the call ends unless a new one starts in time."""
        if session.tap is not None:
            session.tap.close()  # the recording is complete, listeners are told
            session.tap = None
        call_id = session.call_id
        current = self._sessions.get(call_id)
        if self._closed or (current is not None and current is not session):
            # Shutting down (a stream record left behind tells the call's owner that the
            # stream died with this instance), or already replaced by a newer stream.
            return
        if self.shared is not None:
            self._spawn(self._record_holder(call_id, hold=False))
        if current is None:
            return  # let go on purpose
        del self._sessions[call_id]
        grace_s = self.config.streaming.drop_grace_ms / 1000
        self._grace[call_id] = self._clock.call_later(
            grace_s, lambda: self._spawn(self._lost(call_id, reason))
        )

    async def _record_holder(self, call_id: str, *, hold: bool) -> None:
        """Hold or drop the call's shared holder record, in the order they were asked."""
        assert self.shared is not None
        async with self._holding:
            if hold:
                await self.shared.hold(call_id)
            elif call_id not in self._sessions:  # else a new stream of the call holds it now
                await self.shared.drop(call_id)

    async def _lost(self, call_id: str, reason: CallState) -> None:
        self._grace.pop(call_id, None)
        if call_id in self._sessions:
            return
        if await self._held_elsewhere_now(call_id):
            log.info("call %s: its stream came back at another instance", call_id)
            return
        log.info("call %s: media stream gone for good; ending the call (%s)", call_id, reason)
        try:
            await self._end_call(call_id, reason)
        except VoiceCallError as exc:
            log.info("call %s: not ended after the stream dropped: %s", call_id, exc.message)

    async def _held_elsewhere_now(self, call_id: str) -> bool:
        try:
            return await self.held_elsewhere(call_id) is not None
        except Exception as exc:  # Redis down: the drop grace decides, as with one instance
            log.warning("call %s: could not look for its stream elsewhere: %s", call_id, exc)
            return False

    # ------------------------------------------------------------------ taps (media/tap.py)

    def listen(self, call_id: str, listener: TapListener) -> bool:
        """Hand `listener` the call's frames both ways from now on; False when no stream of
        the call is live here."""
        session = self._sessions.get(call_id)
        if session is None or session.closed:
            return False
        if session.tap is None:
            session.tap = MediaTap()
        session.tap.add(listener)
        return True

    def unlisten(self, call_id: str, listener: TapListener) -> None:
        """Stop handing `listener` frames; the tap goes once nobody listens (no cost per frame)."""
        session = self._sessions.get(call_id)
        tap = session.tap if session is not None else None
        if session is None or tap is None:
            return
        tap.remove(listener)
        if not tap.listeners:
            session.tap = None

    def _record(self, session: LiveSession, folder: Path) -> None:
        """Write the stream's local dual-channel WAV; `call.recording` says where once it ends."""
        call_id = session.call_id
        path = folder / f"{call_id}-{int(time.time() * 1000)}.wav"

        def done(written: Path, seconds: float) -> None:
            event = CallEvent(
                call_id=call_id,
                type=EventType.RECORDING,
                recording_path=str(written),
                recording_duration_s=round(seconds, 3),
                recording_status="local",
                dedupe_key=f"recording:{written.name}",
            )
            self._spawn(self.sink(event))

        try:
            recorder = WavRecorder(path, done)
        except OSError as exc:
            log.warning("call %s: not recorded, %s cannot be written: %s", call_id, path, exc)
            return
        if session.tap is None:
            session.tap = MediaTap()
        session.tap.add(recorder)

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
        warm_models, self._warm_models = list(self._warm_models.values()), {}
        for warm in warm_models:
            warm.expire.cancel()
            with contextlib.suppress(Exception):
                await warm.model.close()
        for session in sessions:
            await session.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._speech is not None:
            await self._speech.close()


def _own_language(record: CallRecord | None) -> str | None:
    """The call's own language (initiate's `language`), which its speech engines follow."""
    return own_language(record.metadata) if record is not None else None
