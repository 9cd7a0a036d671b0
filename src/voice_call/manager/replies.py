"""The auto-reply pipeline the manager owns: a caller's final words in, the responder's reply out.

`AutoReplies` starts a reply when the caller finishes speaking (`CallManager` hands it the
event's effects), speaks its sentences as they come, drops it when the caller talks over it
(barge-in), an agent takes the turn or the call ends, says the apology when the responder fails
or is too slow (responseTimeoutMs), then listens again (or hangs up after a goodbye) and records
the turn's latency figures. It changes call state only through `ManagerActions`: the
CallManager stays the only writer.

`ReplyRun` is one reply in flight: the responder's stream fills a queue from a separate task, so
the model keeps generating while earlier sentences are being handed to the carrier (a carrier
REST call may take longer than the next sentence does). `drop()` and `expire()` cancel the
generation at once; sentences already produced before an expiry are still delivered, then
`chunks()` raises ReplyTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from voice_call.agent.memory import session_history
from voice_call.agent.prompt import response_timeout_ms
from voice_call.agent.responders.base import ReplyContext, Responder
from voice_call.agent.responders.routed import RoutedResponder
from voice_call.config import Config
from voice_call.errors import Conflict, NotFound, Unavailable
from voice_call.manager.timers import CallTimers
from voice_call.manager.turns import Spoken
from voice_call.models import (
    CallRecord,
    Direction,
    ManagerEntry,
    Mode,
    TranscriptEntry,
    TurnKind,
    TurnLatency,
)
from voice_call.providers.base import Provider, SpeechQueue
from voice_call.store.base import CallStore

log = logging.getLogger("voice_call.manager.replies")

_DONE: Final = object()

Said = asyncio.Future[None]  # done once a line was said and put in the transcript


@dataclass(frozen=True)
class ManagerActions:
    """What the pipeline asks of the CallManager, the only writer of call state."""

    agent_has_turn: Callable[[str], bool]  # an agent's continue_call is waiting on the call
    # hand a line over (after the line before it): when, and its Said
    start_speaking: Callable[[str, str, Said | None], Awaitable[tuple[Spoken, Said]]]
    listen: Callable[[str], Awaitable[None]]  # listen for the caller again
    log: Callable[[str, ManagerEntry, dict[str, Any]], Awaitable[object]]  # one log entry
    hang_up_after_reply: Callable[[str, str], Awaitable[None]]  # the responder said goodbye
    record_turn: Callable[[str, TurnLatency], Awaitable[None]]  # a turn's figures
    spawn: Callable[[Awaitable[Any]], None]  # background work the manager awaits and cancels


class AutoReplies:
    """The auto-reply in flight per call, and each call's session history for the responder."""

    def __init__(
        self,
        config: Config,
        store: CallStore,
        provider: Provider,
        timers: CallTimers,
        actions: ManagerActions,
        responder: Responder | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.provider = provider
        self.timers = timers
        self.actions = actions
        self.responder = responder
        self._runs: dict[str, ReplyRun] = {}
        self._histories: dict[str, asyncio.Future[list[TranscriptEntry]]] = {}

    def answers(self, rec: CallRecord) -> bool:
        """Whether the caller's words on this call get an auto-reply (never on realtime
        voice: the model answers them itself)."""
        if self.responder is None or self.config.realtime.enabled:
            return False
        if isinstance(self.responder, RoutedResponder) and self.responder.pick(rec) is None:
            return False  # neither this call's number nor the top level has a responder
        return rec.direction == Direction.INBOUND or rec.mode == Mode.CONVERSATION

    def in_flight(self, call_id: str) -> bool:
        return call_id in self._runs

    def audio_started(self, call_id: str, at: float, tts_first_byte_ms: float | None) -> None:
        """The stream says our audio started playing (call.speaking): the reply's first frame."""
        run = self._runs.get(call_id)
        if run is not None:
            run.audio_started(at, tts_first_byte_ms)

    def start(self, call_id: str, heard_at: float, endpointing_ms: float | None = None) -> None:
        """Answer the caller's final words; a reply still running for earlier words is dropped."""
        self.drop(call_id)
        run = self._runs[call_id] = ReplyRun(heard_at, endpointing_ms)
        self.actions.spawn(self._reply(call_id, run))

    def drop(self, call_id: str) -> None:
        run = self._runs.pop(call_id, None)
        if run is not None:
            self.timers.cancel(call_id, "reply")
            run.drop()

    def forget(self, call_id: str) -> None:
        """The call ended: drop its reply and its history."""
        self.drop(call_id)
        history = self._histories.pop(call_id, None)
        if history is not None:
            history.cancel()

    def close(self) -> None:
        for call_id in list(self._runs):
            self.drop(call_id)
        for history in self._histories.values():
            history.cancel()
        self._histories.clear()

    def history(self, record: CallRecord) -> Callable[[], Awaitable[list[TranscriptEntry]]]:
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

    async def _reply(self, call_id: str, run: ReplyRun) -> None:
        """Stream the responder's sentences to the provider as they come, then listen again.

        A failing or slow responder (responseTimeoutMs) gets the apology and the call stays up;
        the turn's figures are recorded whatever happened.
        """
        assert self.responder is not None
        try:
            record = await self.store.get(call_id)
            if (
                record is None
                or not record.state.live
                or run.dropped
                or self.actions.agent_has_turn(call_id)
            ):
                return
            run.start(self.responder, record, ReplyContext(load_history=self.history(record)))
            timeout_ms = response_timeout_ms(self.config, record)
            self.timers.set(call_id, "reply", timeout_ms / 1000, run.expire)
            first_sent, outcome = await self._say_reply(call_id, run, timeout_ms)
            handed_over = time.monotonic()
            if outcome in ("spoken", "apology", "silent") and not run.dropped:
                await self._after_reply(call_id, run)
                outcome = "ended" if run.context.end_requested else outcome
        finally:
            if self._runs.get(call_id) is run:
                del self._runs[call_id]
                self.timers.cancel(call_id, "reply")
            run.drop()  # stops the generator if this task itself was cancelled
        await run.wait()
        figures = TurnLatency(
            turn=0,  # numbered when recorded
            kind=TurnKind.REPLY,
            total_ms=run.ms_since_heard(handed_over) or 0.0,
            responder_first_token_ms=run.ms_since_started(run.context.first_token_at),
            responder_total_ms=run.ms_since_started(run.finished),
            endpointing_ms=run.endpointing_ms,
            tts_first_byte_ms=run.tts_first_byte_ms,
            voice_to_voice_ms=run.voice_to_voice_ms(first_sent),
            outcome=outcome,
        )
        await self.actions.record_turn(call_id, figures)

    async def _say_reply(
        self, call_id: str, run: ReplyRun, timeout_ms: int
    ) -> tuple[float | None, str]:
        """Speak the reply's sentences as they come; (when the first was handed over, outcome).

        Returns once every line was said (or cut off) and put in the transcript. A provider
        that queues speech gets each sentence as soon as it comes, while the one before plays.
        """
        lines: list[Said] = []
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
        self, call_id: str, run: ReplyRun, timeout_ms: int, lines: list[Said]
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
            if self.actions.agent_has_turn(call_id):
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
            await self.actions.log(call_id, ManagerEntry.REPLY_FAILED, {"error": failure})
        sent = await self._say_part(call_id, run, self.config.responder.apology_text, lines)
        if sent is None:
            return first_sent, "failed"
        return first_sent or sent, "apology"

    async def _say_part(
        self, call_id: str, run: ReplyRun, text: str, lines: list[Said]
    ) -> float | None:
        """Hand one part of a reply over; when it was, or None if the call can't take it.

        Pipelined (SpeechQueue): returns once queued, its line said later, in order.
        Otherwise: returns once said, as `speak` does.
        """
        run.first_handed = True  # the stream's first audio frame from now on is this reply's
        try:
            spoken, said = await self.actions.start_speaking(
                call_id, text, lines[-1] if lines else None
            )
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
                await self.actions.hang_up_after_reply(
                    call_id, run.context.end_reason or "responder"
                )
            elif not self.actions.agent_has_turn(call_id):
                await self.actions.listen(call_id)
        except (Conflict, NotFound, Unavailable) as exc:
            log.info("after the reply on %s: %s", call_id, exc)


class ReplyTimeout(Exception):
    """The responder did not finish within responseTimeoutMs."""


def model_turn(voice_to_voice_ms: float, heard_whole: bool) -> TurnLatency:
    """A realtime model's answer to the caller (call.replied): the model answers on its own, so
    the turn is its voice-to-voice (caller's last speech frame → first answer frame out)."""
    return TurnLatency(
        turn=0,  # numbered when recorded
        kind=TurnKind.REPLY,
        total_ms=voice_to_voice_ms,
        voice_to_voice_ms=voice_to_voice_ms,
        outcome="spoken" if heard_whole else "interrupted",
    )


class ReplyRun:
    def __init__(self, heard_at: float, endpointing_ms: float | None = None) -> None:
        self.heard_at = heard_at  # monotonic: when the caller's final words were received
        # Measured on a media stream: the caller's last speech frame came this long before
        # the final words, and the first reply audio frame went out at `first_audio_at`.
        self.endpointing_ms = endpointing_ms
        self.first_handed = False
        self.first_audio_at: float | None = None
        self.tts_first_byte_ms: float | None = None
        self.context = ReplyContext()
        self.started: float | None = None  # responder asked
        self.finished: float | None = None  # responder done (or stopped)
        self.dropped = False
        self.timed_out = False
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self, responder: Responder, call: CallRecord, context: ReplyContext) -> None:
        if self.dropped or self._task is not None:
            return
        self.context = context
        self.started = time.monotonic()
        self._task = asyncio.ensure_future(self._produce(responder, call))

    async def _produce(self, responder: Responder, call: CallRecord) -> None:
        stream = responder.stream(call, self.context)
        try:
            async for chunk in stream:
                text = chunk.strip()
                if text:
                    self.context.first_token()
                    self._queue.put_nowait(text)
        except asyncio.CancelledError:
            pass  # dropped or expired: this task is ours and ends here
        except Exception as exc:  # any responder failure becomes the apology
            self._queue.put_nowait(exc)
        finally:
            self.finished = time.monotonic()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await aclose()
            self._queue.put_nowait(_DONE)

    async def chunks(self) -> AsyncIterator[str]:
        """Sentences as they are ready. Raises ReplyTimeout after an expiry, or the responder's
        own exception; ends quietly when dropped."""
        if self._task is None:
            return
        while not self.dropped:
            item = await self._queue.get()
            if self.dropped:
                return
            if item is _DONE:
                if self.timed_out:
                    raise ReplyTimeout("the responder did not finish in time")
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, str)
            yield item

    def drop(self) -> None:
        """Stop generating and stop speaking what is left (the caller is talking)."""
        if self.dropped:
            return
        self.dropped = True
        if self._task is not None:
            self._task.cancel()
        self._queue.put_nowait(_DONE)

    def expire(self) -> None:
        if self._task is None or self._task.done() or self.dropped:
            return
        self.timed_out = True
        self._task.cancel()

    async def wait(self) -> None:
        """Until the generating task has ended (closing the responder's stream)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    def ms_since_heard(self, at: float | None) -> float | None:
        return None if at is None else round((at - self.heard_at) * 1000, 3)

    def audio_started(self, at: float, tts_first_byte_ms: float | None) -> None:
        """The first audio frame of this reply left for the carrier (media streams)."""
        if self.first_handed and self.first_audio_at is None:
            self.first_audio_at = at
            self.tts_first_byte_ms = tts_first_byte_ms

    def voice_to_voice_ms(self, first_sent: float | None) -> float | None:
        """Caller's last speech frame → our first reply frame, where a stream measured both;
        else final words received → first reply handed to the provider."""
        if self.first_audio_at is not None and self.endpointing_ms is not None:
            return round((self.first_audio_at - self.heard_at) * 1000 + self.endpointing_ms, 3)
        return self.ms_since_heard(first_sent)

    def ms_since_started(self, at: float | None) -> float | None:
        if at is None or self.started is None:
            return None
        return round((at - self.started) * 1000, 3)
