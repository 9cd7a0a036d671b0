"""MediaTap: who listens to one live stream, both ways, on the stream's 20 ms frame clock.

A session holds `tap = None` until someone listens (the local recording, a console listen-in),
so a stream nobody listens to pays one attribute check per frame. Each frame is handed on with
its slot: the number of 20 ms frames since the tap started. Our frames carry the pacer's slot
time (when they were due on the line), so a frame sent late still lands where it belonged; the
caller's frames are one after another as the carrier sent them (each is 20 ms of the caller),
re-anchored to the clock only after a gap in the stream, so network jitter does not smear them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from voice_call.audio.g711 import FRAME_MS

log = logging.getLogger("voice_call.media")

FRAME_S = FRAME_MS / 1000
RESYNC_SLOTS = 10  # the caller's frames arrive this far (200 ms) after their slot: a gap


class TapListener(Protocol):
    def frame(self, side: str, slot: int, ulaw: bytes) -> None:
        """`side`: "caller" (what we heard) or "bot" (what we sent); `slot`: 20 ms frames
        since the tap started. Called on the event loop; must not block."""

    def close(self) -> None:
        """The stream is over (or the listener was removed): no more frames."""


class MediaTap:
    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self._now = now or asyncio.get_running_loop().time
        self.started_at = self._now()
        self.listeners: list[TapListener] = []
        self._caller_next: int | None = None

    def inbound(self, ulaw: bytes) -> None:
        """A caller frame, as it arrived."""
        arrived = int((self._now() - self.started_at) / FRAME_S)
        expected = self._caller_next
        slot = arrived if expected is None or arrived - expected > RESYNC_SLOTS else expected
        self._caller_next = slot + 1
        self._send("caller", slot, ulaw)

    def outbound(self, ulaw: bytes, due: float) -> None:
        """A frame we sent, `due` on the pacer's clock (the event loop's time)."""
        self._send("bot", max(0, round((due - self.started_at) / FRAME_S)), ulaw)

    def _send(self, side: str, slot: int, ulaw: bytes) -> None:
        for listener in tuple(self.listeners):
            try:
                listener.frame(side, slot, ulaw)
            except Exception:  # a broken listener must never break the call's audio
                log.exception("a media tap listener failed; removing it")
                self.remove(listener)

    def add(self, listener: TapListener) -> None:
        self.listeners.append(listener)

    def remove(self, listener: TapListener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)
            listener.close()

    def close(self) -> None:
        for listener in list(self.listeners):
            self.remove(listener)
