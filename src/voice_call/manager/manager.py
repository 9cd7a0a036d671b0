"""CallManager: the only writer of call state.

Every change follows one order: take the call's lock, read the record, change a copy, persist it
with an event-log entry, release the lock, and only then cause side effects (dial, speak,
timers, waking waiters, publishing). A crash therefore never leaves an action without a
record, and a repeated event (same dedupe key) is refused by the store and changes nothing.

Its neighbours change nothing themselves: records.py holds the pure rules of a record's change,
restore.py decides what becomes of each call after a restart (applied here, in `_restore`), and
the auto-reply pipeline (replies.py) acts through the `ManagerActions` this class hands it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from voice_call.agent.prompt import call_agent_id
from voice_call.agent.responders.base import Responder
from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.errors import Conflict, InvalidInput, NotFound, TimedOut, Unavailable
from voice_call.languages import voice_problem
from voice_call.manager import amd
from voice_call.manager import transfer as transfers
from voice_call.manager.amd import AmdActions, AmdChoice, AmdFlow
from voice_call.manager.bus import EventBus
from voice_call.manager.inbound import over_capacity, screen
from voice_call.manager.recordings import CallRecordings, apply_recording
from voice_call.manager.records import (
    asked_reason,
    end_record,
    event_data,
    inbound_record,
    is_outbound_notify,
    move,
    not_active,
    note_provider_id,
    notify_done_speaking,
    require_live,
)
from voice_call.manager.replies import AutoReplies, ManagerActions, model_turn
from voice_call.manager.restore import Decision, EndCall, KeepCall, decide, summarize
from voice_call.manager.timers import CallTimers
from voice_call.manager.turns import Spoken, Turn
from voice_call.models import (
    DTMF_DIGITS,
    E164,
    AnsweredBy,
    CallEvent,
    CallRecord,
    CallState,
    Direction,
    EventType,
    ManagerEntry,
    Mode,
    Speaker,
    TranscriptEntry,
    TransferStatus,
    TurnKind,
    TurnLatency,
)
from voice_call.numbers import denied_prefix
from voice_call.providers.base import (
    DialRequest,
    Provider,
    ProviderError,
    SpeechQueue,
    TransferRequest,
    Transfers,
)
from voice_call.store.base import CallStore, DuplicateEvent, LoggedEvent

log = logging.getLogger("voice_call.manager")

MOCK_FROM = "+15550000000"
DTMF_SEQUENCE = re.compile(r"[0-9*#wW]+")
MAX_DTMF_SEQUENCE = 32  # Twilio's SendDigits limit, the tightest of the carriers' (w = 0.5 s)
REAPER_INTERVAL_S = 30.0
Mutation = Callable[[CallRecord], LoggedEvent | None]
TurnListener = Callable[[CallRecord, TurnLatency], None]


async def _done(value: str | None) -> str | None:
    return value


def dtmf_sequence_problem(sequence: str, mode: Mode) -> str | None:
    """What is wrong with a `dtmfSequence` for a call in `mode`, or None."""
    if mode != Mode.CONVERSATION:
        return (
            "dtmfSequence needs a conversation call: a notify call only says its message "
            "(pass mode conversation, or leave dtmfSequence out)"
        )
    if not DTMF_SEQUENCE.fullmatch(sequence):
        return (
            "dtmfSequence may hold only the keys 0-9 * # and the pauses w (half a second) and "
            f"W (a second), got {sequence[:80]!r}"
        )
    if len(sequence) + sequence.count("W") > MAX_DTMF_SEQUENCE:
        return (
            f"dtmfSequence is too long: at most {MAX_DTMF_SEQUENCE} keys and half-second pauses "
            "(a W counts as two), the most a carrier takes — shorten it"
        )
    return None


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
        recordings: Path | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.provider = provider
        self.recordings = CallRecordings(config, provider, recordings)
        self.clock = clock
        self.bus = bus or EventBus()
        self.webhook_url = webhook_url
        self.timers = CallTimers(clock)
        self._locks: dict[str, asyncio.Lock] = {}
        self._initiate_lock = asyncio.Lock()
        self._turns: dict[str, Turn] = {}
        self._greeting: set[str] = set()
        self._ending: dict[str, asyncio.Future[None]] = {}
        self._recent_keys: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        actions = ManagerActions(
            agent_has_turn=lambda call_id: call_id in self._turns,
            start_speaking=self._start_speaking,
            listen=lambda call_id: self._listen(call_id, None),
            log=self._log,
            hang_up_after_reply=self._hang_up_after_reply,
            record_turn=self._record_turn,
            spawn=self._spawn,
        )
        self.replies = AutoReplies(config, store, provider, self.timers, actions, responder)
        self.amd = AmdFlow(
            config,
            provider,
            self.timers,
            AmdActions(
                greet=self._on_answered,
                end=self._end_quietly,
                change=self._amd_change,
                spawn=self._spawn,
            ),
        )
        # Called with each turn's figures once persisted (metrics); must not raise or block.
        self.turn_listeners: list[TurnListener] = []
        # told the id of each call that ends here (the media registry drops what it warmed)
        self.end_listeners: list[Callable[[str], None]] = []
        # Cluster hooks (cluster/router.py; None: this process owns every call). `claim_new`
        # takes a call created here, after its first save and before the carrier hears of it;
        # `claim` takes a call whose owner is gone (True: restore it here); `owns` says whether
        # this instance owns a call (only the owner reaps it).
        self.claim_new: Callable[[str], Awaitable[None]] | None = None
        self.claim: Callable[[CallRecord], Awaitable[bool]] | None = None
        self.owns: Callable[[str], Awaitable[bool]] | None = None
        self._started = False

    @property
    def responder(self) -> Responder | None:
        """Who writes the auto-replies; None: an agent drives every turn."""
        return self.replies.responder

    @responder.setter
    def responder(self, responder: Responder | None) -> None:
        self.replies.responder = responder

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> dict[str, int]:
        """Restore non-terminal calls, reconcile each with the carrier, start the reaper."""
        if self._started:
            return {}
        self._started = True
        calls = await self.store.list_active()
        if self.claim is not None:  # a cluster: only the calls no live instance owns
            claim = self.claim
            mine = await asyncio.gather(*(claim(call) for call in calls))
            calls = [call for call, taken in zip(calls, mine, strict=True) if taken]
        summary = summarize(await asyncio.gather(*(self._restore(call) for call in calls)))
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
        self.replies.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        aclose = getattr(self.responder, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    # ---------------------------------------------------------------- commands

    async def initiate(
        self,
        *,
        to: str | None,
        message: str | None,
        mode: Mode | None = None,
        session_key: str | None = None,
        dtmf_sequence: str | None = None,
        amd_choice: AmdChoice = None,
        record_call: bool | None = None,
        language: str | None = None,
    ) -> CallRecord:
        to = to or self.config.to_number
        if not to:
            raise InvalidInput("to is required: pass a number or set toNumber in the config")
        denied = denied_prefix(to, self.config.outbound.deny_prefixes)
        if denied is not None:
            raise InvalidInput(
                f"calls to {denied}… numbers are refused (outbound.denyPrefixes, premium rate by "
                f"default), got {to!r}"
            )
        if not E164.fullmatch(to):
            raise InvalidInput(f"to must be an E.164 number like +15555550123, got {to!r}")
        if not message or not message.strip():
            raise InvalidInput("message is required: what should the call say first?")
        if language:
            problem = self._voice_problem(language)
            if problem:
                raise InvalidInput(f"language: {problem}")
        mode = mode or self.config.outbound.default_mode
        if dtmf_sequence is not None:
            problem = dtmf_sequence_problem(dtmf_sequence, mode)
            if problem:
                raise InvalidInput(problem)
        amd_mode = amd.plan_for(self.config, amd_choice, self.provider)
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
                agent_id=self.config.agent_id,
                session_key=session_key,
            )
            if dtmf_sequence:
                record.metadata["dtmfSequence"] = dtmf_sequence
            if record_call is not None:
                record.metadata["record"] = record_call  # over recording.enabled
            if language:
                record.metadata["language"] = language  # over numbers/carrier/top level
            if amd_mode:
                amd.start(record, amd_mode, self.config)
            await self._persist(record, self._entry(record, ManagerEntry.CREATED, {"to": to}))
        if self.claim_new is not None:
            await self.claim_new(record.call_id)
        try:
            result = await self.provider.initiate_call(
                DialRequest(
                    call_id=record.call_id,
                    from_number=from_number,
                    to_number=to,
                    webhook_url=self.webhook_url,
                    mode=mode.value,
                    message=self.recordings.with_consent(record, message),
                    dtmf_sequence=dtmf_sequence,
                    amd=amd_mode,
                    amd_timeout_ms=self.config.outbound.amd.timeout_ms,
                    language=language,
                )
            )
        except ProviderError as exc:
            await self._finish(record.call_id, CallState.FAILED, ManagerEntry.DIAL_FAILED, str(exc))
            raise Unavailable(f"the carrier refused the call: {exc}") from None

        def dialed(rec: CallRecord) -> LoggedEvent:
            rec.provider_call_id = result.provider_call_id
            data = {"providerCallId": result.provider_call_id}
            if dtmf_sequence and result.digits_sent:
                data["dtmfSequence"] = dtmf_sequence  # the carrier presses them on connect
            elif dtmf_sequence:
                rec.metadata["dtmfPending"] = True  # ours to send once answered
            return self._entry(rec, ManagerEntry.DIALED, data)

        return await self._mutate(record.call_id, dialed)

    def _voice_problem(self, language: str) -> str | None:
        """Why the carrier voice the config names cannot speak a call's own language."""
        carrier = self.provider.name
        voice = getattr(getattr(self.config, carrier, None), "voice", None)
        return voice_problem(language, carrier, voice) if isinstance(voice, str) else None

    async def speak(self, call_id: str, message: str) -> None:
        await self._speak(call_id, message)

    async def continue_call(self, call_id: str, message: str) -> str:
        started = time.monotonic()
        async with self._lock(call_id):
            record = await self._require_live(call_id)
            if call_id in self._turns:
                raise Conflict("Already waiting for transcript: one continue at a time per call")
            turn = self._turns[call_id] = Turn()
        self.replies.drop(call_id)  # the agent takes this turn: no auto-reply on top of it
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
        figures = TurnLatency(
            turn=0,  # numbered when recorded
            speak_ms=round(speak_ms, 3),
            listen_wait_ms=round(listen_ms, 3),
            total_ms=round((done - started) * 1000, 3),
        )
        await self._record_turn(call_id, figures)
        return transcript

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        if not DTMF_DIGITS.match(digits):
            raise InvalidInput("digits may hold only 0-9 * # w W p P , (at most 64)")
        record = await self._get_or_404(call_id)
        if record.terminal:
            raise Conflict(not_active(record))
        # Logged once the carrier took them: a refusal leaves no `bot.dtmf` behind.
        await self._provider_action(self.provider.send_dtmf(record, digits), "send digits")
        await self._mutate(
            call_id,
            lambda rec: self._entry(rec, ManagerEntry.DTMF, {"digits": digits}),
            allow_terminal=True,  # sent before the call ended: still part of its story
        )

    async def end(
        self, call_id: str, reason: CallState = CallState.HANGUP_BOT, *, error: str | None = None
    ) -> None:
        """Hang up and finalize. Ending an ended call succeeds; concurrent ends share a hang-up.
        `error`: why, kept on the record (a realtime model that is gone for good)."""
        pending = self._ending.get(call_id)
        if pending is not None:
            return await asyncio.shield(pending)
        record = await self._get_or_404(call_id)
        if record.terminal:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ending[call_id] = future
        try:
            await self._hangup(record, reason, error)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the caller gets it re-raised below
            raise
        finally:
            self._ending.pop(call_id, None)

    async def transfer(
        self, call_id: str, to: str, mode: str = "cold", say: str | None = None
    ) -> CallRecord:
        """Hand the caller to a person (transfer.py has the rules); returns once the carrier
        took it. The outcome arrives as `call.transfer` events."""
        problem = transfers.target_problem(to, self.config.outbound.deny_prefixes)
        if problem:
            raise InvalidInput(problem)
        if not isinstance(self.provider, Transfers):
            raise Unavailable(f"the {self.provider.name} carrier cannot transfer calls")
        how = transfers.TransferMode(mode)
        record = await self._require_live(call_id)
        summary = None
        if how == transfers.TransferMode.WARM:
            summary = await transfers.handover_summary(self.responder, record)

        def start(rec: CallRecord) -> LoggedEvent:
            require_live(rec)
            if transfers.under_way(rec):
                raise Conflict("a transfer is already under way on this call: wait for it")
            transfers.begin(rec, to, how, say, summary, self.clock.now())
            data = {"transferTarget": to, "mode": how.value, "transferStatus": "dialing"}
            return self._entry(rec, EventType.TRANSFER, data)

        record = await self._mutate(call_id, start)
        self.replies.drop(call_id)  # a reply in flight is not said over the transfer
        request = TransferRequest(to, how.value, say, summary)
        try:
            await self.provider.transfer(record, request)
        except ProviderError as exc:
            error = str(exc)
            await self._mutate(call_id, lambda rec: self._transfer_refused(rec, to, error))
            raise Unavailable(f"the carrier could not transfer the call: {error}") from None
        return record

    def _transfer_refused(self, rec: CallRecord, to: str, error: str) -> LoggedEvent:
        transfers.advance(rec, TransferStatus.FAILED, self.clock.now(), error)
        data = {"transferTarget": to, "transferStatus": "failed", "error": error}
        return self._entry(rec, EventType.TRANSFER, data)

    async def end_after_stream_drop(self, call_id: str, reason: CallState) -> None:
        """A call's media stream is gone for good: end the call, unless a transfer took the
        stream away (the carrier now connects the caller elsewhere)."""
        record = await self.store.get(call_id)
        if record is not None and transfers.under_way(record):
            log.info("call %s: stream closed for a transfer; the call goes on", call_id)
            return
        await self.end(call_id, reason)

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
                over = record.terminal and event.type != EventType.RECORDING
                outcome = self._apply(record, event, effects, received)
                data = event_data(event, outcome)
                kind: EventType | ManagerEntry = event.type
                if over:  # logged for the record, never as a second `call.ended` in tail/SSE
                    kind, data["event"] = ManagerEntry.IGNORED, event.type.value
                entry = self._entry(record, kind, data, key)
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
        if event.type == EventType.RECORDING:  # ready after the call, as often as not
            if self.recordings.download_wanted(event) and event.recording_url:
                url = event.recording_url
                effects.append(lambda: self._spawn(self._download_recording(rec.call_id, url)))
            return apply_recording(rec, event)
        if rec.terminal:
            return "ignored: call already ended"
        note_provider_id(rec, event)
        now = event.timestamp or self.clock.now()
        kind = event.type
        if kind == EventType.RINGING:
            return move(rec, CallState.RINGING)
        if kind == EventType.ACTIVE and transfers.under_way(rec):
            # our leg was bridged (Telnyx's call.bridged) while a transfer is under way: to
            # the target, whichever leg's webhook comes first
            bridged = event.model_copy(update={"transfer_status": TransferStatus.BRIDGED})
            return self._apply_transfer(rec, bridged, now, effects)
        if kind in (EventType.ANSWERED, EventType.ACTIVE):
            target = CallState.ANSWERED if kind == EventType.ANSWERED else CallState.ACTIVE
            first = self._mark_answered(rec, now, effects)
            outcome = move(rec, target)
            if first and amd.awaits_verdict(rec):  # nobody is greeted before the verdict
                effects.append(lambda: self.amd.arm_verdict_wait(rec.call_id))
            elif first:
                effects.append(lambda: self._spawn(self._on_answered(rec.call_id)))
            return outcome
        if kind == EventType.AMD:
            step = amd.note_verdict(
                rec, event.answered_by or AnsweredBy.UNKNOWN, self.amd.beep_reported
            )
            effects.append(lambda: self.amd.run(rec.call_id, step))
            return "applied"
        if kind == EventType.MACHINE_GREETING_ENDED:
            step = amd.note_greeting_end(rec)
            effects.append(lambda: self.amd.run(rec.call_id, step))
            return "applied"
        if kind == EventType.SPEAKING:
            self.replies.audio_started(rec.call_id, received, event.tts_first_byte_ms)
            self._mark_answered(rec, now, effects)
            return move(rec, CallState.SPEAKING)
        if kind == EventType.SPEECH:
            return self._apply_speech(rec, event, now, effects, received)
        if kind == EventType.REPLIED:
            return self._apply_model_reply(rec, event, now, effects)
        if kind == EventType.ENDED:
            said = event.reason or CallState.COMPLETED
            # A plain "completed" after our own hang-up request is that hang-up: its reason.
            asked = asked_reason(rec) if said == CallState.COMPLETED else None
            reason = asked or amd.ended_reason(rec, said)
            end_record(rec, reason, now)
            effects.append(lambda: self._finalize(rec.call_id, reason))
            return "applied"
        if kind == EventType.TRANSFER:
            return self._apply_transfer(rec, event, now, effects)
        if kind == EventType.ERROR:
            rec.metadata["error"] = event.error or "carrier error"
            end_record(rec, CallState.ERROR, now)
            effects.append(lambda: self._finalize(rec.call_id, CallState.ERROR))
            return "applied"
        if kind == EventType.PLAYBACK_ENDED and amd.leaving(rec):
            effects.append(lambda: self._spawn(self.amd.said(rec.call_id)))
        elif kind == EventType.PLAYBACK_ENDED and (
            notify_done_speaking(rec) or rec.metadata.get("hangupAfterReply") is True
        ):
            delay = float(self.config.outbound.notify_hangup_delay_sec)
            effects.append(lambda: self._arm_notify_hangup(rec.call_id, delay))
        elif kind == EventType.PLAYBACK_ENDED and is_outbound_notify(rec):
            # The carrier finished the message before we recorded it as said (a fast
            # playback): remember it, so the hang-up is armed without waiting for a fallback.
            rec.metadata["playbackEnded"] = True
        elif kind == EventType.STREAM_STARTED and self.config.realtime.enabled:
            # the call's audio goes to a speech-to-speech model: say so on the record
            rec.metadata["realtime"] = self.config.realtime.provider or "openai"
        return "applied"  # initiated, dtmf, silence, playback-ended: logged only

    def _apply_transfer(
        self, rec: CallRecord, event: CallEvent, now: float, effects: list[Callable[[], object]]
    ) -> str:
        """A transfer moved on: connected ends the bot's part; a failure hands the caller back."""
        status = event.transfer_status
        if status is None or not transfers.advance(rec, status, now, event.error or ""):
            return "ignored: no transfer under way"
        if transfers.connected(status):
            rec.metadata["transferred"] = True
            end_record(rec, CallState.COMPLETED, now)
            effects.append(lambda: self._finalize(rec.call_id, CallState.COMPLETED))
        elif status.failed:
            effects.append(lambda: self._spawn(self._transfer_failed(rec.call_id)))
        elif status == TransferStatus.ANSWERED and event.transfer_leg:
            leg = event.transfer_leg  # a carrier where we brief and bridge the target ourselves
            effects.append(lambda: self._spawn(self._transfer_answered(rec.call_id, leg)))
        return "applied"

    async def _transfer_answered(self, call_id: str, leg: str) -> None:
        record = await self.store.get(call_id)
        request = transfers.request_of(record) if record is not None else None
        if record is None or request is None or not isinstance(self.provider, Transfers):
            return
        try:
            await self.provider.transfer_answered(record, leg, request)
        except ProviderError as exc:
            log.warning("could not connect the transfer target of %s: %s", call_id, exc)

    async def _transfer_failed(self, call_id: str) -> None:
        """Back with the bot after a failed transfer: say so, then listen again."""
        record = await self.store.get(call_id)
        if record is None or record.terminal:
            return
        if isinstance(self.provider, Transfers):
            with contextlib.suppress(ProviderError):
                await self.provider.transfer_failed(record)
        if record.mode != Mode.CONVERSATION:
            return
        try:
            await self._speak(call_id, transfers.COULD_NOT_REACH)
            if call_id not in self._turns:
                await self._listen(call_id, None)
        except (Conflict, NotFound, Unavailable) as exc:
            log.info("after the failed transfer on %s: %s", call_id, exc)

    def _apply_speech(
        self,
        rec: CallRecord,
        event: CallEvent,
        now: float,
        effects: list[Callable[[], object]],
        received: float,
    ) -> str:
        text = (event.transcript or event.text or "").strip()
        if (text or not event.is_final) and self.replies.in_flight(rec.call_id):
            # The caller is talking (barge-in; a partial, even empty, is speech starting): a
            # reply still being generated or spoken for their earlier words is stale, so the
            # rest of it is dropped.
            effects.append(lambda: self.replies.drop(rec.call_id))
        if not event.is_final or not text:
            return "applied"  # partials are logged, not transcribed
        self._mark_answered(rec, now, effects)
        rec.transcript.append(TranscriptEntry(at=now, speaker=Speaker.USER, text=text))
        move(rec, CallState.LISTENING)
        turn = self._turns.get(rec.call_id)
        if turn is not None:
            if not turn.matches(event.turn_token):
                return "applied: stale turn token"
            effects.append(lambda: turn.resolve(text))
        elif (
            self.replies.answers(rec)
            and "hangupAfterReply" not in rec.metadata
            and not transfers.under_way(rec)  # the caller is being handed to a person
        ):
            endpointing = event.endpointing_ms
            effects.append(lambda: self.replies.start(rec.call_id, received, endpointing))
        return "applied"

    def _apply_model_reply(
        self, rec: CallRecord, event: CallEvent, now: float, effects: list[Callable[[], object]]
    ) -> str:
        """A realtime model's own answer (realtime/bridge.py): a bot line of what was heard."""
        text = (event.text or "").strip()
        self._mark_answered(rec, now, effects)
        if text:
            rec.transcript.append(TranscriptEntry(at=now, speaker=Speaker.BOT, text=text))
        if event.voice_to_voice_ms is not None:  # the answer to an utterance: a turn's figures
            turn = model_turn(event.voice_to_voice_ms, event.is_final)
            effects.append(lambda: self._spawn(self._record_turn(rec.call_id, turn)))
        move(rec, CallState.LISTENING)
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

    # ---------------------------------------------------------------- inbound

    async def _accept_inbound(self, event: CallEvent) -> str:
        decision = screen(self.config, event.from_number, event.to_number)
        async with self._initiate_lock:  # counted and inserted together, as for dialling
            if decision.accepted:
                active = len(await self.store.list_active())
                decision = over_capacity(active, self.config.max_concurrent_calls) or decision
            record = inbound_record(
                event, decision, self.provider.name, self.config.from_number, self.clock.now()
            )
            record.agent_id = call_agent_id(self.config, record)
            if not decision.accepted:
                record.metadata["rejectionReason"] = decision.rejection
            entry = self._entry(
                record,
                event.type,
                event_data(event, "accepted" if decision.accepted else decision.reason),
                event.key,
            )
            try:
                await self._persist(record, entry)
            except DuplicateEvent:
                return "duplicate"
        self._remember(event.key)
        if not decision.accepted:  # "inbound-policy": each carrier's reject-while-ringing path
            await self._provider_action(
                self.provider.hangup(record, "inbound-policy"), "reject", quiet=True
            )
            return f"rejected: {decision.reason}"
        if self.claim_new is not None:
            await self.claim_new(record.call_id)
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
            require_live(rec)
            rec.state = CallState.SPEAKING
            # A provider whose speech ends in its own listen (Twilio's Say inside a Gather)
            # needs the waiting turn's token now, not at start_listening.
            turn = self._turns.get(call_id)
            if turn is not None:
                rec.metadata["turnToken"] = turn.token
            else:
                rec.metadata.pop("turnToken", None)
            return self._entry(rec, ManagerEntry.SPEAKING, {"text": text})

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
            return self._entry(rec, ManagerEntry.SPOKE, data)

        with contextlib.suppress(Conflict):
            await self._mutate(call_id, record)

    async def _speak_failed(self, call_id: str, exc: ProviderError) -> Unavailable:
        error = str(exc)
        with contextlib.suppress(Conflict):
            await self._mutate(call_id, lambda rec: self._after_speak_failure(rec, error))
        return Unavailable(f"could not speak on the call: {error}")

    def _after_speak_failure(self, rec: CallRecord, error: str) -> LoggedEvent:
        move(rec, CallState.LISTENING)  # never left stuck in speaking
        return self._entry(rec, ManagerEntry.SPEAK_FAILED, {"error": error})

    async def _listen(self, call_id: str, token: str | None) -> None:
        def begin(rec: CallRecord) -> LoggedEvent:
            require_live(rec)
            move(rec, CallState.LISTENING)
            return self._entry(rec, ManagerEntry.LISTENING, {})

        record = await self._mutate(call_id, begin)
        await self._provider_action(self.provider.start_listening(record, token), "listen")

    async def _on_answered(self, call_id: str) -> None:
        """Say the initial message once; then hang up (notify) or listen (conversation)."""
        if call_id in self._greeting:
            return
        self._greeting.add(call_id)
        try:
            record = await self.store.get(call_id)
            if record is not None and not record.terminal:
                await self._start_recording(record)
            message = record and record.metadata.get("initialMessage")
            if record is None or not message or record.terminal:
                return
            message = self.recordings.with_consent(record, str(message))
            if self.replies.answers(record):
                self.replies.history(record)  # prefetched while the greeting is said
            if record.metadata.get("dtmfPending") is True:
                await self._send_dtmf_sequence(call_id)
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

    async def _start_recording(self, record: CallRecord) -> None:
        """The carrier records from now on (after the consent line, when one is set)."""
        try:
            await self.recordings.start(record)
        except (ProviderError, Unavailable, Conflict) as exc:
            log.warning("call %s: recording not started: %s", record.call_id, exc)
            await self._log(record.call_id, ManagerEntry.RECORDING_FAILED, {"error": str(exc)})

    async def _download_recording(self, call_id: str, url: str) -> None:
        try:
            event = await self.recordings.download(call_id, url)
        except (ProviderError, OSError) as exc:
            log.warning("call %s: recording not downloaded: %s", call_id, exc)
            await self._log(call_id, ManagerEntry.RECORDING_FAILED, {"error": str(exc)})
            return
        await self.handle_event(event)

    async def _send_dtmf_sequence(self, call_id: str) -> None:
        """Press the dtmfSequence now that the callee answered (a carrier that takes no keys at
        dial), before the greeting: e.g. a conference PIN, then the bot speaks in the room."""

        def take(rec: CallRecord) -> LoggedEvent | None:
            if rec.metadata.pop("dtmfPending", None) is not True:
                return None  # sent already (a repeated answer)
            return self._entry(rec, ManagerEntry.DTMF, {"digits": rec.metadata["dtmfSequence"]})

        record = await self.store.get(call_id)
        digits = record.metadata.get("dtmfSequence") if record else None
        if record is None or not isinstance(digits, str):
            return
        try:
            await self.provider.send_dtmf(record, digits)
        except ProviderError as exc:
            error = str(exc)
            log.warning("dtmfSequence for %s refused by the carrier: %s", call_id, error)
            await self._mutate(call_id, lambda rec: self._dtmf_refused(rec, error))
            return
        await self._mutate(call_id, take)

    def _dtmf_refused(self, rec: CallRecord, error: str) -> LoggedEvent:
        rec.metadata.pop("dtmfPending", None)
        return self._entry(rec, ManagerEntry.DTMF_FAILED, {"error": error})

    def _provider_says_notify(self, record: CallRecord) -> bool:
        """The carrier was handed the notify message at dial (TwiML Say+Hangup): one path only,
        so the callee hears it exactly once."""
        # Not with detection on: the message waits for the verdict (and, for a machine, the beep).
        return (
            record.direction == Direction.OUTBOUND
            and self.provider.delivers_notify_inline
            and "amd" not in record.metadata
        )

    def _greeted(self, rec: CallRecord, inline: bool) -> LoggedEvent:
        message = rec.metadata.pop("initialMessage", None)
        rec.metadata["greeted"] = True
        if inline and message:  # said by the carrier: still part of the conversation
            rec.transcript.append(
                TranscriptEntry(at=self.clock.now(), speaker=Speaker.BOT, text=str(message))
            )
        return self._entry(rec, ManagerEntry.GREETED, {"inline": inline} if inline else {})

    def _after_notify_message(
        self, call_id: str, message: str, inline: bool, ended: bool = False
    ) -> None:
        delay = float(self.config.outbound.notify_hangup_delay_sec)
        if (inline or self.provider.reports_playback_end) and not ended:
            # Hang up `delay` after the carrier says playback ended (a long message is never
            # cut off; a message the carrier said from the dial reports its end the same way,
            # so every carrier ends a notify call alike); this fallback covers a
            # playback-ended event that never comes.
            delay += 10.0 + len(message) / 10
        self._arm_notify_hangup(call_id, delay)

    def _arm_notify_hangup(self, call_id: str, delay: float) -> None:
        self.timers.set(call_id, "notify-hangup", delay, lambda: self._spawn(self.end(call_id)))

    async def _hang_up_after_reply(self, call_id: str, requested_by: str) -> None:
        """The responder asked to end the call: hang up once its goodbye was heard."""

        def goodbye(rec: CallRecord) -> LoggedEvent:
            rec.metadata["hangupAfterReply"] = True
            return self._entry(rec, ManagerEntry.GOODBYE, {"requestedBy": requested_by})

        await self._mutate(call_id, goodbye)
        self._after_notify_message(call_id, "", inline=False)

    async def _record_turn(self, call_id: str, figures: TurnLatency) -> None:
        """Persist a turn's figures, numbered after the call's earlier turns (the call may have
        ended meanwhile), then tell listeners."""

        def note(rec: CallRecord) -> LoggedEvent:
            turn = figures.model_copy(update={"turn": len(rec.latency) + 1, "at": self.clock.now()})
            rec.latency.append(turn)
            if turn.kind == TurnKind.REPLY:
                return self._entry(rec, ManagerEntry.TURN_REPLIED, turn.wire())
            rec.metadata["turnCount"] = turn.turn
            return self._entry(rec, ManagerEntry.TURN_COMPLETED, turn.wire())

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

    async def _hangup(
        self, record: CallRecord, reason: CallState, error: str | None = None
    ) -> None:
        def requested(rec: CallRecord) -> LoggedEvent:
            rec.metadata["hangupRequestedAt"] = self.clock.now()
            # The carrier's own "ended" may arrive before `_finish` below: it then ends the
            # call with the reason asked for here, not the carrier's plain "completed".
            rec.metadata["hangupReason"] = reason.value
            if error:
                rec.metadata["hangupError"] = error
            return self._entry(rec, ManagerEntry.HANGUP, {"reason": reason.value})

        record = await self._mutate(record.call_id, requested)
        try:
            await self.provider.hangup(record, reason.value)
        except ProviderError as exc:
            if reason == CallState.HANGUP_BOT:
                raise Unavailable(f"the carrier refused to hang up: {exc}") from None
            log.warning("hang-up of %s failed (%s); ending it here anyway", record.call_id, exc)
        await self._finish(record.call_id, reason, EventType.ENDED, error)

    async def _end_quietly(self, call_id: str, reason: CallState, error: str | None) -> None:
        """End a call the detection decided on; one that ended meanwhile stays as it is."""
        with contextlib.suppress(Conflict, NotFound, Unavailable):
            await self.end(call_id, reason, error=error)

    async def _amd_change(
        self, call_id: str, kind: ManagerEntry, change: amd.Change
    ) -> CallRecord | None:
        """Apply a detection change to the live call and log it; None when nothing changed."""
        changed: list[bool] = []

        def apply(rec: CallRecord) -> LoggedEvent | None:
            data = change(rec)
            if data is None:
                return None
            changed.append(True)
            return self._entry(rec, kind, data)

        with contextlib.suppress(Conflict, NotFound):
            record = await self._mutate(call_id, apply)
            return record if changed else None
        return None

    async def _finish(
        self, call_id: str, reason: CallState, kind: EventType | ManagerEntry, error: str | None
    ) -> None:
        """Persist a terminal state decided here (not by a carrier event), then finalize."""

        def finish(rec: CallRecord) -> LoggedEvent | None:
            if rec.terminal:
                return None
            if error:
                rec.metadata["error"] = error
            end_record(rec, reason, self.clock.now())
            return self._entry(
                rec, kind, {"reason": reason.value, **({"error": error} if error else {})}
            )

        await self._mutate(call_id, finish, allow_terminal=True)
        self._finalize(call_id, reason)

    def _finalize(self, call_id: str, reason: CallState) -> None:
        self.replies.forget(call_id)
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

    # ---------------------------------------------------------------- restore and timers

    async def _restore(self, call: CallRecord) -> Decision:
        """Apply restore's decision for one call found live after a restart (restore.py)."""
        limit = float(self.config.max_duration_seconds)
        decision = await decide(call, self.provider, self.clock.now(), limit)
        if isinstance(decision, EndCall):
            if decision.hang_up_first:
                with contextlib.suppress(ProviderError):
                    await self.provider.hangup(call, decision.reason.value)
            data = {"outcome": decision.why, "carrierStatus": decision.reason.value}

            def end(rec: CallRecord) -> LoggedEvent | None:
                if rec.terminal:  # ended meanwhile (the carrier's event came first)
                    return None
                end_record(rec, decision.reason, self.clock.now())
                rec.metadata["restoreOutcome"] = decision.why
                return self._entry(rec, ManagerEntry.RESTORED, data)

            # Under the call's lock, on the record as it is now: the carrier was asked in
            # between, and an event applied meanwhile must not be written over.
            await self._mutate(call.call_id, end, allow_terminal=True)
            self._finalize(call.call_id, decision.reason)
            return decision
        kept = {"outcome": decision.outcome, "carrierStatus": decision.carrier_status}

        def keep(rec: CallRecord) -> LoggedEvent | None:
            return None if rec.terminal else self._entry(rec, ManagerEntry.RESTORED, kept)

        await self._mutate(call.call_id, keep, allow_terminal=True)
        if decision.max_duration_left_s is not None:
            self._arm_max_duration(call.call_id, decision.max_duration_left_s)
        return decision

    async def adopt(self, record: CallRecord) -> Decision | None:
        """Take over one call from an instance that died (cluster/adoption.py): restore's
        decision, as after a restart (max duration re-armed from `answered_at`); a call whose
        last words were said gets the hang-up its old owner had armed. None: it had ended."""
        if record.terminal:
            return None
        decision = await self._restore(record)
        done = notify_done_speaking(record) or record.metadata.get("hangupAfterReply") is True
        if isinstance(decision, KeepCall) and done:
            delay = float(self.config.outbound.notify_hangup_delay_sec)
            self._arm_notify_hangup(record.call_id, delay)
        elif isinstance(decision, KeepCall) and record.answered_at is not None:
            self._spawn(self._resume(record))
        return decision

    async def _resume(self, record: CallRecord) -> None:
        """An adopted call picks up where its dead owner stopped: the greeting when it was never
        marked said (the carrier may have played part of it: said again rather than left
        silent), else a conversation listens again (its owner may have died between a line and
        the listen that follows it)."""
        call_id = record.call_id
        if "initialMessage" in record.metadata and record.metadata.get("greeted") is not True:
            await self._on_answered(call_id)
        elif record.mode != Mode.NOTIFY and call_id not in self._turns:
            with contextlib.suppress(Conflict, NotFound, Unavailable):
                await self._listen(call_id, None)

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
            if self.owns is not None and not await self.owns(record.call_id):
                continue  # another instance's call: its owner reaps it
            with contextlib.suppress(Conflict, NotFound):
                await self._log(record.call_id, ManagerEntry.STALE, {"endedBy": "stale-reaper"})
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
                raise Conflict(not_active(record))
            updated = record.model_copy(deep=True)
            entry = change(updated)
            if entry is None:
                return record
            await self._persist(updated, entry)
            return updated

    async def _log(self, call_id: str, kind: ManagerEntry, data: dict[str, Any]) -> CallRecord:
        """Log one entry on a live call, changing nothing else."""
        return await self._mutate(call_id, lambda rec: self._entry(rec, kind, data))

    async def _persist(self, record: CallRecord, entry: LoggedEvent) -> None:
        logged = await self.store.save(record, entry)
        if logged is not None:
            self.bus.publish(logged)

    def _entry(
        self,
        rec: CallRecord,
        kind: EventType | ManagerEntry,
        data: dict[str, Any],
        key: str | None = None,
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
        require_live(record)
        return record

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
