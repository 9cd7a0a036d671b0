"""MediaSession: one live carrier audio stream, both ways.

Caller → us: each µ-law frame goes to the STT session unchanged; speech-start, partial and
final transcripts come back and are reported to the manager as `call.speech` events.

Us → caller: `speak(text)` queues a PlaybackJob (at most 8 waiting). One job plays at a time:
its frames leave on the pacer's absolute 20 ms clock, silence keeps the line warm while
synthesis is still catching up, a mark every 200 ms and one at the end let us know what the
caller heard, and the job's future settles when the end mark comes back.

Barge-in: when the caller starts talking over an interruptible job, the pacer stops, media still
queued for the socket is dropped, a `clear` goes out, queued jobs are skipped, synthesis is
cancelled and the manager is told how much was heard (`call.playback-ended`, `isFinal` false,
`text` = the heard part). A job spoken with `interruptible=False` (the opening greeting, when
`streaming.protectGreeting` is on) ignores speech-start and the transcripts said over it, which
are echo of the greeting far more often than words.

The session talks to the manager only through events (`call.speech`, `call.speaking`,
`call.playback-ended`, `call.dtmf`) and offers a small command API: `speak`, `clear`,
`finish_playback`, `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from voice_call.audio.g711 import FRAME_MS
from voice_call.media.events import EventDelivery, EventSink
from voice_call.media.lateness import LatenessStats
from voice_call.media.outbox import Outbox
from voice_call.media.pacer import Pacer, Scheduler
from voice_call.media.playback import (
    SILENCE_FRAME,
    PlaybackJob,
    PlaybackQueueFull,
    PlaybackResult,
    PlaybackStatus,
    SessionClosed,
)
from voice_call.media.stream_protocols import (
    Cleared,
    Dtmf,
    Inbound,
    MarkAck,
    Media,
    StreamProtocol,
)
from voice_call.media.tap import MediaTap
from voice_call.models import EventType
from voice_call.speech.stack import Voice
from voice_call.speech.stt.base import SttSession

log = logging.getLogger("voice_call.media")

MAX_QUEUED_JOBS = 8
MARK_EVERY_FRAMES = 10  # 200 ms: how finely we know what the caller heard
ACK_GRACE_S = 2.0  # an end mark may take this long (plus the unplayed audio) to come back
MAX_TRANSCRIPT = 8000
MAX_ENDPOINTING_MS = 30_000  # older: a stale speech-stopped, not this utterance's


class MediaSession:
    def __init__(
        self,
        call_id: str,
        protocol: StreamProtocol,
        outbox: Outbox,
        stt: SttSession,
        voice: Voice,
        sink: EventSink,
        *,
        scheduler: Scheduler | None = None,
        stats: LatenessStats | None = None,
        on_fatal: Callable[[int, str], None] | None = None,
    ) -> None:
        self.call_id = call_id
        self.protocol = protocol
        self.outbox = outbox
        self.stt = stt
        self.voice = voice
        self._on_fatal = on_fatal
        self._loop = asyncio.get_running_loop()
        self._pacer = Pacer(self._tick, scheduler=scheduler, stats=stats)
        self._queue: deque[PlaybackJob] = deque()
        self._current: PlaybackJob | None = None
        self._draining: list[PlaybackJob] = []  # all sent; waiting for the end mark
        self._marks: dict[str, tuple[PlaybackJob, int, bool]] = {}
        self._seq = 0
        self._events = EventDelivery(call_id, sink)
        self.closed = False
        self.tap: MediaTap | None = None  # set while someone listens (media/tap.py)
        # figures, for logs, tests and the benchmark
        self.inbound_frames = 0
        self.audio_frames = 0
        self.keepalive_frames = 0
        self.barge_ins = 0
        self.suppressed_speech = 0
        stt.listener = self

    # ------------------------------------------------------------------ commands

    def speak(self, text: str, *, interruptible: bool = True) -> asyncio.Future[PlaybackResult]:
        """Queue `text`; the future settles when it has played (or was cut, skipped, failed).

        Raises PlaybackQueueFull when 8 jobs already wait, SessionClosed after `close`.
        """
        job = PlaybackJob(self._next_seq(), text, self.voice, interruptible=interruptible)
        if not job.sentences:
            job.resolve(PlaybackStatus.PLAYED)
            return job.future
        return self._enqueue(job)

    def _next_seq(self) -> int:
        if self.closed:
            raise SessionClosed("the media stream for this call has ended")
        if len(self._queue) >= MAX_QUEUED_JOBS:
            raise PlaybackQueueFull(f"playback queue is full ({MAX_QUEUED_JOBS} waiting)")
        self._seq += 1
        return self._seq

    def _enqueue(self, job: PlaybackJob) -> asyncio.Future[PlaybackResult]:
        job.on_first_audio = lambda: self._first_audio(job)
        if self._current is None and not self._queue:
            self._current = job  # plays next tick; synthesis starts now
            job.start_synthesis()
        else:
            self._queue.append(job)
            if len(self._queue) == 1:
                job.start_synthesis()  # one ahead, so it follows the current one back to back
        self._pacer.start()
        return job.future

    def play(self, ulaw: bytes, label: str) -> asyncio.Future[PlaybackResult]:
        """Queue audio made already (µ-law 8 kHz, e.g. DTMF tones) after what is queued.

        Never interrupted by the far end's speech (an IVR talking over its own menu is not a
        barge-in) and never reported as something the bot said.
        """
        job = PlaybackJob(self._next_seq(), label, self.voice, interruptible=False)
        job.preload(ulaw)
        return self._enqueue(job)

    def clear(self) -> None:
        """Stop everything we are saying now (protected or not) and drop what is queued."""
        self._interrupt()

    @property
    def playing(self) -> bool:
        return self._current is not None or bool(self._queue) or bool(self._draining)

    async def finish_playback(self, timeout_s: float | None = None) -> None:
        """Wait until everything queued has played (ending a call after the goodbye)."""
        jobs = [*self._draining, *([self._current] if self._current else []), *self._queue]
        futures = [job.future for job in jobs if not job.done]
        if futures:
            await asyncio.wait(futures, timeout=timeout_s)

    async def close(self) -> None:
        """The stream is over: settle every job, close STT, deliver the last events."""
        if self.closed:
            return
        self.closed = True
        self._pacer.stop()
        for job in self._playing_jobs():
            self._report(job, job.resolve(PlaybackStatus.INTERRUPTED, "the stream ended"))
        for job in self._queue:
            job.resolve(PlaybackStatus.SKIPPED, "the stream ended")
        self._queue.clear()
        self._current, self._draining = None, []
        self.stt.listener = None
        with contextlib.suppress(Exception):
            await self.stt.close()
        await self._events.close()

    # ------------------------------------------------------------------ carrier frames

    def handle(self, frame: Inbound) -> None:
        """A parsed frame from the carrier, after the start frame."""
        if isinstance(frame, Media):
            if frame.track != "outbound":  # both-tracks streams echo our own audio back
                self.inbound_frames += 1
                self.stt.send_audio(frame.payload)
                if self.tap is not None:
                    self.tap.inbound(frame.payload)
        elif isinstance(frame, MarkAck):
            self._on_mark(frame.name)
        elif isinstance(frame, Dtmf):
            self._emit(type=EventType.DTMF, digits=frame.digit)
        elif isinstance(frame, Cleared):
            pass  # our clear took effect; the jobs were settled when we sent it

    def _on_mark(self, name: str) -> None:
        entry = self._marks.pop(name, None)
        if entry is None:
            return  # a mark dropped by a clear, echoed late: it says nothing about hearing
        job, frames, final = entry
        job.heard_frames = max(job.heard_frames, frames)
        if final:
            self._played(job)

    def _played(self, job: PlaybackJob) -> None:
        if job in self._draining:
            self._draining.remove(job)
        self._forget_marks(job)
        result = job.resolve(
            PlaybackStatus.FAILED if job.error else PlaybackStatus.PLAYED, job.error
        )
        self._report(job, result)

    # ------------------------------------------------------------------ STT listener

    def _protected(self) -> bool:
        return any(not job.interruptible for job in self._playing_jobs())

    def on_speech_started(self) -> None:
        if self._protected():
            self.suppressed_speech += 1
            return
        if self._playing_jobs() or self._queue:
            self.barge_ins += 1
            self._interrupt()
        # Told at once (an empty partial): a reply still being generated for the caller's
        # earlier words is stale now, and must not queue its next sentence over them.
        self._emit(type=EventType.SPEECH, transcript="", is_final=False)

    def on_partial(self, text: str) -> None:
        if self._protected():
            return
        self._emit(type=EventType.SPEECH, transcript=text[:MAX_TRANSCRIPT], is_final=False)

    def on_final(self, text: str) -> None:
        if self._protected():
            self.suppressed_speech += 1
            log.info("call %s: transcript over the protected greeting ignored", self.call_id)
            return
        if self._playing_jobs():
            self._interrupt()  # the caller finished a sentence over us: stop talking
        self._emit(
            type=EventType.SPEECH,
            transcript=text[:MAX_TRANSCRIPT],
            is_final=True,
            endpointing_ms=self._endpointing_ms(),
        )

    def _endpointing_ms(self) -> float | None:
        """The caller's last speech frame → now (the final transcript), when the STT said."""
        ended = self.stt.speech_ended_at
        if ended is None:
            return None
        ms = (time.monotonic() - ended) * 1000
        return round(ms, 3) if 0 <= ms <= MAX_ENDPOINTING_MS else None

    def on_error(self, message: str, fatal: bool) -> None:
        if fatal and self._on_fatal is not None:
            self._on_fatal(1011, "speech-to-text unavailable")

    # ------------------------------------------------------------------ the 20 ms tick

    def _tick(self, due: float) -> bool:
        """Send one frame; False stops the pacer (nothing left to say)."""
        while True:
            job = self._current or self._next_job()
            if job is None:
                return False
            if job.frames:
                frame = job.frames.popleft()
                job.sent_frames += 1
                if job.room is not None:
                    job.drained()
                self.audio_frames += 1
                if job.sent_frames == 1 and job.announce:
                    self._emit(
                        type=EventType.SPEAKING,
                        text=job.text[:MAX_TRANSCRIPT],
                        tts_first_byte_ms=job.first_byte_ms,
                    )
                if job.sent_frames % MARK_EVERY_FRAMES:
                    self._send_frame(frame, due)
                else:  # the frame and its mark leave in one write
                    self._send_frame(frame, due, mark=self._mark_message(job, final=False))
                return True
            if not job.synthesized:
                self._send_frame(SILENCE_FRAME, due)  # synthesis is behind: keep the line warm
                self.keepalive_frames += 1
                return True
            self._finish_sending(job)

    def _first_audio(self, job: PlaybackJob) -> None:
        """The job playing now has its first audio, and the line is only being kept warm with
        silence: send it now rather than at the next 20 ms tick (up to a frame sooner)."""
        if job is self._current and job.sent_frames == 0 and self._pacer.running:
            self._pacer.stop()
            self._pacer.start()

    def _next_job(self) -> PlaybackJob | None:
        if not self._queue:
            return None
        job = self._current = self._queue.popleft()
        job.start_synthesis()
        if self._queue:
            self._queue[0].start_synthesis()  # one ahead, so sentences follow back to back
        return job

    def _send_frame(self, frame: bytes, due: float, *, mark: str | None = None) -> None:
        if mark is None:
            self.outbox.put(self.protocol.media_json(frame), due=due, media=True)
        else:
            self.outbox.put_pair(self.protocol.media_json(frame), mark, due=due)
        if self.tap is not None:
            self.tap.outbound(frame, due)

    def _mark(self, job: PlaybackJob, *, final: bool) -> None:
        self.outbox.put(self._mark_message(job, final=final))

    def _mark_message(self, job: PlaybackJob, *, final: bool) -> str:
        """The mark after the job's frames sent so far, remembered until it comes back."""
        name = f"{job.id}.{job.sent_frames}" + (".end" if final else "")
        self._marks[name] = (job, job.sent_frames, final)
        return self.protocol.mark(name)

    def _finish_sending(self, job: PlaybackJob) -> None:
        self._current = None
        if job.sent_frames == 0:  # nothing to wait for: failed or silent before any audio
            self._report(job, job.resolve(PlaybackStatus.FAILED, job.error or "no audio"))
            return
        self._draining.append(job)
        self._mark(job, final=True)
        # Played out by now, give or take the carrier's buffer; a lost echo must not hang us.
        unheard_s = (job.sent_frames - job.heard_frames) * FRAME_MS / 1000
        job.ack_timer = self._loop.call_later(
            unheard_s + ACK_GRACE_S, lambda: self._ack_timeout(job)
        )

    def _ack_timeout(self, job: PlaybackJob) -> None:
        if not job.done:
            log.info(
                "call %s: end mark of %s never came back; assuming played", self.call_id, job.id
            )
            self._played(job)

    # ------------------------------------------------------------------ barge-in

    def _playing_jobs(self) -> list[PlaybackJob]:
        return [*self._draining, *([self._current] if self._current is not None else [])]

    def _interrupt(self) -> None:
        self._pacer.stop()
        self.outbox.drop_media()
        self.outbox.put(self.protocol.clear())
        for job in self._playing_jobs():
            self._report(job, job.resolve(PlaybackStatus.INTERRUPTED, "caller spoke"))
        for job in self._queue:
            job.resolve(PlaybackStatus.SKIPPED, "caller spoke")
        self._queue.clear()
        self._current, self._draining = None, []
        self._marks.clear()  # echoes of cleared marks say nothing about what was heard

    def _forget_marks(self, job: PlaybackJob) -> None:
        for name in [name for name, entry in self._marks.items() if entry[0] is job]:
            del self._marks[name]

    def _report(self, job: PlaybackJob, result: PlaybackResult | None) -> None:
        if result is None or not result.audio_sent or not job.announce:
            return
        self._emit(
            type=EventType.PLAYBACK_ENDED,
            text=result.heard_text[:MAX_TRANSCRIPT],
            duration_ms=result.heard_ms,
            is_final=result.status == PlaybackStatus.PLAYED,
        )

    # ------------------------------------------------------------------ events

    def _emit(self, **fields: Any) -> None:
        self._events.emit(**fields)
