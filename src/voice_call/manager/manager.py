"""CallManager: the only writer of call state.

Every change follows one order: take the call's lock, read the record, change a copy, persist it
with an event-log entry, release the lock, and only then cause side effects (dial, speak,
timers, waking waiters, publishing). A crash therefore never leaves an action without a
record, and a repeated event (same dedupe key) is refused by the store and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voice_call.agent.memory import session_history
from voice_call.agent.prompt import response_timeout_ms
from voice_call.agent.responders.base import ReplyContext, Responder
from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.errors import Conflict, InvalidInput, NotFound, TimedOut, Unavailable
from voice_call.manager.bus import EventBus
from voice_call.manager.inbound import screen
from voice_call.manager.replies import ReplyRun, ReplyTimeout
from voice_call.manager.timers import CallTimers
from voice_call.manager.turns import Turn
from voice_call.models import (
    DTMF_DIGITS,
    E164,
    CallEvent,
    CallRecord,
    CallState,
    Direction,
    EventType,
    Mode,
    Speaker,
    TranscriptEntry,
    TurnKind,
    TurnLatency,
    can_transition,
)
from voice_call.providers.base import DialRequest, Provider, ProviderError, SpeechQueue
from voice_call.store.base import CallStore, DuplicateEvent, LoggedEvent

log = logging.getLogger("voice_call.manager")

MOCK_FROM = "+15550000000"
REAPER_INTERVAL_S = 30.0
Mutation = Callable[[CallRecord], LoggedEvent | None]
TurnListener = Callable[[CallRecord, TurnLatency], None]


async def _done(value: str | None) -> str | None:
    return value


@dataclass(frozen=True)
class Spoken:
    sent_at: float  # monotonic: the moment the text was handed to the provider
    accepted_ms: float  # how long the provider took to accept it


class CallManager:
    def __init__(
        self,
        config: Config,
        store: CallStore,
        provider: Provider,
        *,
        clock: Clock,
        bus: EventBus | None = None,
        responder: Responder | None = None,
        webhook_url: str = "",
    ) -> None:
        self.config = config
        self.store = store
        self.provider = provider
        self.clock = clock
        self.bus = bus or EventBus()
        self.responder = responder
        self.webhook_url = webhook_url
        self.timers = CallTimers(clock)
        self._locks: dict[str, asyncio.Lock] = {}
        self._initiate_lock = asyncio.Lock()
        self._turns: dict[str, Turn] = {}
        self._greeting: set[str] = set()
        self._ending: dict[str, asyncio.Future[None]] = {}
        self._recent_keys: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replies: dict[str, ReplyRun] = {}  # the auto-reply in flight, per call
        self._histories: dict[str, asyncio.Future[list[TranscriptEntry]]] = {}
        # Called with each turn's figures once persisted (metrics); must not raise or block.
        self.turn_listeners: list[TurnListener] = []
        # told the id of each call that ends here (the media registry drops what it warmed)
        self.end_listeners: list[Callable[[str], None]] = []
        self._started = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> dict[str, int]:
        """Restore non-terminal calls, reconcile each with the carrier, start the reaper."""
        if self._started:
            return {}
        self._started = True
        from voice_call.manager.restore import restore_calls

        summary = await restore_calls(self)
        if self.config.stale_call_reaper_seconds > 0:
            self._arm_reaper()
        return summary

    def drain(self) -> None:
        """Fail every waiting `continue` turn: the server is going away."""
        for turn in list(self._turns.values()):
            turn.fail(Unavailable("the voice-call server is shutting down"))
        self._turns.clear()

    async def stop(self) -> None:
        self._started = False
        self.timers.cancel_all()
        self.drain()
        for call_id in list(self._replies):
            self._drop_reply(call_id)
        for history in self._histories.values():
            history.cancel()
        self._histories.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        aclose = getattr(self.responder, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    # ---------------------------------------------------------------- commands

    async def initiate(
        self, *, to: str | None, message: str | None, mode: Mode | None = None
    ) -> CallRecord:
        to = to or self.config.to_number
        if not to:
            raise InvalidInput("to is required: pass a number or set toNumber in the config")
        if not E164.match(to):
            raise InvalidInput(f"to must be an E.164 number like +15555550123, got {to!r}")
        if not message or not message.strip():
            raise InvalidInput("message is required: what should the call say first?")
        mode = mode or self.config.outbound.default_mode
        from_number = self.config.from_number or MOCK_FROM
        async with self._initiate_lock:  # capacity check and insert must not interleave
            active = await self.store.list_active()
            limit = self.config.max_concurrent_calls
            if len(active) >= limit:
                raise Unavailable(
                    f"Maximum concurrent calls ({limit}) reached: end a call or raise "
                    "maxConcurrentCalls"
                )
            record = CallRecord(
                provider=self.provider.name,
                direction=Direction.OUTBOUND,
                mode=mode,
                from_number=from_number,
                to_number=to,
                started_at=self.clock.now(),
                metadata={"initialMessage": message.strip()},
            )
            await self._persist(record, self._entry(record, "call.created", {"to": to}))
        try:
            result = await self.provider.initiate_call(
                DialRequest(
                    call_id=record.call_id,
                    from_number=from_number,
                    to_number=to,
                    webhook_url=self.webhook_url,
                    mode=mode.value,
                    message=message,
                )
            )
        except ProviderError as exc:
            await self._finish(record.call_id, CallState.FAILED, "call.dial-failed", str(exc))
            raise Unavailable(f"the carrier refused the call: {exc}") from None

        def dialed(rec: CallRecord) -> LoggedEvent:
            rec.provider_call_id = result.provider_call_id
            return self._entry(rec, "call.dialed", {"providerCallId": result.provider_call_id})

        return await self._mutate(record.call_id, dialed)

    async def speak(self, call_id: str, message: str) -> None:
        await self._speak(call_id, message)

    async def continue_call(self, call_id: str, message: str) -> str:
        started = time.monotonic()
        async with self._lock(call_id):
            record = await self._require_live(call_id)
            if call_id in self._turns:
                raise Conflict("Already waiting for transcript: one continue at a time per call")
            turn = self._turns[call_id] = Turn(call_id, started)
        self._drop_reply(call_id)  # the agent takes this turn: no auto-reply on top of it
        try:
            speak_ms = (await self._speak(call_id, message)).accepted_ms
            await self._listen(call_id, turn.token)
            turn.listen_started = time.monotonic()
            timeout_s = self.config.transcript_timeout_ms / 1000
            self.timers.set(
                call_id,
                "turn",
                timeout_s,
                lambda: turn.fail(
                    TimedOut(f"Timed out waiting for transcript after {timeout_s * 1000:.0f} ms")
                ),
            )
            transcript = await turn.future
        finally:
            self.timers.cancel(call_id, "turn")
            if self._turns.get(call_id) is turn:
                del self._turns[call_id]
        with contextlib.suppress(ProviderError):
            await self.provider.stop_listening(record)
        done = time.monotonic()
        listen_ms = (done - (turn.listen_started or done)) * 1000

        def note(rec: CallRecord) -> LoggedEvent:
            figures = TurnLatency(
                turn=len(rec.latency) + 1,
                at=self.clock.now(),
                speak_ms=round(speak_ms, 3),
                listen_wait_ms=round(listen_ms, 3),
                total_ms=round((done - started) * 1000, 3),
            )
            rec.latency.append(figures)
            rec.metadata["turnCount"] = figures.turn
            return self._entry(rec, "turn.completed", figures.wire())

        await self._record_turn(call_id, note)
        return transcript

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        if not DTMF_DIGITS.match(digits):
            raise InvalidInput("digits may hold only 0-9 * # w W p P , (at most 64)")
        record = await self._mutate(
            call_id, lambda rec: self._entry(rec, "bot.dtmf", {"digits": digits})
        )
        await self._provider_action(self.provider.send_dtmf(record, digits), "send digits")

    async def end(self, call_id: str, reason: CallState = CallState.HANGUP_BOT) -> None:
        """Hang up and finalize. Ending an ended call succeeds; concurrent ends share a hang-up."""
        pending = self._ending.get(call_id)
        if pending is not None:
            return await asyncio.shield(pending)
        record = await self._get_or_404(call_id)
        if record.terminal:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ending[call_id] = future
        try:
            await self._hangup(record, reason)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the caller gets it re-raised below
            raise
        finally:
            self._ending.pop(call_id, None)

    async def get(self, call_id: str) -> CallRecord | None:
        return await self.store.get(call_id)

    async def active(self) -> list[CallRecord]:
        return await self.store.list_active()

    # ---------------------------------------------------------------- events

    async def handle_event(self, event: CallEvent) -> str:
        """Apply one normalised event. Returns what happened: applied, duplicate, ignored, ..."""
        received = time.monotonic()  # a turn's voice-to-voice starts when its words arrive
        key = event.key
        if key in self._recent_keys:
            return "duplicate"
        # A repeated key is refused by the store when it is saved (DuplicateEvent), so the hot
        # path reads the call once, under its lock, and asks nothing else first.
        if event.call_id:  # our id, carried in callback URLs / client_state
            outcome = await self._apply_to(event.call_id, event, key, received)
            if outcome is not None:
                return outcome
        if event.provider_call_id:
            found = await self.store.find_by_provider_call_id(
                self.provider.name, event.provider_call_id
            )
            if found is not None and found.call_id != event.call_id:
                outcome = await self._apply_to(found.call_id, event, key, received)
                if outcome is not None:
                    return outcome
        if await self.store.seen(key):
            return "duplicate"
        if event.direction == Direction.INBOUND and event.provider_call_id:
            return await self._accept_inbound(event)
        return "unknown-call"  # the key is not burnt: a retry after registration applies

    async def _apply_to(
        self, call_id: str, event: CallEvent, key: str, received: float
    ) -> str | None:
        """Apply `event` to one call; None when no such call exists."""
        effects: list[Callable[[], object]] = []
        lock = self._lock(call_id)
        async with lock:
            record = await self.store.get(call_id)
            if record is None:
                found = False
            else:
                found = True
                if event.type == EventType.ERROR and event.retryable:
                    return "retryable-error"
                # `record` was just read and nothing else holds it: change it in place.
                outcome = self._apply(record, event, effects, received)
                entry = self._entry(record, event.type.value, _event_data(event, outcome), key)
                try:
                    logged = await self.store.save(record, entry)
                except DuplicateEvent:
                    return "duplicate"
        if not found:
            if not lock.locked():  # keep no lock for an unknown id a webhook named
                self._locks.pop(call_id, None)
            return None
        self._remember(key)
        if logged is not None:
            self.bus.publish(logged)
        for effect in effects:  # side effects only once the change is durable
            effect()
        return outcome

    def _apply(
        self,
        rec: CallRecord,
        event: CallEvent,
        effects: list[Callable[[], object]],
        received: float,
    ) -> str:
        """Change `rec` for `event`; queue side effects to run after it is persisted."""
        if rec.terminal:
            return "ignored: call already ended"
        self._note_provider_id(rec, event)
        now = event.timestamp or self.clock.now()
        kind = event.type
        if kind == EventType.RINGING:
            return self._move(rec, CallState.RINGING)
        if kind in (EventType.ANSWERED, EventType.ACTIVE):
            target = CallState.ANSWERED if kind == EventType.ANSWERED else CallState.ACTIVE
            first = self._mark_answered(rec, now, effects)
            outcome = self._move(rec, target)
            if first:
                effects.append(lambda: self._spawn(self._on_answered(rec.call_id)))
            return outcome
        if kind == EventType.SPEAKING:
            run = self._replies.get(rec.call_id)
            if run is not None:
                run.audio_started(received, event.tts_first_byte_ms)
            self._mark_answered(rec, now, effects)
            return self._move(rec, CallState.SPEAKING)
        if kind == EventType.SPEECH:
            return self._apply_speech(rec, event, now, effects, received)
        if kind == EventType.ENDED:
            reason = event.reason or CallState.COMPLETED
            self._end_record(rec, reason, now)
            effects.append(lambda: self._finalize(rec.call_id, reason))
            return "applied"
        if kind == EventType.ERROR:
            rec.metadata["error"] = event.error or "carrier error"
            self._end_record(rec, CallState.ERROR, now)
            effects.append(lambda: self._finalize(rec.call_id, CallState.ERROR))
            return "applied"
        if kind == EventType.PLAYBACK_ENDED and (
            self._notify_done_speaking(rec) or rec.metadata.get("hangupAfterReply") is True
        ):
            delay = float(self.config.outbound.notify_hangup_delay_sec)
            effects.append(lambda: self._arm_notify_hangup(rec.call_id, delay))
        elif kind == EventType.PLAYBACK_ENDED and self._is_outbound_notify(rec):
            # The carrier finished the message before we recorded it as said (a fast
            # playback): remember it, so the hang-up is armed without waiting for a fallback.
            rec.metadata["playbackEnded"] = True
        return "applied"  # initiated, dtmf, silence, playback-ended: logged only

    def _note_provider_id(self, rec: CallRecord, event: CallEvent) -> None:
        """Learn the carrier's id; a call matched by our own id may upgrade it (Plivo's
        RequestUUID → CallUUID), keeping the old one as an alias."""
        new = event.provider_call_id
        if not new or new == rec.provider_call_id:
            return
        if rec.provider_call_id and event.call_id != rec.call_id:
            return  # matched by the carrier id itself: nothing to upgrade
        if rec.provider_call_id:
            aliases = rec.metadata.setdefault("providerCallIdAliases", [])
            if rec.provider_call_id not in aliases:
                aliases.append(rec.provider_call_id)
        rec.provider_call_id = new

    def _is_outbound_notify(self, rec: CallRecord) -> bool:
        return rec.mode == Mode.NOTIFY and rec.direction == Direction.OUTBOUND

    def _notify_done_speaking(self, rec: CallRecord) -> bool:
        return (
            self._is_outbound_notify(rec)
            and "initialMessage" not in rec.metadata
            and rec.metadata.get("greeted") is True
        )

    def _apply_speech(
        self,
        rec: CallRecord,
        event: CallEvent,
        now: float,
        effects: list[Callable[[], object]],
        received: float,
    ) -> str:
        text = (event.transcript or event.text or "").strip()
        if (text or not event.is_final) and rec.call_id in self._replies:
            # The caller is talking (barge-in; a partial, even empty, is speech starting): a
            # reply still being generated or spoken for their earlier words is stale, so the
            # rest of it is dropped.
            effects.append(lambda: self._drop_reply(rec.call_id))
        if not event.is_final or not text:
            return "applied"  # partials are logged, not transcribed
        self._mark_answered(rec, now, effects)
        rec.transcript.append(TranscriptEntry(at=now, speaker=Speaker.USER, text=text))
        self._move(rec, CallState.LISTENING)
        turn = self._turns.get(rec.call_id)
        if turn is not None:
            if not turn.matches(event.turn_token):
                return "applied: stale turn token"
            effects.append(lambda: turn.resolve(text))
        elif self._auto_responds(rec) and "hangupAfterReply" not in rec.metadata:
            endpointing = event.endpointing_ms
            effects.append(lambda: self._start_reply(rec.call_id, received, endpointing))
        return "applied"

    def _move(self, rec: CallRecord, target: CallState) -> str:
        if rec.state == target:
            return "applied"
        if not can_transition(rec.state, target):
            return f"ignored: {rec.state.value} → {target.value} goes backwards"
        rec.state = target
        return "applied"

    def _mark_answered(
        self, rec: CallRecord, at: float, effects: list[Callable[[], object]]
    ) -> bool:
        """Set answered_at once (inbound calls may never send 'answered') and arm max duration."""
        if rec.answered_at is not None:
            return False
        rec.answered_at = at
        effects.append(
            lambda: self._arm_max_duration(rec.call_id, float(self.config.max_duration_seconds))
        )
        return True

    def _end_record(self, rec: CallRecord, reason: CallState, at: float) -> None:
        rec.state = reason
        rec.end_reason = reason
        rec.ended_at = at

    # ---------------------------------------------------------------- inbound

    async def _accept_inbound(self, event: CallEvent) -> str:
        decision = screen(self.config, event.from_number, event.to_number)
        record = CallRecord(
            provider=self.provider.name,
            provider_call_id=event.provider_call_id,
            direction=Direction.INBOUND,
            mode=Mode.CONVERSATION,
            from_number=event.from_number or "unknown",
            to_number=event.to_number or self.config.from_number or "unknown",
            state=CallState.RINGING,
            started_at=event.timestamp or self.clock.now(),
        )
        if decision.accepted:
            record.metadata["initialMessage"] = decision.greeting
            if decision.route_key:
                record.metadata["numberRouteKey"] = decision.route_key
        else:
            record.metadata["rejectionReason"] = "inbound-policy"
            self._end_record(record, CallState.HANGUP_BOT, record.started_at)
        entry = self._entry(
            record,
            event.type.value,
            _event_data(event, "accepted" if decision.accepted else decision.reason),
            event.key,
        )
        try:
            await self._persist(record, entry)
        except DuplicateEvent:
            return "duplicate"
        self._remember(event.key)
        if not decision.accepted:
            await self._provider_action(
                self.provider.hangup(record, "inbound-policy"), "reject", quiet=True
            )
            return f"rejected: {decision.reason}"
        await self._provider_action(self.provider.answer(record), "answer", quiet=True)
        return "accepted"

    # ---------------------------------------------------------------- speaking and listening

    async def _speak(self, call_id: str, text: str) -> Spoken:
        """Say `text` on a live call; returns once it was said (or handed over, for a provider
        that does not wait for playback), with when it was handed over."""
        spoken, said = await self._start_speaking(call_id, text)
        await said
        return spoken

    async def _start_speaking(
        self, call_id: str, text: str, after: asyncio.Future[None] | None = None
    ) -> tuple[Spoken, asyncio.Future[None]]:
        """Hand `text` to the provider; (when, and a future done once it was said and put in
        the transcript — after `after`, the line before it, so lines keep their order).

        A provider that queues speech (SpeechQueue) returns as soon as the text is queued:
        the next sentence of a reply can be handed over while this one plays.
        """

        def begin(rec: CallRecord) -> LoggedEvent:
            self._require_live_record(rec)
            rec.state = CallState.SPEAKING
            # A provider whose speech ends in its own listen (Twilio's Say inside a Gather)
            # needs the waiting turn's token now, not at start_listening.
            turn = self._turns.get(call_id)
            if turn is not None:
                rec.metadata["turnToken"] = turn.token
            else:
                rec.metadata.pop("turnToken", None)
            return self._entry(rec, "bot.speaking", {"text": text})

        record = await self._mutate(call_id, begin)
        started = time.monotonic()
        try:
            queued = None
            if isinstance(self.provider, SpeechQueue):
                queued = await self.provider.queue_speech(record, text)
            heard: Awaitable[str | None] = (
                queued if queued is not None else _done(await self.provider.speak(record, text))
            )
        except ProviderError as exc:
            raise await self._speak_failed(call_id, exc) from None
        spoken = Spoken(started, (time.monotonic() - started) * 1000)
        said = asyncio.ensure_future(self._record_spoken(call_id, text, spoken, heard, after))
        said.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen by its waiter
        return spoken, said

    async def _record_spoken(
        self,
        call_id: str,
        text: str,
        spoken: Spoken,
        heard_later: Awaitable[str | None],
        after: asyncio.Future[None] | None,
    ) -> None:
        try:
            heard = await heard_later
        except ProviderError as exc:
            raise await self._speak_failed(call_id, exc) from None
        finally:
            if after is not None:
                with contextlib.suppress(Exception):
                    await after  # the line before is in the transcript first

        def record(rec: CallRecord) -> LoggedEvent:
            # Cut off by the caller: the transcript keeps only what they heard of it.
            said = text if heard is None else heard
            if said:
                rec.transcript.append(
                    TranscriptEntry(at=self.clock.now(), speaker=Speaker.BOT, text=said)
                )
            data: dict[str, Any] = {"text": text, "ms": round(spoken.accepted_ms, 3)}
            if heard is not None:
                data["heard"] = heard
            return self._entry(rec, "bot.spoke", data)

        with contextlib.suppress(Conflict):
            await self._mutate(call_id, record)

    async def _speak_failed(self, call_id: str, exc: ProviderError) -> Unavailable:
        error = str(exc)
        with contextlib.suppress(Conflict):
            await self._mutate(call_id, lambda rec: self._after_speak_failure(rec, error))
        return Unavailable(f"could not speak on the call: {error}")

    def _after_speak_failure(self, rec: CallRecord, error: str) -> LoggedEvent:
        self._move(rec, CallState.LISTENING)  # never left stuck in speaking
        return self._entry(rec, "bot.speak-failed", {"error": error})

    async def _listen(self, call_id: str, token: str | None) -> None:
        def begin(rec: CallRecord) -> LoggedEvent:
            self._require_live_record(rec)
            self._move(rec, CallState.LISTENING)
            return self._entry(rec, "bot.listening", {})

        record = await self._mutate(call_id, begin)
        await self._provider_action(self.provider.start_listening(record, token), "listen")

    async def _on_answered(self, call_id: str) -> None:
        """Say the initial message once; then hang up (notify) or listen (conversation)."""
        if call_id in self._greeting:
            return
        self._greeting.add(call_id)
        try:
            record = await self.store.get(call_id)
            message = record and record.metadata.get("initialMessage")
            if record is None or not message or record.terminal:
                return
            if self._auto_responds(record):
                self._history(record)  # prefetched while the greeting is said
            inline = record.mode == Mode.NOTIFY and self._provider_says_notify(record)
            if not inline:
                try:
                    await self._speak(call_id, str(message))
                except (Unavailable, Conflict) as exc:
                    log.warning("initial message for %s not spoken: %s", call_id, exc)
                    return
            record = await self._mutate(call_id, lambda rec: self._greeted(rec, inline))
            if record.mode == Mode.NOTIFY:
                early = record.metadata.get("playbackEnded") is True
                self._after_notify_message(call_id, str(message), inline, early)
            elif call_id not in self._turns:
                await self._listen(call_id, None)
        except (Conflict, NotFound, Unavailable) as exc:
            log.info("after-answer flow for %s stopped: %s", call_id, exc)
        finally:
            self._greeting.discard(call_id)

    def _provider_says_notify(self, record: CallRecord) -> bool:
        """The carrier was handed the notify message at dial (TwiML Say+Hangup): one path only,
        so the callee hears it exactly once."""
        return record.direction == Direction.OUTBOUND and self.provider.delivers_notify_inline

    def _greeted(self, rec: CallRecord, inline: bool) -> LoggedEvent:
        message = rec.metadata.pop("initialMessage", None)
        rec.metadata["greeted"] = True
        if inline and message:  # said by the carrier: still part of the conversation
            rec.transcript.append(
                TranscriptEntry(at=self.clock.now(), speaker=Speaker.BOT, text=str(message))
            )
        return self._entry(rec, "bot.greeted", {"inline": inline} if inline else {})

    def _after_notify_message(
        self, call_id: str, message: str, inline: bool, ended: bool = False
    ) -> None:
        delay = float(self.config.outbound.notify_hangup_delay_sec)
        if inline:
            return  # the carrier hangs up after its <Say>; max duration guards the rest
        if self.provider.reports_playback_end and not ended:
            # Hang up `delay` after the carrier says playback ended (a long message is never
            # cut off); this fallback covers a playback-ended event that never comes.
            delay += 10.0 + len(message) / 10
        self._arm_notify_hangup(call_id, delay)

    def _arm_notify_hangup(self, call_id: str, delay: float) -> None:
        self.timers.set(call_id, "notify-hangup", delay, lambda: self._spawn(self.end(call_id)))

    def _auto_responds(self, rec: CallRecord) -> bool:
        if self.responder is None:
            return False
        return rec.direction == Direction.INBOUND or rec.mode == Mode.CONVERSATION

    def _start_reply(
        self, call_id: str, heard_at: float, endpointing_ms: float | None = None
    ) -> None:
        """Answer the caller's final words; a reply still running for earlier words is dropped."""
        self._drop_reply(call_id)
        run = self._replies[call_id] = ReplyRun(heard_at, endpointing_ms)
        self._spawn(self._reply(call_id, run))

    def _drop_reply(self, call_id: str) -> None:
        run = self._replies.pop(call_id, None)
        if run is not None:
            self.timers.cancel(call_id, "reply")
            run.drop()

    async def _reply(self, call_id: str, run: ReplyRun) -> None:
        """Stream the responder's sentences to the provider as they come, then listen again.

        A failing or slow responder (responseTimeoutMs) gets the apology and the call stays up;
        the turn's figures are recorded whatever happened.
        """
        assert self.responder is not None
        try:
            record = await self.store.get(call_id)
            if record is None or not record.state.live or run.dropped or call_id in self._turns:
                return
            run.start(self.responder, record, ReplyContext(load_history=self._history(record)))
            timeout_ms = response_timeout_ms(self.config, record)
            self.timers.set(call_id, "reply", timeout_ms / 1000, run.expire)
            first_sent, outcome = await self._say_reply(call_id, run, timeout_ms)
            handed_over = time.monotonic()
            if outcome in ("spoken", "apology", "silent") and not run.dropped:
                await self._after_reply(call_id, run)
                outcome = "ended" if run.context.end_requested else outcome
        finally:
            if self._replies.get(call_id) is run:
                del self._replies[call_id]
                self.timers.cancel(call_id, "reply")
            run.drop()  # stops the generator if this task itself was cancelled
        await run.wait()

        def note(rec: CallRecord) -> LoggedEvent:
            figures = TurnLatency(
                turn=len(rec.latency) + 1,
                kind=TurnKind.REPLY,
                at=self.clock.now(),
                total_ms=run.ms_since_heard(handed_over) or 0.0,
                responder_first_token_ms=run.ms_since_started(run.context.first_token_at),
                responder_total_ms=run.ms_since_started(run.finished),
                endpointing_ms=run.endpointing_ms,
                tts_first_byte_ms=run.tts_first_byte_ms,
                voice_to_voice_ms=run.voice_to_voice_ms(first_sent),
                outcome=outcome,
            )
            rec.latency.append(figures)
            return self._entry(rec, "turn.replied", figures.wire())

        await self._record_turn(call_id, note)

    def _history(self, record: CallRecord) -> Callable[[], Awaitable[list[TranscriptEntry]]]:
        """Earlier calls' lines for this call's session (sessionScope). Loaded once per call,
        ahead of the first reply when the call is answered: they do not change while it lasts,
        and a scan of recent calls on every turn would sit in every turn's latency."""
        future = self._histories.get(record.call_id)
        if future is None:
            scope, limit = self.config.session_scope, self.config.responder.max_history_messages
            future = asyncio.ensure_future(session_history(self.store, record, scope, limit))
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._histories[record.call_id] = future
        return lambda: asyncio.shield(future)

    async def _say_reply(
        self, call_id: str, run: ReplyRun, timeout_ms: int
    ) -> tuple[float | None, str]:
        """Speak the reply's sentences as they come; (when the first was handed over, outcome).

        Returns once every line was said (or cut off) and put in the transcript. A provider
        that queues speech gets each sentence as soon as it comes, while the one before plays.
        """
        lines: list[asyncio.Future[None]] = []
        try:
            first_sent, outcome = await self._say_sentences(call_id, run, timeout_ms, lines)
        finally:
            results = await asyncio.gather(*lines, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            log.info("auto-reply on %s stopped: %s", call_id, failures[0])
            run.drop()
            if outcome in ("spoken", "apology"):
                outcome = "failed"
        return first_sent, outcome

    async def _say_sentences(
        self, call_id: str, run: ReplyRun, timeout_ms: int, lines: list[asyncio.Future[None]]
    ) -> tuple[float | None, str]:
        """A provider whose `speak` replaces what is playing (`queues_speech = False`, e.g. a
        live TwiML update) gets the whole reply at once: later sentences would cut off
        earlier ones."""
        batch = not self.provider.queues_speech
        first_sent: float | None = None
        failure: str | None = None
        held: list[str] = []
        chunks = run.chunks()
        while True:
            try:
                sentence = await anext(chunks)
            except StopAsyncIteration:
                break
            except ReplyTimeout:
                failure = f"no complete reply within responseTimeoutMs ({timeout_ms} ms)"
                break
            except Exception as exc:
                failure = f"{type(exc).__name__}: {exc}"
                break
            if call_id in self._turns:
                run.drop()  # an agent's continue_call took over between sentences
                break
            if batch:
                held.append(sentence)
                continue
            sent = await self._say_part(call_id, run, sentence, lines)
            if sent is None:
                return first_sent, "failed"
            first_sent = first_sent or sent
        if run.dropped:
            return first_sent, "interrupted"
        if failure is None:
            if held:
                first_sent = await self._say_part(call_id, run, " ".join(held), lines)
                if first_sent is None:
                    return None, "failed"
            return first_sent, "spoken" if first_sent is not None else "silent"
        log.warning("responder failed on %s (%s); saying the apology", call_id, failure)
        with contextlib.suppress(Conflict, NotFound):
            await self._mutate(
                call_id, lambda rec: self._entry(rec, "bot.reply-failed", {"error": failure})
            )
        sent = await self._say_part(call_id, run, self.config.responder.apology_text, lines)
        if sent is None:
            return first_sent, "failed"
        return first_sent or sent, "apology"

    async def _say_part(
        self, call_id: str, run: ReplyRun, text: str, lines: list[asyncio.Future[None]]
    ) -> float | None:
        """Hand one part of a reply over; when it was, or None if the call can't take it.

        Pipelined (SpeechQueue): returns once queued, its line said later, in order.
        Otherwise: returns once said, as `speak` does.
        """
        run.first_handed = True  # the stream's first audio frame from now on is this reply's
        try:
            spoken, said = await self._start_speaking(call_id, text, lines[-1] if lines else None)
            lines.append(said)
            if not isinstance(self.provider, SpeechQueue):
                await said
            return spoken.sent_at
        except (Conflict, Unavailable) as exc:
            log.info("auto-reply on %s stopped: %s", call_id, exc)
            run.drop()
            return None

    async def _after_reply(self, call_id: str, run: ReplyRun) -> None:
        """Listen for the caller again, or hang up after a goodbye the responder asked for."""
        try:
            if run.context.end_requested:
                reason = run.context.end_reason or "responder"

                def goodbye(rec: CallRecord) -> LoggedEvent:
                    rec.metadata["hangupAfterReply"] = True
                    return self._entry(rec, "bot.goodbye", {"requestedBy": reason})

                await self._mutate(call_id, goodbye)
                self._after_notify_message(call_id, "", inline=False)
            elif call_id not in self._turns:
                await self._listen(call_id, None)
        except (Conflict, NotFound, Unavailable) as exc:
            log.info("after the reply on %s: %s", call_id, exc)

    async def _record_turn(self, call_id: str, note: Mutation) -> None:
        """Persist a turn's figures (the call may have ended meanwhile), then tell listeners."""
        try:
            record = await self._mutate(call_id, note, allow_terminal=True)
        except (Conflict, NotFound):
            return
        for listener in self.turn_listeners:
            try:
                listener(record, record.latency[-1])
            except Exception:
                log.exception("turn listener failed")

    # ---------------------------------------------------------------- ending

    async def _hangup(self, record: CallRecord, reason: CallState) -> None:
        def requested(rec: CallRecord) -> LoggedEvent:
            rec.metadata["hangupRequestedAt"] = self.clock.now()
            return self._entry(rec, "bot.hangup", {"reason": reason.value})

        record = await self._mutate(record.call_id, requested)
        try:
            await self.provider.hangup(record, reason.value)
        except ProviderError as exc:
            if reason == CallState.HANGUP_BOT:
                raise Unavailable(f"the carrier refused to hang up: {exc}") from None
            log.warning("hang-up of %s failed (%s); ending it here anyway", record.call_id, exc)
        await self._finish(record.call_id, reason, "call.ended", None)

    async def _finish(self, call_id: str, reason: CallState, kind: str, error: str | None) -> None:
        """Persist a terminal state decided here (not by a carrier event), then finalize."""

        def finish(rec: CallRecord) -> LoggedEvent | None:
            if rec.terminal:
                return None
            if error:
                rec.metadata["error"] = error
            self._end_record(rec, reason, self.clock.now())
            return self._entry(
                rec, kind, {"reason": reason.value, **({"error": error} if error else {})}
            )

        await self._mutate(call_id, finish, allow_terminal=True)
        self._finalize(call_id, reason)

    def _finalize(self, call_id: str, reason: CallState) -> None:
        self._drop_reply(call_id)
        history = self._histories.pop(call_id, None)
        if history is not None:
            history.cancel()
        self.timers.cancel_all(call_id)
        turn = self._turns.pop(call_id, None)
        if turn is not None:
            turn.fail(Conflict(f"Call ended: {reason.value}"))
        self._locks.pop(call_id, None)
        for listener in self.end_listeners:
            try:
                listener(call_id)
            except Exception:
                log.exception("end listener failed")

    def _arm_max_duration(self, call_id: str, delay: float) -> None:
        async def expire() -> None:
            record = await self.store.get(call_id)
            if record is not None and not record.terminal:
                await self.end(call_id, CallState.TIMEOUT)

        self.timers.set(call_id, "max-duration", delay, lambda: self._spawn(expire()))

    def _arm_reaper(self) -> None:
        interval = min(REAPER_INTERVAL_S, float(self.config.stale_call_reaper_seconds))

        def tick() -> None:
            self._spawn(self.reap_stale())
            if self._started:
                self._arm_reaper()

        self.timers.set("*", "reaper", interval, tick)

    async def reap_stale(self) -> int:
        """End calls never answered within staleCallReaperSeconds; never a live conversation."""
        cutoff = self.clock.now() - self.config.stale_call_reaper_seconds
        reaped = 0
        for record in await self.store.list_active():
            if record.answered_at is not None or record.started_at > cutoff:
                continue
            if record.state in (CallState.SPEAKING, CallState.LISTENING):
                continue
            with contextlib.suppress(Conflict, NotFound):
                await self._mutate(
                    record.call_id,
                    lambda rec: self._entry(rec, "call.stale", {"endedBy": "stale-reaper"}),
                )
                await self.end(record.call_id, CallState.TIMEOUT)
                reaped += 1
        return reaped

    # ---------------------------------------------------------------- plumbing

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    async def _mutate(
        self, call_id: str, change: Mutation, *, allow_terminal: bool = False
    ) -> CallRecord:
        """Apply `change` to a copy under the call's lock and persist it before returning."""
        async with self._lock(call_id):
            record = await self._get_or_404(call_id)
            if record.terminal and not allow_terminal:
                raise Conflict(_not_active(record))
            updated = record.model_copy(deep=True)
            entry = change(updated)
            if entry is None:
                return record
            await self._persist(updated, entry)
            return updated

    async def _persist(self, record: CallRecord, entry: LoggedEvent) -> None:
        logged = await self.store.save(record, entry)
        if logged is not None:
            self.bus.publish(logged)

    def _entry(
        self, rec: CallRecord, kind: str, data: dict[str, Any], key: str | None = None
    ) -> LoggedEvent:
        return LoggedEvent(
            call_id=rec.call_id,
            type=kind,
            at=self.clock.now(),
            dedupe_key=key,
            state=rec.state.value,
            data=data,
        )

    async def _get_or_404(self, call_id: str) -> CallRecord:
        record = await self.store.get(call_id)
        if record is None:
            raise NotFound(f"no call with id {call_id!r}")
        return record

    async def _require_live(self, call_id: str) -> CallRecord:
        record = await self._get_or_404(call_id)
        self._require_live_record(record)
        return record

    def _require_live_record(self, record: CallRecord) -> None:
        if record.terminal:
            raise Conflict(_not_active(record))
        if not record.state.live:
            raise Conflict(f"call is not connected yet (state={record.state.value})")

    async def _provider_action(
        self, action: Awaitable[None], what: str, quiet: bool = False
    ) -> None:
        try:
            await action
        except ProviderError as exc:
            if quiet:
                log.warning("carrier could not %s: %s", what, exc)
                return
            raise Unavailable(f"the carrier could not {what}: {exc}") from None

    def _remember(self, key: str) -> None:
        self._recent_keys[key] = None
        if len(self._recent_keys) > 10_000:
            self._recent_keys.popitem(last=False)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("background task failed: %r", exc, exc_info=exc)

    async def settle(self) -> None:
        """Wait for background work (greetings, auto-responses, timer actions) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _not_active(record: CallRecord) -> str:
    ended = record.ended_at
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)) if ended else "unknown"
    reason = record.end_reason.value if record.end_reason else "none"
    return (
        f"call is not active (last state={record.state.value}, endReason={reason}, endedAt={when})"
    )


def _event_data(event: CallEvent, outcome: str) -> dict[str, Any]:
    data = event.wire()
    for noise in ("type", "id", "dedupeKey", "callId", "isFinal", "retryable"):
        data.pop(noise, None)
    if event.type in (EventType.SPEECH, EventType.PLAYBACK_ENDED):
        data["isFinal"] = event.is_final
    if outcome != "applied":
        data["outcome"] = outcome
    return data
