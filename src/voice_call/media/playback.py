"""One thing to say on a streamed call: its synthesis, its frames, and what the caller heard.

Synthesis runs sentence by sentence (so the first frame leaves before the reply is whole):
TTS chunks → streaming resampler → G.711 µ-law → framer, into a queue of 20 ms frames the
session's pacer takes from. Each sentence ends at a known byte offset of the job's audio, so once
the carrier tells us how many frames were heard (marks / checkpoints), `heard_text` can say how
much of the text that was — the transcript then keeps only what the caller actually heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from voice_call.audio.framer import Framer
from voice_call.audio.g711 import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, SILENCE_BYTE, pcm16_to_ulaw
from voice_call.audio.resample import Resampler, UnsupportedRate
from voice_call.speech.sentences import split_sentences
from voice_call.speech.stack import Voice
from voice_call.speech.tts.base import REPLY_PART, ReplyPart, TtsAudio, TtsError

SILENCE_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES
# Audio converted ahead of playback, at most: past this, the TTS stream is read only as the
# caller hears it, so converting a long reply (resample, µ-law, frames) is spread over its
# playback instead of landing all at once (500 calls ending replies together stall the loop).
AHEAD_FRAMES = 50  # 1 s
# Speech runs at about 14 characters a second: µ-law bytes per character, for estimating how
# far into a sentence whose synthesis has not finished the caller got.
BYTES_PER_CHAR = SAMPLE_RATE // 14


class PlaybackStatus(StrEnum):
    PLAYED = "played"  # every frame was sent and the carrier confirmed it played
    INTERRUPTED = "interrupted"  # cut off (barge-in, clear, stream closed) after it began
    SKIPPED = "skipped"  # dropped from the queue before it began
    FAILED = "failed"  # synthesis failed (see `audio_ms`: was any of it sent?)


@dataclass(frozen=True)
class PlaybackResult:
    text: str
    status: PlaybackStatus
    heard_text: str
    audio_ms: int  # audio sent to the carrier (keep-alive silence not counted)
    heard_ms: int  # audio the carrier confirmed played
    error: str | None = None

    @property
    def audio_sent(self) -> bool:
        """False: nothing reached the caller, so a provider may fall back to its own voice."""
        return self.audio_ms > 0


class PlaybackQueueFull(RuntimeError):
    pass


class SessionClosed(RuntimeError):
    pass


class PlaybackJob:
    def __init__(self, seq: int, text: str, voice: Voice, *, interruptible: bool) -> None:
        self.id = f"p{seq}"
        self.text = text
        self.voice = voice
        self.interruptible = interruptible
        self.sentences = split_sentences(text)
        self.boundaries: list[int] = []  # µ-law bytes at the end of each synthesized sentence
        self.partial_bytes = 0  # of the sentence being synthesized
        self.frames: deque[bytes] = deque()
        self.room: asyncio.Event | None = None  # set by the session as it drains `frames`
        self.on_first_audio: Callable[[], None] | None = None  # once, when audio is ready
        self.synthesized = False  # no more frames will come
        self.error: str | None = None
        self.sent_frames = 0
        self.heard_frames = 0
        self.task: asyncio.Task[None] | None = None
        self.announce = True  # reported to the manager (speaking, playback-ended)
        self.first_byte_ms: float | None = None  # first sentence: text to TTS → first audio
        self.ack_timer: asyncio.TimerHandle | None = None
        self.future: asyncio.Future[PlaybackResult] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self.future.done()

    def preload(self, ulaw: bytes) -> None:
        """Audio made already (DTMF tones): framed now, nothing to synthesize, nothing said."""
        framer = Framer()
        self.frames.extend(framer.push(ulaw))
        tail = framer.flush()
        if tail is not None:
            self.frames.append(tail)
        self.sentences = []
        self.synthesized = True
        self.announce = False

    def start_synthesis(self) -> None:
        if self.task is None and not self.synthesized:
            self.task = asyncio.create_task(self._synthesize(), name=f"tts {self.id}")

    async def _synthesize(self) -> None:
        framer = Framer()
        produced = 0
        try:
            reply = uuid.uuid4().hex  # engines are shared across calls: unique everywhere
            for index, sentence in enumerate(self.sentences):
                REPLY_PART.set(ReplyPart(reply, index == len(self.sentences) - 1))
                async with asyncio.timeout(self.voice.timeout_s) as deadline:
                    produced += await self._sentence(sentence, framer, deadline)
                self.boundaries.append(produced)
        except TimeoutError:
            self.error = f"speech synthesis took longer than {self.voice.timeout_s:g} s"
        except (TtsError, UnsupportedRate) as exc:
            self.error = str(exc)
        finally:
            tail = framer.flush()
            if tail is not None and self.error is None:
                self.frames.append(tail)
            self.synthesized = True

    def drained(self) -> None:
        """The session took a frame: wake synthesis once it is no longer far ahead."""
        if self.room is not None and len(self.frames) <= AHEAD_FRAMES // 2:
            self.room.set()

    async def _wait_for_room(self, deadline: asyncio.Timeout) -> None:
        """Hold the TTS stream while a second of audio is ready; the wait is playback, not
        synthesis, so it does not count against the synthesis timeout.

        The deadline is stopped for the wait, not moved after it: a job queued behind a long
        one waits longer than the timeout, which must not fire meanwhile (an expired deadline
        cannot be rescheduled, and the job would end after its first second of audio)."""
        if len(self.frames) <= AHEAD_FRAMES or deadline.expired():
            return
        loop = asyncio.get_running_loop()
        when = deadline.when()
        paused = loop.time()
        deadline.reschedule(None)
        self.room = asyncio.Event()
        try:
            await self.room.wait()
        finally:
            self.room = None
            if when is not None:
                deadline.reschedule(when + loop.time() - paused)

    async def _sentence(self, sentence: str, framer: Framer, deadline: asyncio.Timeout) -> int:
        resampler: Resampler | None = None
        self.partial_bytes = 0
        asked = time.monotonic()
        chunks = self.voice.engine.synthesize(sentence)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if self.first_byte_ms is None and chunk.data:
                    self.first_byte_ms = round((time.monotonic() - asked) * 1000, 3)
                ulaw, resampler = _to_ulaw(chunk, resampler)
                self.partial_bytes += len(ulaw)
                self.frames.extend(framer.push(ulaw))
                if self.on_first_audio is not None and self.frames:
                    ready, self.on_first_audio = self.on_first_audio, None
                    ready()
                await self._wait_for_room(deadline)
        if resampler is not None:
            tail = pcm16_to_ulaw(resampler.flush())
            self.partial_bytes += len(tail)
            self.frames.extend(framer.push(tail))
        produced, self.partial_bytes = self.partial_bytes, 0
        return produced

    def cancel_synthesis(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.ack_timer is not None:
            self.ack_timer.cancel()

    def heard_text(self) -> str:
        """The part of the text the caller heard, to the last whole word."""
        heard = self.heard_frames * FRAME_BYTES
        words: list[str] = []
        start = 0
        for index, sentence in enumerate(self.sentences):
            if index < len(self.boundaries):
                end = self.boundaries[index]
            else:  # still being synthesized: its length estimated from the speaking rate
                done = sum(len(s) for s in self.sentences[:index])
                rate = start / done if start and done else BYTES_PER_CHAR
                end = start + max(self.partial_bytes, int(len(sentence) * rate))
            if heard >= end and index < len(self.boundaries):
                words.extend(sentence.split())
                start = end
                continue
            parts = sentence.split()
            share = (heard - start) / (end - start) if end > start else 0.0
            words.extend(parts[: int(len(parts) * min(max(share, 0.0), 1.0))])
            break
        return " ".join(words)

    def result(self, status: PlaybackStatus, error: str | None = None) -> PlaybackResult:
        heard_frames = self.sent_frames if status == PlaybackStatus.PLAYED else self.heard_frames
        self.heard_frames = heard_frames
        heard_text = self.text if status == PlaybackStatus.PLAYED else self.heard_text()
        return PlaybackResult(
            text=self.text,
            status=status,
            heard_text=heard_text,
            audio_ms=self.sent_frames * FRAME_MS,
            heard_ms=heard_frames * FRAME_MS,
            error=error,
        )

    def resolve(self, status: PlaybackStatus, error: str | None = None) -> PlaybackResult | None:
        """Settle the job once; None when it already was."""
        self.cancel_synthesis()
        if self.future.done():
            return None
        result = self.result(status, error)
        self.future.set_result(result)
        return result


def _to_ulaw(chunk: TtsAudio, resampler: Resampler | None) -> tuple[bytes, Resampler | None]:
    if chunk.encoding == "ulaw":
        if chunk.rate != SAMPLE_RATE:
            raise UnsupportedRate(f"µ-law audio must be 8000 Hz, got {chunk.rate}")
        return chunk.data, resampler
    if resampler is None:
        resampler = Resampler(chunk.rate)
    elif resampler.in_rate != chunk.rate:
        raise TtsError(f"sample rate changed mid-sentence ({resampler.in_rate} → {chunk.rate})")
    samples = resampler.push(chunk.data)
    return (pcm16_to_ulaw(samples) if len(samples) else b""), resampler
