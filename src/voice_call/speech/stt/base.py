"""The streaming STT interface a media session talks to.

`connect()` may be awaited before any audio exists (pre-warm while the phone rings);
`send_audio` never blocks and drops audio while the connection is down; results come back
through the listener, which the media session attaches once the stream starts.
"""

from __future__ import annotations

from typing import Protocol


class SttError(RuntimeError):
    """The speech-to-text service cannot be reached or refused the session."""


class SttListener(Protocol):
    def on_speech_started(self) -> None:
        """The caller started talking (the barge-in trigger)."""

    def on_partial(self, text: str) -> None:
        """The transcript of the current utterance so far."""

    def on_final(self, text: str) -> None:
        """The utterance is over; its whole transcript."""

    def on_error(self, message: str, fatal: bool) -> None:
        """`fatal`: the session is gone for good (reconnects exhausted)."""


class SttSession(Protocol):
    listener: SttListener | None
    # monotonic time of the caller's last speech frame, by the service's VAD (speech stopped);
    # None until an utterance has ended
    speech_ended_at: float | None

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the session (idempotent); raises SttError."""

    def send_audio(self, ulaw: bytes) -> None:
        """Forward 8 kHz µ-law as received; dropped while disconnected."""

    async def close(self) -> None: ...
