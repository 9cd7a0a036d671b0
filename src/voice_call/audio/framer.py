"""Cut a stream of µ-law bytes into 20 ms frames, carrying the remainder between chunks.

TTS audio arrives in chunks of any length; a carrier wants 160-byte frames (a partial frame is
dropped by some, and padding every chunk would put a gap of silence between chunks).
"""

from __future__ import annotations

from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE


class Framer:
    def __init__(self, size: int = FRAME_BYTES, fill: int = SILENCE_BYTE) -> None:
        self.size = size
        self.fill = fill
        self._carry = b""

    @property
    def pending(self) -> int:
        """Bytes held back until a whole frame is there."""
        return len(self._carry)

    def push(self, data: bytes) -> list[bytes]:
        """The whole frames `data` completes; the remainder waits for the next call."""
        buffer = self._carry + data if self._carry else data
        whole = len(buffer) - len(buffer) % self.size
        self._carry = buffer[whole:]
        return [buffer[i : i + self.size] for i in range(0, whole, self.size)]

    def flush(self) -> bytes | None:
        """The last partial frame padded with silence, or None when nothing is held."""
        if not self._carry:
            return None
        frame = self._carry + bytes([self.fill]) * (self.size - len(self._carry))
        self._carry = b""
        return frame
