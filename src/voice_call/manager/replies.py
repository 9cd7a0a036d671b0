"""One auto-reply in flight: the responder generates in its own task while the manager speaks.

The responder's stream fills a queue from a separate task, so the model keeps generating while
earlier sentences are being handed to the carrier (a carrier REST call may take longer than the
next sentence does). `drop()` (the caller spoke again, an agent took the turn, the call ended)
and `expire()` (responseTimeoutMs) cancel the generation at once; sentences already produced
before an expiry are still delivered, then `chunks()` raises ReplyTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Final

from voice_call.agent.responders.base import ReplyContext, Responder
from voice_call.models import CallRecord

log = logging.getLogger("voice_call.agent.reply")

_DONE: Final = object()


class ReplyTimeout(Exception):
    """The responder did not finish within responseTimeoutMs."""


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

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

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
