"""A speech-to-text fallback chain (`streaming.fallback`): one session to the media session,
backed by the provider and then, in order, the engines that take over when it fails.

An engine fails when it cannot connect (refused key, unreachable, timeout) or, mid-call, when
it reports a fatal error (its own reconnects are spent). The next engine is then connected and
hears the rest of the call; a warning names the engine that failed, the one tried next and the
attempt. Audio sent while the next one connects is dropped, as during any reconnect. Only when
the last engine fails too does the listener hear of it (a fatal error: the call's stream ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from voice_call.speech.stt.base import SttError, SttListener, SttSession

log = logging.getLogger("voice_call.speech")

SttFactory = Callable[[], SttSession]


class _Relay:
    """The listener one engine of the chain talks to: passes its events on while it is the
    engine in use, and turns its fatal error into the next engine taking over."""

    def __init__(self, chain: FallbackStt, index: int) -> None:
        self.chain = chain
        self.index = index

    def _live(self) -> SttListener | None:
        return self.chain.listener if self.chain.index == self.index else None

    def on_speech_started(self) -> None:
        if (listener := self._live()) is not None:
            listener.on_speech_started()

    def on_partial(self, text: str) -> None:
        if (listener := self._live()) is not None:
            listener.on_partial(text)

    def on_final(self, text: str) -> None:
        if (listener := self._live()) is not None:
            listener.on_final(text)

    def on_error(self, message: str, fatal: bool) -> None:
        if self.chain.index != self.index:
            return
        if fatal:
            self.chain.failed(message)
        elif self.chain.listener is not None:
            self.chain.listener.on_error(message, False)


class FallbackStt:
    def __init__(self, engines: Sequence[tuple[str, SttFactory]]) -> None:
        if not engines:
            raise ValueError("a speech-to-text chain needs at least one engine")
        self.engines = list(engines)
        self.listener: SttListener | None = None
        self.index = 0
        self.current: SttSession | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._switching: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def names(self) -> str:
        return " → ".join(name for name, _ in self.engines)

    @property
    def speech_ended_at(self) -> float | None:
        return self.current.speech_ended_at if self.current is not None else None

    @speech_ended_at.setter
    def speech_ended_at(self, value: float | None) -> None:
        if self.current is not None:
            self.current.speech_ended_at = value

    @property
    def connected(self) -> bool:
        return self.current is not None and self.current.connected

    async def connect(self) -> None:
        """Connect the first engine that will (idempotent); raises SttError when none does."""
        if self._closed:
            raise SttError("speech-to-text session is closed")
        if self._connecting is None or self._connecting.done():
            if self.current is not None or self._handing_over:
                return  # in use (or reconnecting, or handing over): not a second stream
            self._connecting = asyncio.create_task(self._connect_from(0))
        await asyncio.shield(self._connecting)

    @property
    def _handing_over(self) -> bool:
        return self._switching is not None and not self._switching.done()

    async def _connect_from(self, start: int) -> None:
        reason = ""
        for index in range(start, len(self.engines)):
            factory = self.engines[index][1]
            if index > start:
                self._warn(index - 1, reason)
            session = factory()
            session.listener = _Relay(self, index)
            self.index, self.current = index, session
            try:
                await session.connect()
            except SttError as exc:
                reason = str(exc)
                self.current = None
                await session.close()
                if self._closed:
                    break
                continue
            if self._closed:  # closed while connecting: do not leave it open
                await session.close()
                self.current = None
            return
        raise SttError(f"every speech-to-text engine failed ({self.names}); last: {reason}")

    def _warn(self, failed: int, reason: str) -> None:
        log.warning(
            'speech-to-text fallback: "%s" failed (%s) — trying "%s" (attempt %d of %d: %s)',
            self.engines[failed][0],
            reason,
            self.engines[failed + 1][0],
            failed + 2,
            len(self.engines),
            self.names,
        )

    def failed(self, message: str) -> None:
        """The engine in use reported a fatal error mid-call: hand over to the next one."""
        if self._closed or self._handing_over:
            return
        self._switching = asyncio.create_task(self._take_over(message))

    async def _take_over(self, message: str) -> None:
        failed, old = self.index, self.current
        self.current = None  # audio is dropped until the next engine is connected
        if old is not None:
            old.listener = None
            await old.close()
        if failed + 1 >= len(self.engines):
            if self.listener is not None:
                self.listener.on_error(message, True)
            return
        self._warn(failed, message)
        try:
            await self._connect_from(failed + 1)
        except SttError as exc:
            if self.listener is not None:
                self.listener.on_error(str(exc), True)

    def send_audio(self, ulaw: bytes) -> None:
        if self.current is not None:
            self.current.send_audio(ulaw)

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._connecting, self._switching) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self.current = self.current, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
