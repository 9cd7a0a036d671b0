"""WavRecorder: a streamed call's local dual-channel WAV, written from its media tap.

Left the caller (what we heard), right the bot (what we actually sent), 8 kHz 16-bit, one
sample column per 8 kHz tick of the stream's frame clock: a frame lands at its slot, a slot
nobody filled is silence, so the two sides stay aligned however the frames interleave. Slots
are held back `HOLD_SLOTS` (a caller frame may arrive after our frame for the same instant)
and then written in order; a frame for a slot already written (very late) is dropped.

`SlotAligner` is the part the console's listen-in shares: frames in by slot, whole slots out
in order, each side's frame or None.
"""

from __future__ import annotations

import logging
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voice_call.audio.g711 import FRAME_BYTES, ulaw_to_pcm16

log = logging.getLogger("voice_call.media")

HOLD_SLOTS = 25  # 500 ms: how long a slot waits for the other side's frame
SAMPLE_RATE = 8000
Slot = tuple[int, bytes | None, bytes | None]  # (slot, caller µ-law, bot µ-law)


class SlotAligner:
    """Frames by slot in, whole slots out in order once `hold` newer slots have been seen."""

    def __init__(self, emit: Callable[[list[Slot]], None], hold: int = HOLD_SLOTS) -> None:
        self._emit = emit
        self._hold = hold
        self._pending: dict[int, list[bytes | None]] = {}
        self.next_slot = 0  # the first slot not emitted yet
        self._newest = -1
        self.dropped = 0

    def add(self, side: str, slot: int, ulaw: bytes) -> None:
        if slot < self.next_slot:
            self.dropped += 1
            return
        entry = self._pending.setdefault(slot, [None, None])
        entry[0 if side == "caller" else 1] = ulaw[:FRAME_BYTES]
        self._newest = max(self._newest, slot)
        if self._newest - self.next_slot >= 2 * self._hold:
            self.flush(self._newest - self._hold)

    def flush(self, upto: int | None = None) -> None:
        """Emit every slot before `upto` (all of them when None)."""
        end = self._newest + 1 if upto is None else upto
        if end <= self.next_slot:
            return
        out: list[Slot] = []
        for slot in range(self.next_slot, end):
            caller, bot = self._pending.pop(slot, (None, None))
            out.append((slot, caller, bot))
        self.next_slot = end
        self._emit(out)


def _pcm(ulaw: bytes | None) -> np.ndarray:
    if ulaw is None:
        return np.zeros(FRAME_BYTES, dtype=np.int16)
    pcm = ulaw_to_pcm16(ulaw)
    return pcm if len(pcm) == FRAME_BYTES else np.pad(pcm, (0, FRAME_BYTES - len(pcm)))


class WavRecorder:
    """A tap listener writing `path`; `on_done(path, seconds)` once it is closed."""

    def __init__(self, path: Path, on_done: Callable[[Path, float], None] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._on_done = on_done
        # open for as long as the stream lasts, closed by `close`
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self._aligner = SlotAligner(self._write)
        self.slots = 0

    def frame(self, side: str, slot: int, ulaw: bytes) -> None:
        self._aligner.add(side, slot, ulaw)

    def _write(self, slots: list[Slot]) -> None:
        if self._wav is None:
            return
        stereo = np.empty((len(slots) * FRAME_BYTES, 2), dtype="<i2")
        for i, (_, caller, bot) in enumerate(slots):
            rows = slice(i * FRAME_BYTES, (i + 1) * FRAME_BYTES)
            stereo[rows, 0] = _pcm(caller)
            stereo[rows, 1] = _pcm(bot)
        self._wav.writeframes(stereo.tobytes())
        self.slots += len(slots)

    def close(self) -> None:
        if self._wav is None:
            return
        self._aligner.flush()
        self._wav.close()
        self._wav = None
        if self._on_done is not None:
            self._on_done(self.path, self.slots * FRAME_BYTES / SAMPLE_RATE)
