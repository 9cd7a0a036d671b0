"""RealtimeSession: one call's carrier stream bridged to a speech-to-speech model.

Caller → model: inbound µ-law frames go to `model.send_audio` as they came (the outbound track
of a both-tracks stream is our own audio and stays here); DTMF becomes a `call.dtmf` event.

Model → caller: each response's audio is cut into 20 ms frames and leaves on the pacer's
absolute clock, with a mark every 200 ms and one after its last frame, so the marks the carrier
echoes back say how much of it the caller heard. The model's own answers are reported as
`call.replied` (what was heard of them); a `speak(text)` has the model say `text` verbatim and
settles, as MediaSession's jobs do, when that response's end mark comes back. `play` puts tones
on the line; like a greeting spoken with `interruptible=False`, they are never cut by speech.

Which response says a `speak` text: the next one to start after it (the model queues its `say`
behind a response it is generating). A response the model began on its own before the `say`
but whose first audio or words had not arrived yet would take the text's place; the protocol
has no response ids to tell them apart, and the cost is a mislabelled line, not lost audio.

Barge-in: when the model hears the caller over our audio, the pacer stops, queued media is
dropped, the carrier's buffer is cleared at once, and the model is told how many milliseconds
of its answer were heard (acknowledged marks: what really played). The answer is recorded cut
to the same share of its words as of its audio (heard frames / frames received). Audio the
model still sends for the cut response is dropped until it says that response is done (or, for
a service that does not close a cut turn, until the caller's words are final).

Hang-ups: `end_call` from the model ends the call (hangup-bot) once its goodbye has played; the
model ending its session on its own is the bot leaving too (hangup-bot, after what it said
played); no inbound media for `silence_timeout_s` and then `grace_s` more ends the call as
`timeout` (a timer decided: the line is dead, but nobody told us the caller hung up);
`idle_hangup_s` without a word either way ends it as hangup-bot (our choice, on a live line). A
dropped model session is reopened once with the conversation so far; a second loss, or a failed
reopen, ends the call with an apology in the carrier's own voice (`CallControl.end_with_apology`).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from voice_call.audio.framer import Framer
from voice_call.audio.g711 import FRAME_MS
from voice_call.media.events import EventDelivery, EventSink
from voice_call.media.lateness import LatenessStats
from voice_call.media.outbox import Outbox
from voice_call.media.pacer import Pacer, Scheduler
from voice_call.media.playback import (
    PlaybackQueueFull,
    PlaybackResult,
    PlaybackStatus,
    SessionClosed,
)
from voice_call.media.stream_protocols import Dtmf, Inbound, MarkAck, Media, StreamProtocol
from voice_call.media.tap import MediaTap
from voice_call.models import CallState, EndReason, EventType
from voice_call.realtime.model import RealtimeModel, SessionSetup, Speaker, ToolSpec
from voice_call.realtime.tools import END_CALL, CallControl, ToolError, ToolPolicy, Tools

log = logging.getLogger("voice_call.realtime")

MARK_EVERY_FRAMES = 10  # 200 ms: how finely we know what the caller heard
ACK_GRACE_S = 2.0  # an end mark may take this long (plus the unplayed audio) to come back
MAX_PENDING_SPEECH = 8
MAX_TRANSCRIPT = 8000
MAX_LATENCY_MS = 30_000  # older: a stale speech-stopped, not this turn's
MAX_HISTORY = 200  # turns replayed into a reopened session
LAST_WORDS_WAIT_S = 1.5  # longest wait for the caller's words the model is still transcribing


@dataclass(frozen=True)
class BridgeSettings:
    silence_timeout_s: float = 30.0  # no inbound media this long: the line is dead...
    grace_s: float = 2.0  # ...unless it comes back within this
    idle_hangup_s: float | None = None  # nobody spoke either way this long: hang up
    consult_filler_s: float = 1.5  # a consult slower than this gets the filler line first
    filler_text: str = "One moment while I check on that."
    apology_text: str = "Sorry, I'm having trouble on my end right now. Please call back later."
    tool_policy: ToolPolicy = "safe-read-only"
    tools: tuple[ToolSpec, ...] = ()  # custom `realtime.tools`, answered by the hook
    tool_timeout_s: float = 30.0
    goodbye_timeout_s: float = 10.0  # longest wait for the goodbye to play before hanging up
    max_reconnects: int = 1


class _Speech:
    """A `speak` (or the consult filler, which has no future) waiting for its response."""

    def __init__(
        self, text: str, interruptible: bool, future: asyncio.Future[PlaybackResult] | None
    ):
        self.text = text
        self.interruptible = interruptible
        self.future = future


class _Playout:
    """One thing going out on the line: a model response, whose audio arrives as it is
    generated, or tones made already."""

    def __init__(
        self, ident: str, kind: Literal["reply", "tones"], loop: asyncio.AbstractEventLoop
    ):
        self.id = ident
        self.kind = kind
        self.interruptible = kind == "reply"
        self.frames: deque[bytes] = deque()
        self.framer = Framer()
        self.received = 0  # frames of audio that came (sent or waiting)
        self.sent = 0
        self.heard = 0  # frames the caller heard: confirmed by marks, or estimated at a cut
        self.sent_at: list[float] = []  # loop time each frame left
        self.voice_to_voice_ms: float | None = None  # set on the answer to an utterance
        self.complete = False  # no more audio is coming
        self.arrived = asyncio.Event()  # set with `complete`
        self.transcript: list[str] = []
        self.label = ""
        self.speech: _Speech | None = None
        self.future: asyncio.Future[PlaybackResult] = loop.create_future()
        self.ack_timer: asyncio.TimerHandle | None = None

    def add(self, ulaw: bytes) -> list[bytes]:
        frames = self.framer.push(ulaw)
        self.frames.extend(frames)
        self.received += len(frames)
        return frames

    def finish(self) -> None:
        tail = self.framer.flush()
        if tail is not None:
            self.frames.append(tail)
            self.received += 1
        self.complete = True
        self.arrived.set()

    def text(self) -> str:
        if self.speech is not None:
            return self.speech.text
        return self.label if self.kind == "tones" else "".join(self.transcript).strip()


def heard_words(text: str, heard: int, total: int) -> str:
    """The first words of `text` in the share `heard / total` (audio frames) of it."""
    words = text.split()
    share = min(max(heard / total, 0.0), 1.0) if total > 0 else 0.0
    return " ".join(words[: int(len(words) * share)])


class RealtimeSession:
    def __init__(
        self,
        call_id: str,
        protocol: StreamProtocol,
        outbox: Outbox,
        model: RealtimeModel,
        sink: EventSink,
        control: CallControl,
        settings: BridgeSettings | None = None,
        *,
        scheduler: Scheduler | None = None,
        stats: LatenessStats | None = None,
        on_fatal: Callable[[int, str], None] | None = None,
    ) -> None:
        self.call_id = call_id
        self.protocol = protocol
        self.outbox = outbox
        self.model = model
        self.control = control
        self.settings = settings = settings or BridgeSettings()
        self.tools = Tools(
            control,
            call_id,
            policy=settings.tool_policy,
            custom=settings.tools,
            filler_after_s=settings.consult_filler_s,
            timeout_s=settings.tool_timeout_s,
        )
        self._on_fatal = on_fatal
        self._loop = asyncio.get_running_loop()
        self._pacer = Pacer(self._tick, scheduler=scheduler, stats=stats)
        self._queue: deque[_Playout] = deque()  # the head is on the line now
        self._draining: list[_Playout] = []  # all sent; waiting for the end mark
        self._receiving: _Playout | None = None  # the model response whose audio is arriving
        self._discarding = False  # the model still sends audio for a response we cut
        self._pending: deque[_Speech] = deque()
        self._marks: dict[str, tuple[_Playout, int, bool, float]] = {}  # …, sent at
        self._echo_delay: float | None = None  # the last mark's send → echo: the line's lag
        self._seq = 0
        self._history: list[tuple[Speaker, str]] = []
        self._setup = SessionSetup(instructions="")
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_inbound = self._last_activity = self._loop.time()
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._end_task: asyncio.Task[None] | None = None
        self._ending = False
        self._v2v_from: float | None = None
        self._caller_final = asyncio.Event()  # set by each final transcript of the caller
        self._events = EventDelivery(call_id, sink)
        self.closed = False
        self.tap: MediaTap | None = None  # set while someone listens (media/tap.py)
        # figures, for logs, tests and the benchmark
        self.inbound_frames = 0
        self.audio_frames = 0
        self.barge_ins = 0
        self.suppressed_speech = 0
        self.dropped_audio = 0  # chunks of a cut response that arrived after the cut
        self.reconnects = 0
        self.voice_to_voice_ms: list[float] = []  # caller's last speech frame → first frame out

    async def start(self, setup: SessionSetup) -> None:
        """Listen to the model (connecting it unless it was warmed while the phone rang) and
        start watching the line; raises RealtimeError when the model cannot be reached."""
        self._setup = setup
        self.model.listener = self
        if not self.model.connected:
            await self.model.connect(setup)
        self._last_inbound = self._last_activity = self._loop.time()
        self._watch_silence()
        self._watch_idle()

    # ------------------------------------------------------------------ commands

    def speak(self, text: str, *, interruptible: bool = True) -> asyncio.Future[PlaybackResult]:
        """The model says `text` verbatim; settles when it has played (or was cut, or failed).

        Raises PlaybackQueueFull when 8 already wait for the model, SessionClosed after `close`.
        """
        if self.closed:
            raise SessionClosed("the media stream for this call has ended")
        future: asyncio.Future[PlaybackResult] = self._loop.create_future()
        if not text.strip():
            future.set_result(PlaybackResult(text, PlaybackStatus.PLAYED, text, 0, 0))
            return future
        if sum(1 for s in self._pending if s.future is not None) >= MAX_PENDING_SPEECH:
            raise PlaybackQueueFull(f"playback queue is full ({MAX_PENDING_SPEECH} waiting)")
        self._pending.append(_Speech(text, interruptible, future))
        self.model.say(text)
        return future

    def play(self, ulaw: bytes, label: str) -> asyncio.Future[PlaybackResult]:
        """Queue audio made already (µ-law 8 kHz, e.g. DTMF tones) after what is queued; never
        cut by the far end's speech and never reported as something the bot said."""
        if self.closed:
            raise SessionClosed("the media stream for this call has ended")
        tones = _Playout(self._next_id("t"), "tones", self._loop)
        tones.label = label
        tones.add(ulaw)
        tones.finish()
        self._queue.append(tones)
        self._pacer.start()
        return tones.future

    def clear(self) -> None:
        """Stop everything we are saying now (protected or not) and drop what is queued."""
        self._cut("cleared")

    @property
    def playing(self) -> bool:
        return bool(self._queue) or bool(self._draining) or self._receiving is not None

    async def finish_playback(self, timeout_s: float | None = None) -> None:
        """Wait until everything on its way has played (ending a call after the goodbye)."""
        futures = [p.future for p in (*self._draining, *self._queue) if not p.future.done()]
        if futures:
            await asyncio.wait(futures, timeout=timeout_s)

    async def close(self) -> None:
        """The stream is over: settle everything, close the model, deliver the last events."""
        if self.closed:
            return
        self.closed = True
        self._pacer.stop()
        for timer in self._timers.values():
            timer.cancel()
        self._settle_all("the stream ended")
        for task in self._tool_tasks:
            task.cancel()
        await self._last_words()
        self.model.listener = None
        with contextlib.suppress(Exception):
            await self.model.close()
        await self._events.close()

    def _settle_all(self, reason: str) -> None:
        self._discard_pending(PlaybackStatus.SKIPPED, reason)
        self._settle_all_playing(reason)

    def _discard_pending(self, status: PlaybackStatus, reason: str) -> None:
        for speech in self._pending:
            if speech.future is not None and not speech.future.done():
                speech.future.set_result(PlaybackResult(speech.text, status, "", 0, 0, reason))
        self._pending.clear()

    # ------------------------------------------------------------------ carrier frames

    def handle(self, frame: Inbound) -> None:
        """A parsed frame from the carrier, after the start frame."""
        if isinstance(frame, Media):
            if frame.track != "outbound":  # both-tracks streams echo our own audio back
                self.inbound_frames += 1
                self._last_inbound = self._loop.time()
                self.model.send_audio(frame.payload)
                if self.tap is not None:
                    self.tap.inbound(frame.payload)
        elif isinstance(frame, MarkAck):
            self._on_mark(frame.name)
        elif isinstance(frame, Dtmf):
            self._emit(type=EventType.DTMF, digits=frame.digit)

    def _on_mark(self, name: str) -> None:
        entry = self._marks.pop(name, None)
        if entry is None:
            return  # a mark dropped by a clear, echoed late: it says nothing about hearing
        p, frames, final, sent_at = entry
        self._echo_delay = self._loop.time() - sent_at
        p.heard = max(p.heard, frames)
        if final:
            self._played(p)

    def _played(self, p: _Playout) -> None:
        if p in self._draining:
            self._draining.remove(p)
        for name in [name for name, entry in self._marks.items() if entry[0] is p]:
            del self._marks[name]
        self._settle(p, PlaybackStatus.PLAYED)

    # ------------------------------------------------------------------ model listener

    def on_audio(self, ulaw: bytes) -> None:
        if self.closed or self._discarding:
            self.dropped_audio += 1
            return
        reply = self._receiving or self._new_reply()
        if reply.add(ulaw):
            self._pacer.start()

    def on_output_transcript(self, delta: str) -> None:
        if self.closed or self._discarding:
            return
        (self._receiving or self._new_reply()).transcript.append(delta)

    def on_response_done(self) -> None:
        if self._discarding:
            self._discarding = False  # the cut response is over: what comes next is new
            return
        reply, self._receiving = self._receiving, None
        if reply is not None:
            reply.finish()
            self._pacer.start()  # the tick sends the tail and the end mark

    def _new_reply(self) -> _Playout:
        reply = self._receiving = _Playout(self._next_id("r"), "reply", self._loop)
        if self._pending:  # the next response after a `say` is the one that says it
            speech = reply.speech = self._pending.popleft()
            reply.interruptible = speech.interruptible
        self._queue.append(reply)
        return reply

    def on_speech_started(self) -> None:
        self._last_activity = self._loop.time()
        if self._protected():
            self.suppressed_speech += 1
            return
        if self._queue or self._draining:
            self.barge_ins += 1
            self._cut("caller spoke")
        # Told at once (an empty partial), as MediaSession does.
        self._emit(type=EventType.SPEECH, transcript="", is_final=False)

    def on_input_transcript(self, text: str, final: bool) -> None:
        self._last_activity = self._loop.time()
        if not final:
            self._emit(type=EventType.SPEECH, transcript=text[:MAX_TRANSCRIPT], is_final=False)
            return
        self._discarding = False  # a cut turn the service never closed is surely over now
        self._caller_final.set()
        if text.strip():
            self._remember("user", text)
        self._emit(
            type=EventType.SPEECH,
            transcript=text[:MAX_TRANSCRIPT],
            is_final=True,
            endpointing_ms=self._since_speech_ended(),
        )

    def on_tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        log.info("call %s: the model calls %s %s", self.call_id, name, arguments)
        if self.closed:
            return
        if name == END_CALL:
            self._end(CallState.HANGUP_BOT, "the model called end_call", tool_call_id=call_id)
            return
        task = asyncio.create_task(self._run_tool(call_id, name, arguments))
        self._tool_tasks.add(task)
        task.add_done_callback(self._tool_tasks.discard)

    def on_error(self, message: str, fatal: bool) -> None:
        log.warning("call %s: realtime model error (%s): %s", self.call_id, fatal, message)
        if fatal and not self.closed and not self._ending:
            self._ending = True  # no other ending while we try to reopen the session
            self._end_task = asyncio.create_task(self._recover(message))

    def on_closed(self, reason: str) -> None:
        log.info("call %s: the model ended its session: %s", self.call_id, reason)
        if self._receiving is not None:
            self.on_response_done()
        self._end(CallState.HANGUP_BOT, f"the model ended its session ({reason})")

    # ------------------------------------------------------------------ tools

    async def _run_tool(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        try:
            output = await self.tools.call(name, arguments, slow=self._say_filler)
        except ToolError as exc:
            log.info("call %s: tool %s failed: %s", self.call_id, name, exc)
            if not self.closed:
                self.model.tool_result(call_id, name, None, error=str(exc))
            return
        log.info("call %s: tool %s answered", self.call_id, name)
        if not self.closed:
            self.model.tool_result(call_id, name, output)

    def _say_filler(self) -> None:
        if not self.closed:
            self._pending.append(_Speech(self.settings.filler_text, True, None))
            self.model.say(self.settings.filler_text)

    # ------------------------------------------------------------------ the 20 ms tick

    def _tick(self, due: float) -> bool:
        """Send one frame; False stops the pacer (nothing to send until more audio comes)."""
        while self._queue:
            p = self._queue[0]
            if p.frames:
                frame = p.frames.popleft()
                self.outbox.put(
                    self.protocol.media(base64.b64encode(frame).decode()), due=due, media=True
                )
                if self.tap is not None:
                    self.tap.outbound(frame, due)
                p.sent += 1
                p.sent_at.append(self._loop.time())
                self.audio_frames += 1
                self._last_activity = due
                if p.sent == 1:
                    self._first_frame(p)
                if p.sent % MARK_EVERY_FRAMES == 0:
                    self._mark(p, final=False)
                if not p.frames and p.complete:
                    self._finish_sending(p)
                return True
            if not p.complete:
                return False  # the model is behind real time: `on_audio` restarts us
            self._finish_sending(p)
        return False

    def _first_frame(self, p: _Playout) -> None:
        if p.kind != "reply":
            return
        ended = self.model.speech_ended_at
        if ended is not None and ended != self._v2v_from:
            ms = (time.monotonic() - ended) * 1000
            if 0 <= ms <= MAX_LATENCY_MS:
                self._v2v_from = ended  # one figure per utterance, not per response
                p.voice_to_voice_ms = round(ms, 3)
                self.voice_to_voice_ms.append(p.voice_to_voice_ms)
        self._emit(
            type=EventType.SPEAKING,
            text=p.text()[:MAX_TRANSCRIPT] or None,
            voice_to_voice_ms=p.voice_to_voice_ms,
        )

    def _mark(self, p: _Playout, *, final: bool) -> None:
        name = f"{p.id}.{p.sent}" + (".end" if final else "")
        self._marks[name] = (p, p.sent, final, self._loop.time())
        self.outbox.put(self.protocol.mark(name))

    def _finish_sending(self, p: _Playout) -> None:
        self._queue.popleft()
        if p.sent == 0:  # a response with no audio at all: nothing to wait for
            self._settle(p, PlaybackStatus.FAILED, "the model sent no audio")
            return
        self._draining.append(p)
        self._mark(p, final=True)
        # Played out by now, give or take the carrier's buffer; a lost echo must not hang us.
        unheard_s = (p.sent - p.heard) * FRAME_MS / 1000
        p.ack_timer = self._loop.call_later(unheard_s + ACK_GRACE_S, self._ack_timeout, p)

    def _ack_timeout(self, p: _Playout) -> None:
        if not p.future.done():
            log.info("call %s: end mark of %s never came back; assuming played", self.call_id, p.id)
            self._played(p)

    # ------------------------------------------------------------------ barge-in

    def _protected(self) -> bool:
        on_line = [*self._draining, *list(self._queue)[:1]]
        return any(not p.interruptible for p in on_line)

    def _cut(self, reason: str) -> None:
        """Silence the line at once and tell the model how much of its answer was heard."""
        self._pacer.stop()
        self.outbox.drop_media()
        self.outbox.put(self.protocol.clear())
        replies = [p for p in (*self._draining, *self._queue) if p.kind == "reply"]
        for p in replies:
            p.heard = self._heard_by_now(p)
        if self._receiving is not None and not self._receiving.complete:
            self._discarding = True
        self._settle_all_playing(reason)
        if replies:
            self.model.interrupted(replies[-1].heard * FRAME_MS)

    def _heard_by_now(self, p: _Playout) -> int:
        """How many frames of `p` the caller has heard by now.

        The last echoed mark alone can be a mark interval (200 ms) and the carrier's buffer
        behind what played. Instead: the frames we sent up to `now − lag`, where `lag` is how
        long the last echoed mark took from leaving us to coming back (the network and the
        carrier's buffer, measured on this line) — a frame sent longer ago than that has played.
        Never fewer than the marks confirmed, never more than we sent; before any mark came
        back the lag is unknown and the marks are all we go by."""
        if self._echo_delay is None:
            return p.heard
        played_until = self._loop.time() - self._echo_delay
        return min(max(p.heard, bisect.bisect_right(p.sent_at, played_until)), p.sent)

    def _settle_all_playing(self, reason: str) -> None:
        playing = [*self._draining, *self._queue]
        self._queue.clear()
        self._draining = []
        self._receiving = None
        self._marks.clear()  # echoes of cleared marks say nothing about what was heard
        for p in playing:
            p.arrived.set()
            self._settle(
                p, PlaybackStatus.INTERRUPTED if p.sent else PlaybackStatus.SKIPPED, reason
            )

    def _settle(self, p: _Playout, status: PlaybackStatus, error: str | None = None) -> None:
        if p.ack_timer is not None:
            p.ack_timer.cancel()
        if p.future.done():
            return
        heard = p.sent if status is PlaybackStatus.PLAYED else p.heard
        text = p.text()
        result = PlaybackResult(
            text=text,
            status=status,
            heard_text=text
            if status is PlaybackStatus.PLAYED
            else heard_words(text, heard, max(p.received, p.sent)),
            audio_ms=p.sent * FRAME_MS,
            heard_ms=heard * FRAME_MS,
            error=None if status is PlaybackStatus.PLAYED else error,
        )
        p.future.set_result(result)
        if p.speech is not None and p.speech.future is not None and not p.speech.future.done():
            p.speech.future.set_result(result)
        self._report(p, result)

    def _report(self, p: _Playout, result: PlaybackResult) -> None:
        if p.kind != "reply" or not result.audio_sent:
            return
        if result.heard_text:
            self._remember("bot", result.heard_text)
        final = result.status is PlaybackStatus.PLAYED
        is_speech = p.speech is not None and p.speech.future is not None
        if not is_speech and not result.heard_text:
            return  # nothing of the model's own answer reached the caller
        # The answer to an utterance carries its voice-to-voice: the manager records the turn.
        self._emit(
            type=EventType.PLAYBACK_ENDED if is_speech else EventType.REPLIED,
            text=result.heard_text[:MAX_TRANSCRIPT],
            duration_ms=result.heard_ms,
            is_final=final,
            voice_to_voice_ms=None if is_speech else p.voice_to_voice_ms,
        )

    # ------------------------------------------------------------------ hanging up

    def _end(
        self,
        reason: EndReason,
        why: str,
        *,
        tool_call_id: str | None = None,
        after_playback: bool = True,
    ) -> None:
        """End the call, once what is on its way has played (the goodbye) unless the line is
        dead (then nobody would hear it)."""
        if self._ending or self.closed:
            return
        self._ending = True
        self._end_task = asyncio.create_task(
            self._hang_up(reason, why, tool_call_id, after_playback)
        )

    async def _hang_up(
        self, reason: EndReason, why: str, tool_call_id: str | None, after_playback: bool
    ) -> None:
        if after_playback:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.goodbye_timeout_s):
                    while (reply := self._receiving) is not None:
                        await reply.arrived.wait()
                    await self.finish_playback()
        await self._last_words()
        log.info("call %s: ending the call (%s): %s", self.call_id, reason.value, why)
        try:
            await self.control.end_call(self.call_id, reason)
        except Exception as exc:
            log.warning("call %s: ending the call failed: %s", self.call_id, exc)
            self._ending = False
            if tool_call_id is not None and not self.closed:
                self.model.tool_result(tool_call_id, END_CALL, None, error=str(exc) or "failed")

    async def _last_words(self) -> None:
        """Wait (at most LAST_WORDS_WAIT_S) for the caller's words the model is still
        transcribing: the model may answer — and call end_call — before the transcript of the
        caller's "Bye!" arrives, and the record takes no words once the call has ended.

        A model tells us by `transcript_pending` (optional: OpenAI's input transcription runs
        beside the response; a model without it has nothing pending)."""
        deadline = self._loop.time() + LAST_WORDS_WAIT_S
        while getattr(self.model, "transcript_pending", False):
            left = deadline - self._loop.time()
            if left <= 0:
                log.info("call %s: the caller's last words never came", self.call_id)
                return
            self._caller_final.clear()
            # woken by a final transcript; a failed transcription only shows in the model's flag
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caller_final.wait(), min(left, 0.05))

    def _watch_silence(self) -> None:
        if self.closed:
            return
        quiet = self._loop.time() - self._last_inbound
        limit = self.settings.silence_timeout_s
        if quiet < limit:
            self._timers["silence"] = self._loop.call_later(limit - quiet, self._watch_silence)
            return
        log.info("call %s: no audio from the line for %g s", self.call_id, limit)
        seen = self._last_inbound
        self._timers["silence"] = self._loop.call_later(
            self.settings.grace_s, self._grace_over, seen
        )

    def _grace_over(self, seen: float) -> None:
        if self._last_inbound != seen:  # the line came back
            self._watch_silence()
            return
        timeout = self.settings.silence_timeout_s + self.settings.grace_s
        self._end(
            CallState.TIMEOUT, f"no audio from the line for {timeout:g} s", after_playback=False
        )

    def _watch_idle(self) -> None:
        limit = self.settings.idle_hangup_s
        if limit is None or self.closed:
            return
        if self._queue or self._draining:
            self._last_activity = self._loop.time()
        quiet = self._loop.time() - self._last_activity
        if quiet < limit:
            self._timers["idle"] = self._loop.call_later(limit - quiet, self._watch_idle)
            return
        self._end(CallState.HANGUP_BOT, f"nobody spoke for {limit:g} s")

    # ------------------------------------------------------------------ a lost model session

    async def _recover(self, error: str) -> None:
        """Reopen the session once with the conversation so far, else apologise and end."""
        if self._receiving is not None:  # nothing more will come of it: play what we hold
            self._receiving.finish()
            self._receiving = None
            self._pacer.start()
        self._discarding = False
        self._discard_pending(PlaybackStatus.FAILED, "the voice model's session dropped")
        for task in self._tool_tasks:
            task.cancel()  # their answers would go to a session that no longer exists
        if self.reconnects < self.settings.max_reconnects:
            self.reconnects += 1
            setup = replace(self._setup, history=self._replayed_history())
            try:
                await self.model.connect(setup)
            except Exception as exc:
                error = f"{error}; reopening it failed: {exc}"
            else:
                if self.closed:  # the stream ended while we reopened: nobody needs it now
                    await self.model.close()
                    return
                log.info("call %s: realtime model session reopened", self.call_id)
                self._ending = False
                return
        if self.closed:
            return
        log.warning("call %s: realtime model lost for good: %s", self.call_id, error)
        try:
            await self.control.end_with_apology(self.call_id, self.settings.apology_text, error)
        except Exception:
            log.exception("call %s: ending the call with an apology failed", self.call_id)
            if self._on_fatal is not None:
                self._on_fatal(1011, "realtime model unavailable")

    # ------------------------------------------------------------------ records and events

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}"

    def _remember(self, speaker: Speaker, text: str) -> None:
        self._history.append((speaker, text[:MAX_TRANSCRIPT]))
        if len(self._history) > 2 * MAX_HISTORY:
            del self._history[:MAX_HISTORY]

    def _replayed_history(self) -> tuple[tuple[Speaker, str], ...]:
        """The conversation for a reopened session, with the answers still on the line: they
        go on playing after the drop, so the caller hears all we hold of them (cut later, the
        caller will have heard less, but a replayed item cannot be truncated)."""
        playing: list[tuple[Speaker, str]] = [
            ("bot", text)
            for p in (*self._draining, *self._queue)
            if p.kind == "reply" and (text := p.text())
        ]
        return tuple([*self._history, *playing][-MAX_HISTORY:])

    @property
    def history(self) -> tuple[tuple[Speaker, str], ...]:
        """The conversation so far, as heard: the caller's final words and what was heard of
        the model's answers."""
        return tuple(self._history)

    def _since_speech_ended(self) -> float | None:
        ended = self.model.speech_ended_at
        if ended is None:
            return None
        ms = (time.monotonic() - ended) * 1000
        return round(ms, 3) if 0 <= ms <= MAX_LATENCY_MS else None

    def _emit(self, **fields: Any) -> None:
        self._events.emit(**fields)
