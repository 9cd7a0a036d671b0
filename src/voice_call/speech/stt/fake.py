"""An in-process fake STT session: tests and the benchmark drive its events by hand.

It counts the audio it is sent, can be made to fail or be slow to connect, and `speech_started`,
`partial` and `final` play the service's part.
"""

from __future__ import annotations

import asyncio
import time

from voice_call.speech.stt.base import SttError, SttListener


class FakeStt:
    def __init__(self, *, connect_delay_s: float = 0.0, fail: str | None = None) -> None:
        self.listener: SttListener | None = None
        self.speech_ended_at: float | None = None
        self.connect_delay_s = connect_delay_s
        self.fail = fail
        self.frames = 0
        self.closed = False
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        if self._connected:
            return
        if self.connect_delay_s:
            await asyncio.sleep(self.connect_delay_s)
        if self.fail:
            raise SttError(self.fail)
        self._connected = True

    def send_audio(self, ulaw: bytes) -> None:
        if self._connected:
            self.frames += 1

    async def close(self) -> None:
        self.closed = True
        self._connected = False

    def speech_started(self) -> None:
        if self.listener is not None:
            self.listener.on_speech_started()

    def speech_stopped(self, ago_s: float = 0.0) -> None:
        """The caller's last speech frame was `ago_s` seconds ago."""
        self.speech_ended_at = time.monotonic() - ago_s

    def partial(self, text: str) -> None:
        if self.listener is not None:
            self.listener.on_partial(text)

    def final(self, text: str) -> None:
        if self.listener is not None:
            self.listener.on_final(text)
