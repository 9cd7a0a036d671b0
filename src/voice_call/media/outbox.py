"""The frames waiting to go out on one carrier socket: FIFO, capped in bytes, media droppable.

The pacer and the barge-in path must never block on a slow socket, so they `put` here and never
await. Keeping the queue ourselves also lets a barge-in drop media that is still queued (a
`clear` then really is the next thing the carrier gets), and gives the backpressure rule a
number to test: more than `limit_bytes` waiting means the peer is not reading, and the socket
is closed (1013) rather than letting memory grow.

Sending is eager: when nothing is queued, `put` runs the ASGI send right away, and an ASGI
server's send to a writable socket finishes without suspending, so most frames cost no task
switch at all (at 500 streams that is 25,000 fewer a second). Only when the send does suspend
(the socket's buffer is full) does a task take over, and later frames queue behind it.
`try_send`, where the server offers one, is cheaper still: a plain call that writes the frames
it is given in one write, or says it cannot (then the coroutine path runs).

Messages are JSON text, as `str` or already UTF-8 encoded `bytes` (the media frames, built from
a byte template: no encode per frame); `send` always gets `str`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from voice_call.media.lateness import LatenessStats

MAX_BUFFERED_BYTES = 1024 * 1024


class Outbox:
    def __init__(
        self,
        send: Callable[[str], Coroutine[Any, Any, None]],
        *,
        limit_bytes: int = MAX_BUFFERED_BYTES,
        on_overflow: Callable[[], None] | None = None,
        stats: LatenessStats | None = None,
        clock: Callable[[], float] | None = None,
        try_send: Callable[..., bool] | None = None,
    ) -> None:
        self._send = send
        self._try_send = try_send
        self.limit_bytes = limit_bytes
        self._on_overflow = on_overflow
        self.stats = stats
        self._clock = clock
        self._queue: deque[tuple[str | bytes, float | None, bool]] = deque()
        self._wake = asyncio.Event()
        self._eager = True
        self._busy = False  # a send is in progress (suspended, or in the writer task)
        self._inflight: tuple[Coroutine[Any, Any, None], Any, float | None, int] | None = None
        self._failed: BaseException | None = None
        self.buffered = 0
        self.overflowed = False
        self.closed = False
        self.sent = 0

    def put(self, text: str | bytes, *, due: float | None = None, media: bool = False) -> bool:
        """Queue `text`; False (and the overflow callback, once) when over the byte cap."""
        if self.closed or self.overflowed:  # overflowed: the socket is being closed
            return False
        if self.buffered + len(text) > self.limit_bytes:
            if not self.overflowed:
                self.overflowed = True
                if self._on_overflow is not None:
                    self._on_overflow()
            return False
        if not self._queue and not self._busy and self._eager:
            if self._try_send is not None and self._try_send(text):
                self._sent(due)
            else:
                self._send_now(text, due)
            return True
        self._queue.append((text, due, media))
        self.buffered += len(text)
        self._wake.set()
        return True

    def put_pair(self, media: bytes, then: str | bytes, *, due: float) -> bool:
        """`put(media, due=due, media=True)` then `put(then)`: a frame and the mark after it,
        in one socket write where the server's direct lane takes both at once (one syscall for
        the two, not two)."""
        if (
            self._try_send is not None
            and not self._queue
            and not self._busy
            and self._eager
            and not self.closed
            and not self.overflowed
            and self.buffered + len(media) + len(then) <= self.limit_bytes
            and self._try_send(media, then)
        ):
            self._sent(due)
            self._sent(None)
            return True
        return self.put(media, due=due, media=True) and self.put(then)

    def _send_now(self, text: str | bytes, due: float | None) -> None:
        """Run the send inline; if it suspends, the writer task finishes it (in order)."""
        coro = self._send(_str(text))
        try:
            waiting = coro.send(None)
        except StopIteration:
            self._sent(due)
            return
        except Exception as exc:  # the socket is gone: stop, as the writer would
            self._failed = exc
            self.closed = True
            self._wake.set()
            return
        self._busy = True
        self._inflight = (coro, waiting, due, len(text))
        self.buffered += len(text)  # not written yet: it counts against the cap
        self._wake.set()

    def _sent(self, due: float | None) -> None:
        self.sent += 1
        if due is not None and self.stats is not None:
            clock = self._clock
            if clock is None:  # the loop's clock, looked up once
                clock = self._clock = asyncio.get_running_loop().time
            self.stats.add(clock() - due)

    def drop_media(self) -> int:
        """Forget queued media frames (barge-in); control frames keep their order."""
        kept = [entry for entry in self._queue if not entry[2]]
        dropped = len(self._queue) - len(kept)
        if dropped:
            self._queue = deque(kept)
            inflight = self._inflight[3] if self._inflight is not None else 0
            self.buffered = inflight + sum(len(entry[0]) for entry in kept)
        return dropped

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self.buffered = 0
        self._wake.set()

    async def run(self) -> None:
        """Finish suspended sends and write what queued behind them, until `close`.

        A failing send (the socket went away) ends it with that exception.
        """
        try:
            while not self.closed:
                if self._inflight is not None:
                    await self._finish_inflight()
                    continue
                if not self._queue:
                    self._busy = False
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._busy = True
                text, due, _ = self._queue.popleft()
                self.buffered -= len(text)
                await self._send(_str(text))
                self._sent(due)
        finally:
            if self._inflight is not None:
                self._inflight[0].close()
                self._inflight = None
        if self._failed is not None:
            raise self._failed

    async def _finish_inflight(self) -> None:
        """Drive a send `put` began and that suspended, exactly as a task would have."""
        assert self._inflight is not None
        coro, waiting, due, size = self._inflight
        while True:
            try:
                if waiting is None:
                    await asyncio.sleep(0)
                else:
                    # As Task.__step does with a future a coroutine yields: take it over.
                    waiting._asyncio_future_blocking = False
                    await waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # what the send awaited failed: deliver it inside
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    break
                continue
            try:
                waiting = coro.send(None)
            except StopIteration:
                break
        self._inflight = None
        self.buffered -= size
        self._sent(due)


def _str(text: str | bytes) -> str:
    return text if isinstance(text, str) else text.decode()
